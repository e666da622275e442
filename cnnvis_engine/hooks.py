"""The only place the engine registers hooks. Every hook lives inside a `with` block and is removed on exit,
also when the body raises.

`capture(model, ...)` records, for one forward pass, every module call in execution order with its output
(kept attached to the autograd graph, so gradients with respect to any layer can be asked for later without
a new forward pass). Outputs that a later in-place operation would overwrite (a BatchNorm followed by
`ReLU(inplace=True)`, `out += identity`) can be listed in `clone_outputs`: their hook hands the rest of the
network a clone, as captum does, so what we keep is the module's true output. Without a clone, a call keeps
its input and its graph node, so the true output can be recomputed and its gradient caught at the node
(`node_gradient`) — no copy on every forward pass.

`guided` makes every `nn.ReLU`/`nn.ReLU6` output carry a tensor hook that, while the switch is on, clamps
the incoming gradient at zero: R_in = 1[x > 0] * 1[R_out > 0] * R_out (Springenberg et al. 2015). The
modules are never swapped, so the model is untouched; the switch is per forward pass, so passes in other
threads are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.PReLU, nn.Softplus, nn.Hardtanh,
)
FUNCTIONAL_ACTIVATIONS = {
    torch.relu: "relu", torch.relu_: "relu", torch.nn.functional.relu: "relu", torch.nn.functional.relu6: "relu6",
    torch.nn.functional.silu: "silu", torch.nn.functional.gelu: "gelu", torch.nn.functional.hardswish: "hardswish",
    torch.nn.functional.hardsigmoid: "hardsigmoid", torch.sigmoid: "sigmoid", torch.nn.functional.mish: "mish",
    torch.nn.functional.leaky_relu: "leaky_relu", torch.nn.functional.elu: "elu", torch.tanh: "tanh",
}


@dataclass
class ModuleCall:
    """One call of one module during a forward pass."""

    name: str
    module: nn.Module
    start: int  # position among call starts (parents before children)
    end: int = -1  # position among call ends (children before parents)
    output: torch.Tensor | None = None  # the true output, attached to the graph
    first_input: torch.Tensor | None = None
    input_version: int = 0  # first_input._version when the call started
    single_input: bool = True  # called with exactly one positional tensor and no keywords
    version: int = 0  # output._version when the call ended
    node: object = None  # output.grad_fn when the call ended: the graph node that produced the true output
    output_nr: int = 0

    def recoverable(self) -> bool:
        """Whether an output overwritten in place later can be had again without running the model: its
        module re-run on its own (unchanged) input, and its gradient read where its graph node receives it."""
        return (
            self.single_input
            and self.first_input is not None
            and self.first_input._version == self.input_version
            and self.node is not None
        )


@dataclass
class GuidedSwitch:
    """Turns guided-backprop clamping on for the backward passes of one forward pass."""

    on: bool = False

    def clamp(self, grad: torch.Tensor) -> torch.Tensor | None:
        return grad.clamp(min=0) if self.on else None


@dataclass
class Capture:
    """What `capture` recorded: module calls in start order, grouped by name."""

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

    def __torch_function__(self, func, types, args=(), kwargs=None):
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
    guided: GuidedSwitch | None = None,
    count_functional: bool = False,
    only: Collection[str] | None = None,
) -> Iterator[Capture]:
    """Record every submodule call (or those named in `only`) of the forward passes run inside the block;
    see the module docstring."""
    record = Capture()
    counter = [0]  # calls started so far; ends are numbered by `ends`
    ends = [0]
    inside_activation = [0]
    open_calls: dict[int, list[ModuleCall]] = {}
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def pre_hook(name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            first = _first_tensor(args)
            call = ModuleCall(
                name=name, module=module, start=counter[0], first_input=first,
                input_version=first._version if first is not None else 0,
                single_input=len(args) == 1 and not kwargs and first is args[0],
            )
            counter[0] += 1
            record.calls.append(call)
            open_calls.setdefault(id(module), []).append(call)
            if isinstance(module, ACTIVATION_MODULES):
                inside_activation[0] += 1

        return hook

    def post_hook(name: str):
        def hook(module: nn.Module, args: tuple, output: object) -> object:
            call = open_calls[id(module)].pop()
            call.end = ends[0]
            ends[0] += 1
            if isinstance(module, ACTIVATION_MODULES):
                inside_activation[0] -= 1
            tensor = output if isinstance(output, torch.Tensor) else None
            if tensor is None:
                return None
            call.output, call.version = tensor, tensor._version
            call.node, call.output_nr = tensor.grad_fn, tensor.output_nr
            if guided is not None and isinstance(module, GUIDED_ACTIVATIONS) and tensor.requires_grad:
                tensor.register_hook(guided.clamp)
            if name in clone_outputs:
                return tensor.clone()
            return None

        return hook

    for name, module in model.named_modules():
        if module is model or (only is not None and name not in only):
            continue
        handles.append(module.register_forward_pre_hook(pre_hook(name), with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook(name)))
    mode = _FunctionalActivationCounter(record, inside_activation) if count_functional else contextlib.nullcontext()
    try:
        with mode:
            yield record
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def node_gradient(call: ModuleCall) -> Iterator[list[torch.Tensor]]:
    """While the block runs a backward pass through `call.node`, catch the gradient arriving at the module's
    true output (the node's output `call.output_nr`), even though the tensor was overwritten in place."""
    caught: list[torch.Tensor] = []

    def hook(grad_outputs: tuple[torch.Tensor | None, ...]) -> None:
        grad = grad_outputs[call.output_nr]
        if grad is not None:
            caught.append(grad)

    handle = call.node.register_prehook(hook)
    try:
        yield caught
    finally:
        handle.remove()


def count_hooks(model: nn.Module) -> int:
    """Forward, pre-forward and backward hooks on all modules: zero after every engine call."""
    total = 0
    for module in model.modules():
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
        total += len(module._backward_hooks) + len(getattr(module, "_backward_pre_hooks", {}))
    return total


def model_state(model: nn.Module) -> tuple:
    """A snapshot of what a call must leave unchanged: training flags, requires_grad and .grad identity."""
    return (
        tuple(m.training for m in model.modules()),
        tuple((p.requires_grad, None if p.grad is None else p.grad.data_ptr()) for p in model.parameters()),
    )
