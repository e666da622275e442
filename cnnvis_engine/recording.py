"""Recorded forward passes and what the methods take from them afterwards.

A `Recorder` (one per explainer) runs the model with every module call recorded (`hooks.capture`) and keeps
the layer lists it built, by input shape and the order the modules ran in. A `RecordedPass` is one such pass
of N images, its autograd graph kept: gradients to the input or to a layer (one plain backward pass for all
of them, a guided one for guided backprop), the true values of outputs overwritten in place, a second
recording when one cannot be recovered, and the CAM weights of the targets. `extra_pass` is the plain pass
that perturbation and noise methods run on altered pictures.

Thread safety: the recording wrappers and hooks exist only inside a forward pass, which holds the bundle's
lock (`ModelBundle.run`, with `capture` inside the same lock); the backward passes of one recorded pass hold
its own `lock` (the caller takes it: guided backprop hooks that pass's graph).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import attention
from .errors import MethodError
from .hooks import Capture, ModuleCall, capture, guided_backward, node_gradient
from .models.bundle import ModelBundle
from .targets import ClassTarget, RegressionTarget, Target
from .tracing import Trace, build_trace

_TraceKey = tuple[tuple[int, ...], tuple[int, ...]]  # (input shape, the modules in the order they ran)

MAX_TRACES = 4  # layer lists kept per explainer (input shapes × module orders)


class Recorder:
    """Records forward passes of one model and keeps their layer lists. Safe to share between threads."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.bundle = bundle
        self._functional: dict[tuple[int, ...], dict[str, int]] = {}  # per input shape, counted once
        self._traces: OrderedDict[_TraceKey, Trace] = OrderedDict()  # by the order the modules ran in; see `trace`
        self._latest: dict[tuple[int, ...], _TraceKey] = {}  # input shape -> key of its latest trace

    def whole(
        self, x: torch.Tensor, images: list[np.ndarray], notes: list[tuple[str, ...]], graph: bool = True
    ) -> RecordedPass:
        """A whole recorded pass: every layer's output, and the graph from the input on if `graph`."""
        x = x.requires_grad_(graph)
        output, record = self.record(x, graph)
        return RecordedPass(
            self,
            x,
            output,
            record.by_name(),
            self.trace(x, output, record),
            images,
            notes,
            graph,
            stale=frozenset(record.overwritten()),
        )

    def known_trace(self, shape: tuple[int, ...]) -> Trace | None:
        """The layer list of the latest whole pass of inputs of `shape` (C, H, W), if there was one."""
        key = self._latest.get(shape)
        return self._traces.get(key) if key else None

    def lean(
        self,
        x: torch.Tensor,
        images: list[np.ndarray],
        notes: list[tuple[str, ...]],
        trace: Trace,
        keep: frozenset[str],
        grad_from: frozenset[str],
    ) -> RecordedPass | None:
        """A pass that serves one call only, for methods that take no gradient to the input: it keeps only the
        outputs of `keep`, and its graph starts at the first of `grad_from` (`capture`'s `keep` and
        `grad_from`). On resnet50 that is a forward pass without gradients up to `layer4`: Grad-CAM alone about
        a sixth faster than a whole recorded pass. It reuses `trace` (`known_trace`); None (a whole pass is
        needed) when the model ran other modules this time."""
        output, record = self.record(x, False, keep=keep, grad_from=grad_from, clone_outputs=keep - grad_from)
        if self._traces.get(_trace_key(x, record)) is not trace or (grad_from and output.grad_fn is None):
            return None
        return RecordedPass(
            self,
            x,
            output,
            record.by_name(),
            trace,
            images,
            notes,
            bool(grad_from),
            stale=frozenset(record.overwritten()),
            cloned=keep,
        )

    def record(self, x: torch.Tensor, graph: bool, **options: Any) -> tuple[torch.Tensor, Capture]:
        """One forward pass with module calls recorded (`capture`'s `options`), under the bundle's lock (no
        other thread's pass may run through the recording), with its autograd graph if `graph`."""
        shape = tuple(x.shape[1:])
        with self.bundle.lock:
            count = shape not in self._functional
            with (
                torch.set_grad_enabled(graph),
                capture(self.bundle.module, count_functional=count, **options) as record,
            ):
                output = self.bundle.run(x, failed_on="this image", fast=False)
            if count:
                self._functional[shape] = dict(record.functional_activations)
        return output, record

    def trace(self, x: torch.Tensor, output: torch.Tensor, record: Capture) -> Trace:
        """The layer list of a recorded pass. Images of one shape that run the same modules in the same nesting
        (every image, for a CNN without data-dependent branches) share one Trace: building it is pure Python
        over every call, and checking the call order is a fraction of that."""
        key = _trace_key(x, record)
        with self.bundle.lock:
            trace = self._traces.get(key)
            if trace is None:
                trace = build_trace(
                    record, output.detach(), self._functional[key[0]], self.bundle.module, tuple(x.shape)
                )
                if not bool(torch.isfinite(output.detach()).all()):  # judged from NaN, it must not serve others
                    return trace
                self._traces[key] = trace
                while len(self._traces) > MAX_TRACES:
                    self._traces.popitem(last=False)
            self._latest[key[0]] = key
        return trace


