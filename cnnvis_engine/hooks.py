"""The only place the engine registers hooks or wraps a module's `forward`. Every hook and wrapper lives inside
a `with` block and is removed on exit, also when the body raises.

`capture(model, ...)` records, for one forward pass, every module call in execution order with its output
(kept attached to the autograd graph, so gradients with respect to any layer can be asked for later without
a new forward pass). Outputs that a later in-place operation would overwrite (a BatchNorm followed by
`ReLU(inplace=True)`, `out += identity`) can be listed in `clone_outputs`: their recorder hands the rest of
the network a clone, as captum does, so what we keep is the module's true output. Without a clone, a call keeps
its input and its graph node, so the true output can be recomputed and its gradient caught at the node
(`node_gradient`) — no copy on every forward pass.

`guided_backward(calls)` makes, for the backward passes run inside it, the graph node of every recorded
`nn.ReLU`/`nn.ReLU6` output clamp its incoming gradient at zero: R_in = 1[x > 0] * 1[R_out > 0] * R_out
(Springenberg et al. 2015). The modules are never swapped, so the model is untouched, and the hooks sit on
one forward pass's own graph, so passes in other threads are unaffected; a forward pass costs nothing extra
for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from .errors import EngineError

GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
ACTIVATION_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.SiLU,
    nn.GELU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Mish,
    nn.PReLU,
    nn.Softplus,
    nn.Hardtanh,
)
FUNCTIONAL_ACTIVATIONS: dict[Callable[..., object], str] = {
    torch.relu: "relu",
    torch.relu_: "relu",
    torch.nn.functional.relu: "relu",
    torch.nn.functional.relu6: "relu6",
    torch.nn.functional.silu: "silu",
    torch.nn.functional.gelu: "gelu",
    torch.nn.functional.hardswish: "hardswish",
    torch.nn.functional.hardsigmoid: "hardsigmoid",
    torch.sigmoid: "sigmoid",
    torch.nn.functional.mish: "mish",
    torch.nn.functional.leaky_relu: "leaky_relu",
    torch.nn.functional.elu: "elu",
    torch.tanh: "tanh",
}


@dataclass(slots=True)
class ModuleCall:
    """One call of one module during a forward pass."""

    name: str
    module: nn.Module
    end: int  # position among call ends (children before parents)
    output: torch.Tensor | None = None  # the true output, attached to the graph
    first_input: torch.Tensor | None = None
    input_version: int = 0  # first_input._version when the call ended
    single_input: bool = True  # called with exactly one positional tensor, no keywords, and not changed in place
    version: int = 0  # output._version when the call ended
    node: torch.autograd.graph.Node | None = (
        None  # output.grad_fn when the call ended: the graph node that produced the true output
    )
    output_nr: int = 0

    def recoverable(self, graph: bool = True) -> bool:
        """Whether an output overwritten in place later can be had again without running the model: its
        module re-run on its own (unchanged) input, and (in a pass with a `graph`) its gradient read where its
        graph node receives it."""
        return (
            self.single_input
            and self.first_input is not None
            and self.first_input._version == self.input_version
            and (self.node is not None or not graph)
        )

    def recorded_output(self) -> torch.Tensor:
        """`output`, for a call known to have returned a tensor (every layer a method may name)."""
        if self.output is None:
            raise EngineError(f"The layer '{self.name}' returned no tensor here, so there is nothing to explain.")
        return self.output

    def recorded_input(self) -> torch.Tensor:
        """`first_input`, for a call known to have taken a tensor."""
        if self.first_input is None:
            raise EngineError(f"The layer '{self.name}' took no tensor here, so there is nothing to explain.")
        return self.first_input


@dataclass
class Capture:
    """What `capture` recorded: module calls in the order they ended (children before their parents)."""

    calls: list[ModuleCall] = field(default_factory=list)
    functional_activations: dict[str, int] = field(default_factory=dict)

    def by_name(self) -> dict[str, list[ModuleCall]]:
        grouped: dict[str, list[ModuleCall]] = {}
        for call in self.calls:
            grouped.setdefault(call.name, []).append(call)
        return grouped

    def overwritten(self) -> set[str]:
        """Names whose recorded output was changed in place after the module returned."""
        return {c.name for c in self.calls if c.output is not None and c.output._version != c.version}


class _FunctionalActivationCounter(TorchFunctionMode):
    """Counts activation functions called outside activation modules (e.g. `F.relu(x)` in a forward)."""

    def __init__(self, capture: Capture, inside_activation: list[int]) -> None:
        super().__init__()
        self.capture, self.inside = capture, inside_activation

    def __torch_function__(
        self,
        func: Callable[..., object],
        types: Collection[type],
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
    ) -> object:
        name = FUNCTIONAL_ACTIVATIONS.get(func)
        if name is not None and not self.inside[0]:
            self.capture.functional_activations[name] = self.capture.functional_activations.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


@contextlib.contextmanager
def capture(
    model: nn.Module,
    *,
    clone_outputs: Collection[str] = (),
    count_functional: bool = False,
    only: Collection[str] | None = None,
    redirect_relus: bool = False,
    keep: Collection[str] | None = None,
    grad_from: Collection[str] = (),
) -> Iterator[Capture]:
    """Record every submodule call (or those named in `only`) of the forward passes run inside the block;
    see the module docstring.

    A one-off pass that needs few layers (`Explainer.explain_batch`) can name them in `keep`: the other calls
    are recorded by name and order only, so their tensors are freed as the pass goes on, as without recording.
    Run such a pass without gradients and name in `grad_from` the layers whose gradients it needs: when one of
    them returns, gradients are switched on (the caller's `no_grad` block switches them off again) and its
    output is recorded as a new leaf of the graph, with a copy of it passed on, so later in-place operations
    leave the recorded value as it was. The graph then holds only what follows the earliest of those layers.

    Each module is recorded by a wrapper around its `forward`, set on the instance for the block's duration:
    PyTorch keeps its fast hook-free call path, where any forward hook, even one global hook, sends all ~180
    module calls of a ResNet-50 down the slow one. Calls are recorded in the order they ended; the order they
    started in follows from it and the names (`tracing.start_order`). Two kinds of module get a hook instead:
    those with forward hooks of their own, which may replace the output, get one registered after theirs, so
    it sees what the network passes on; ScriptModules, whose `forward` is compiled, are seen by a global hook
    that ignores every other module (the modules inside them never call Python, so they are not recorded).
    `count_functional` adds a global hook pair to tell activation modules' own calls from functional ones.
    `redirect_relus` gives every ReLU/ReLU6 call's graph node Lucid's redirected gradient (`_redirected`), for
    feature visualisation; those node hooks go with the pass's graph.
    """
    record = Capture()
    recorded: dict[int, str] = {}  # module id -> name, for the modules whose calls are recorded
    watched: list[nn.Module] = []  # those, and with `redirect_relus` every ReLU
    relus: dict[int, bool] = {}  # ReLU/ReLU6 module id -> whether it is a ReLU6, with `redirect_relus`
    activation_ids: set[int] = set()  # activation modules, with `count_functional`
    for name, m in model.named_modules():
        if m is model:
            continue
        if only is None or name in only:
            recorded[id(m)] = name
        if redirect_relus and isinstance(m, GUIDED_ACTIVATIONS):
            relus[id(m)] = isinstance(m, nn.ReLU6)
        if id(m) in recorded or id(m) in relus:
            watched.append(m)
        if count_functional and isinstance(m, ACTIVATION_MODULES):
            activation_ids.add(id(m))
    calls, inside_activation = record.calls, [0]

    def note(
        name: str, module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object], output: object
    ) -> torch.Tensor | None:
        """Record one call that just returned; a clone to pass on instead of `output`, or None."""
        call = ModuleCall(name, module, len(calls))
        calls.append(call)
        if keep is not None and name not in keep:
            return None
        first = call.first_input = _first_tensor(args)
        if first is not None:
            call.input_version = first._version
            call.single_input = len(args) == 1 and first is args[0] and not kwargs and first is not output
        if not isinstance(output, torch.Tensor):
            return None
        passed_on = None
        if name in grad_from and output.is_floating_point():
            torch.set_grad_enabled(True)
            output = output.detach().requires_grad_()  # a leaf: no node, output number 0
            passed_on = output.clone()
        elif name in clone_outputs:
            passed_on = output.clone()
        call.output, call.version = output, output._version
        call.node, call.output_nr = output.grad_fn, output.output_nr
        return passed_on

    def redirect(module: nn.Module, output: object) -> None:
        upper = relus.get(id(module))
        if upper is not None and isinstance(output, torch.Tensor) and output.grad_fn is not None:
            output.grad_fn.register_hook(_redirected(output, upper))

    def after(
        module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object], output: object
    ) -> torch.Tensor | None:
        """What happens when a watched module's forward returns, before anything else sees its output."""
        if relus:
            redirect(module, output)
        name = recorded.get(id(module))
        return None if name is None else note(name, module, args, kwargs, output)

    def enter_activation(module: nn.Module, args: tuple[object, ...]) -> None:
        if id(module) in activation_ids:
            inside_activation[0] += 1

    def leave_activation(module: nn.Module, args: tuple[object, ...], output: object) -> None:
        if id(module) in activation_ids:
            inside_activation[0] -= 1

    scripted = {id(m) for m in watched if isinstance(m, torch.jit.ScriptModule)}
    own = [m for m in watched if id(m) not in scripted and m._forward_hooks]
    handles: list[torch.utils.hooks.RemovableHandle] = []
    replaced: list[tuple[nn.Module, object]] = []  # (module, its own instance-level forward or _NO_FORWARD)
    mode = _FunctionalActivationCounter(record, inside_activation) if count_functional else contextlib.nullcontext()
    try:
        if scripted:
            handles.append(
                register_module_forward_hook(
                    # torch annotates the hook as returning None, but a forward hook may return a replacement
                    lambda m, args, kwargs, out: after(m, args, kwargs, out) if id(m) in scripted else None,  # type: ignore[arg-type]
                    with_kwargs=True,
                )
            )
        handles += [m.register_forward_hook(after, with_kwargs=True) for m in own]
        for m in watched:
            if id(m) not in scripted and not m._forward_hooks:
                replaced.append((m, m.__dict__.get("forward", _NO_FORWARD)))
                m.__dict__["forward"] = _Watched(m.forward, m, after)
        if count_functional:
            handles.append(register_module_forward_pre_hook(enter_activation))
            handles.append(register_module_forward_hook(leave_activation))
        with mode:
            yield record
    finally:
        for m, forward in replaced:
            if forward is _NO_FORWARD:
                m.__dict__.pop("forward", None)
            else:
                m.__dict__["forward"] = forward
        for handle in handles:
            handle.remove()


class _Watched:
    """A module's `forward` while `capture` watches it (set on the instance): the original, then `after`, whose
    clone, if it returns one, is what the network gets."""

    __slots__ = ("after", "forward", "module")

    def __init__(self, forward: Callable[..., object], module: nn.Module, after: Callable[..., object]) -> None:
        self.forward, self.module, self.after = forward, module, after

    def __call__(self, *args: object, **kwargs: object) -> object:
        output = self.forward(*args, **kwargs)
        passed_on = self.after(self.module, args, kwargs, output)
        return output if passed_on is None else passed_on


_NO_FORWARD = object()  # a module with no instance-level `forward` of its own before `capture` wrapped it


@contextlib.contextmanager
def node_gradient(call: ModuleCall) -> Iterator[list[torch.Tensor]]:
    """While the block runs a backward pass through `call.node`, catch the gradient arriving at the module's
    true output (the node's output `call.output_nr`), even though the tensor was overwritten in place."""
    caught: list[torch.Tensor] = []

    def hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
        grad = grad_outputs[call.output_nr]
        if grad is not None:
            caught.append(grad)

    if call.node is None:
        raise EngineError("The layer's gradient cannot be caught: its output was not recorded with a graph.")
    handle = call.node.register_prehook(hook)
    try:
        yield caught
    finally:
        handle.remove()


@contextlib.contextmanager
def guided_backward(calls: Iterable[ModuleCall]) -> Iterator[None]:
    """Guided backpropagation for the backward passes run inside the block; see the module docstring."""
    handles = []
    try:
        for call in calls:
            if call.node is not None and isinstance(call.module, GUIDED_ACTIVATIONS):
                handles.append(call.node.register_prehook(_clamp))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _clamp(grad_outputs: tuple[torch.Tensor | None, ...]) -> tuple[torch.Tensor | None, ...]:
    return tuple(None if grad is None else grad.clamp(min=0) for grad in grad_outputs)


def _redirected(output: torch.Tensor, upper: bool) -> Callable[..., tuple[torch.Tensor | None, ...] | None]:
    """Lucid's redirected ReLU gradient (Olah et al. 2017) for a descent step on -objective: for an image whose
    ordinary gradient through this ReLU is zero everywhere (a channel dead on the starting picture), pass the
    incoming gradient through anyway, except where it would push an input that is already off (<= 0, or >= 6
    for ReLU6) further out. Images with any ordinary gradient keep it."""

    def hook(
        grad_inputs: tuple[torch.Tensor | None, ...], grad_outputs: tuple[torch.Tensor | None, ...]
    ) -> tuple[torch.Tensor | None, ...] | None:
        grad, incoming = grad_inputs[0], grad_outputs[0]
        if grad is None or incoming is None:
            return None
        blocked = (output <= 0) & (incoming > 0)
        if upper:
            blocked |= (output >= 6) & (incoming < 0)
        dead = (grad.flatten(1).abs().amax(dim=1) == 0).view(-1, *[1] * (grad.dim() - 1))
        return (torch.where(dead, incoming.masked_fill(blocked, 0), grad), *grad_inputs[1:])

    return hook


_ABSENT = object()  # an attribute the instance did not have of its own


@contextlib.contextmanager
def unfused_attention(modules: Iterable[nn.Module]) -> Iterator[None]:
    """For the block's duration, timm attention `modules` compute their softmax probabilities as tensors (their
    `fused_attn` instance attribute off: `F.scaled_dot_product_attention` never materialises them), so a recording
    sees them; each module's own setting is restored on exit, also when the body raises."""
    saved: list[tuple[nn.Module, object]] = []
    try:
        for module in modules:
            saved.append((module, module.__dict__.get("fused_attn", _ABSENT)))
            module.__dict__["fused_attn"] = False  # a plain instance attribute (what nn.Module.__setattr__ does)
        yield
    finally:
        for module, value in saved:
            if value is _ABSENT:
                module.__dict__.pop("fused_attn", None)
            else:
                module.__dict__["fused_attn"] = value


def count_hooks(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks, and recording wrappers around `forward`, on all modules: zero
    after every engine call."""
    total = 0
    for module in model.modules():
        total += isinstance(module.__dict__.get("forward"), _Watched)
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
        total += len(module._backward_hooks) + len(getattr(module, "_backward_pre_hooks", {}))
    return total


def model_state(model: nn.Module) -> tuple[tuple[bool, ...], tuple[tuple[bool, int | None], ...]]:
    """A snapshot of what a call must leave unchanged: training flags, requires_grad and .grad identity."""
    return (
        tuple(m.training for m in model.modules()),
        tuple((p.requires_grad, None if p.grad is None else p.grad.data_ptr()) for p in model.parameters()),
    )