@dataclass
class RecordedPass:
    """One recorded forward pass of N images, its graph kept for later backward passes. Take `lock` around
    everything done with it after recording."""

    recorder: Recorder
    x: torch.Tensor  # (N, C, H, W), requires grad when `graph` starts at the input
    output: torch.Tensor
    calls: dict[str, list[ModuleCall]]
    trace: Trace
    images: list[np.ndarray]  # (H, W, 3) uint8 each: the inputs as the model saw them
    notes: list[tuple[str, ...]]
    graph: bool = True  # kept its autograd graph (False: a batch whose methods take no gradient from it)
    stale: frozenset[str] = frozenset()  # recorded outputs overwritten in place afterwards
    cloned: frozenset[str] = frozenset()  # outputs recorded through a clone, so they stay true
    lock: threading.Lock = field(default_factory=threading.Lock)
    gradients: dict[tuple[object, str], torch.Tensor] = field(default_factory=dict)
    recomputed: dict[str, torch.Tensor] = field(default_factory=dict)  # true values of stale outputs
    attentions: dict[tuple[object, bool], attention.AttentionRecord] = field(
        default_factory=dict
    )  # by (targets, gradients)

    def last_call(self, layer: str) -> ModuleCall:
        return max(self.calls[layer], key=lambda c: c.end)

    def activation(self, layer: str) -> torch.Tensor:
        """The layer's recorded output at its last call, attached to the graph: (N, C, h, w). For a layer in
        `stale` its values were overwritten in place; use `value` and `gradient` for those."""
        return self.last_call(layer).recorded_output()

    def value(self, layer: str) -> torch.Tensor:
        """The layer's true output, detached. One overwritten in place is recomputed from its own input by its
        module alone (under the bundle's lock: other threads' hooks must not see this call), once per pass."""
        if layer not in self.stale:
            return self.activation(layer).detach()
        if layer not in self.recomputed:
            call = self.last_call(layer)
            with self.recorder.bundle.lock, torch.no_grad():
                self.recomputed[layer] = call.module(call.recorded_input().detach())
        return self.recomputed[layer]

    def refresh(self, layers: set[str]) -> None:
        """Record again, cloning those `layers` whose outputs were overwritten in place and cannot be recovered
        from their module's input (a module with several inputs, or whose input was overwritten too).
        Outputs overwritten behind a BatchNorm's back by ReLU(inplace=True) or `out += identity` are
        recoverable, so the usual layers never cost another forward pass."""
        needed = {name for name in layers & self.stale if not self.last_call(name).recoverable(self.graph)}
        if not needed:
            return
        clone = self.cloned | needed
        output, record = self.recorder.record(self.x, self.graph, clone_outputs=clone)
        self.output, self.calls, self.cloned = output, record.by_name(), clone
        self.stale = frozenset(record.overwritten()) - clone

    def score(self, targets: tuple[Target, ...]) -> torch.Tensor:
        """Σ_i score_i(output_i), one target per image: samples are independent in eval mode, so one backward pass
        serves all."""
        return score_of(self.output, targets)

    def gradient(self, targets: tuple[Target, ...], score: torch.Tensor, what: str) -> torch.Tensor:
        """d score / d `what` ("input", "guided" input, or a layer name), cached per pass and targets."""
        key = (_hashable(targets), what)
        if key in self.gradients:
            return self.gradients[key]
        if what == "guided":
            with guided_backward(call for calls in self.calls.values() for call in calls):
                (grad,) = torch.autograd.grad(score, self.x, retain_graph=True)
        elif what in self.stale:  # the output was overwritten: catch its gradient where its graph node gets it
            call = self.last_call(what)
            with node_gradient(call) as caught:
                torch.autograd.grad(score, call.recorded_input(), retain_graph=True, allow_unused=True)
            grad = caught[0] if caught else torch.zeros_like(call.recorded_output())
        else:
            source = self.x if what == "input" else self.activation(what)
            (grad,) = torch.autograd.grad(score, source, retain_graph=True, allow_unused=True)
            if grad is None:
                grad = torch.zeros_like(source)
        grad = grad.detach()
        if key[0] is not None:
            self.gradients[key] = grad
        return grad

    def plain_pass(self, targets: tuple[Target, ...], score: torch.Tensor, wanted: list[str]) -> None:
        """One plain backward pass for every still-missing plain gradient (input and layers) at once."""
        tkey = _hashable(targets)
        missing = [w for w in dict.fromkeys(wanted) if (tkey, w) not in self.gradients and w not in self.stale]
        if len(missing) < 2 or tkey is None:
            return
        sources = [self.x if w == "input" else self.activation(w) for w in missing]
        grads = torch.autograd.grad(score, sources, retain_graph=True, allow_unused=True)
        for w, source, grad in zip(missing, sources, grads):
            self.gradients[(tkey, w)] = (torch.zeros_like(source) if grad is None else grad).detach()

    def attention(self, targets: tuple[Target, ...], gradients: bool) -> attention.AttentionRecord:
        """Every block's attention on this pass's input, and with `gradients` d score / d it, from a pass of its
        own (`attention.record`: timm's probabilities exist only with its fused attention off), cached per pass
        (and targets, with gradients)."""
        key = (_hashable(targets), True) if gradients else (None, False)
        if key in self.attentions:
            return self.attentions[key]
        score = functools.partial(score_of, targets=targets) if gradients else None
        record = attention.record(self.recorder.bundle, self.x, score)
        if key[0] is not None or not gradients:
            self.attentions[key] = record
        return record

    def cam_weights(self, targets: tuple[Target, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample, the CAM site's Linear weight rows (N, C) and biases (N,) of the target's outputs."""
        site = self.trace.cam_site
        linear = None if site is None else self.recorder.bundle.module.get_submodule(site.linear)
        if not isinstance(linear, torch.nn.Linear):
            raise MethodError(self.trace.cam_reason or "CAM needs the network to end in one Linear layer.")
        weight = linear.weight.detach()
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros(weight.shape[0], device=weight.device)
        rows = [
            [t.index]
            if isinstance(t, ClassTarget)
            else list((t.outputs if isinstance(t, RegressionTarget) else None) or range(weight.shape[0]))
            for t in targets
        ]
        return torch.stack([weight[r].sum(dim=0) for r in rows]), torch.stack([bias[r].sum() for r in rows])


def score_of(output: torch.Tensor, targets: tuple[Target, ...]) -> torch.Tensor:
    """Σ_i score_i(output_i) for N outputs, one target per image."""
    classes = [t for t in targets if isinstance(t, ClassTarget)]
    if len(classes) == len(targets) and output.dim() == 2:
        for target in set(classes):
            target.score(output[:1])  # raises a TargetError for a class the model does not have
        index = torch.tensor([t.index for t in classes], device=output.device)[:, None]
        return output.gather(1, index).sum()
    return torch.cat([t.score(output[i : i + 1]) for i, t in enumerate(targets)]).sum()


def extra_pass(
    bundle: ModelBundle, x: torch.Tensor, layer: str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An extra forward pass for methods that need one (perturbed or noisy inputs, (M, C, H, W)): the model's
    output and, if `layer` is named, that layer's true output (last call), both attached to the graph when grad
    is on. Holds the bundle's lock, so no other thread's hooks can fire in it; a model failure (out of memory,
    say) becomes a ModelError that says what may help."""
    x = x.to(bundle.device)
    failed_on, hint = f"a batch of {len(x)} altered pictures", ". A smaller internal_batch_size may help."
    if layer is None:
        return bundle.run(x, failed_on=failed_on, hint=hint), None
    with bundle.lock, capture(bundle.module, clone_outputs={layer}, only={layer}) as record:
        output = bundle.run(x, failed_on=failed_on, hint=hint)
    return output, max(record.calls, key=lambda c: c.end).output


def _trace_key(x: torch.Tensor, record: Capture) -> _TraceKey:
    return tuple(x.shape[1:]), tuple(id(call.module) for call in record.calls)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return None
    return value
