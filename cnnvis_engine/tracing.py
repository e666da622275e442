"""The layers an input actually passed through, in execution order, and which kinds of layer each is (the kinds
methods declare they take: `Method.layer`).

A `Trace` is built from one recorded forward pass (`hooks.capture`). Layers are listed in the order their
calls started (a block before the layers inside it); a module run several times (ResNet's shared `relu`)
appears once with its call count, and its shape is that of its last call.

CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150) needs the network to end in global average
pooling followed by one Linear layer. We find that structure from the recorded values rather than from
module names: the model's output must be the output of one Linear, and the Linear's input must equal the
spatial mean of some recorded 4-D output. The latest such output is the CAM layer — the global pool's
input (for a ResNet that is `layer4`, not `layer4.2.conv3`, and for EfficientNet the activated `bn2`,
not `conv_head`).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

import torch
from torch import nn

from .errors import LayerError
from .hooks import ACTIVATION_MODULES, GUIDED_ACTIVATIONS, Capture, ModuleCall
from .methods import METHODS
from .methods.base import LayerKind

# Modules that, in eval mode, give back their input unchanged: their maps are their input's maps. timm fills
# blocks with Identity placeholders (106 of efficientnet_lite0's 261 spatial entries).
PASS_THROUGH_KINDS = frozenset(
    {
        "Identity",
        "Dropout",
        "Dropout1d",
        "Dropout2d",
        "Dropout3d",
        "AlphaDropout",
        "FeatureAlphaDropout",
        "DropPath",
        "DropBlock2d",
    }
)


@dataclass(frozen=True)
class LayerInfo:
    """One traced module. `shape` is its output without the batch dimension; () if not a tensor."""

    name: str
    kind: str
    shape: tuple[int, ...]
    calls: int
    is_leaf: bool
    depth: int
    order: int  # when its first call started
    end: int  # when its last call ended
    kinds: frozenset[LayerKind]  # "spatial" (a C × h × w output), "conv" (a convolution), "cam_site"

    @property
    def methods(self) -> frozenset[str]:
        """The registered methods that may use this layer."""
        return frozenset(name for name, method in METHODS.items() if method.layer in self.kinds)

    @property
    def passes_through(self) -> bool:
        """Whether this module only passes its input on (an Identity, a dropout in eval mode)."""
        return self.kind in PASS_THROUGH_KINDS

    @property
    def label(self) -> str:
        shape = "×".join(str(s) for s in self.shape) or "—"
        reuse = f" · runs {self.calls}×" if self.calls > 1 else ""
        return f"{self.name} · {self.kind} · {shape}{reuse}"


@dataclass(frozen=True)
class CamSite:
    """Where CAM applies: `layer` feeds the global average pool, whose result feeds Linear `linear`."""

    layer: str
    linear: str


@dataclass(frozen=True)
class Trace:
    layers: tuple[LayerInfo, ...]
    cam_site: CamSite | None
    cam_reason: str  # why CAM does not apply; empty when it does
    unguided: tuple[str, ...]  # activations guided backprop leaves as they are (module names, functional calls)

    def get(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        close = difflib.get_close_matches(name, [layer.name for layer in self.layers], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise LayerError(f"The model has no layer called '{name}'.{hint}")

    def of_kind(self, kind: LayerKind) -> list[LayerInfo]:
        return [layer for layer in self.layers if kind in layer.kinds]

    def for_method(self, method: str) -> list[LayerInfo]:
        """The layers `method` may use: those of the kind it declares."""
        return self.of_kind(METHODS[method].layer)

    def default_layer(self, method: str) -> str | None:
        return self.default_of_kind(METHODS[method].layer)

    def default_of_kind(self, kind: LayerKind) -> str | None:
        """The last spatial block output for map methods, the first convolution for kernels, the global pool's
        input for CAM; None for methods that take no layer."""
        if kind == "cam_site":
            return self.cam_site.layer if self.cam_site else None
        candidates = self.of_kind(kind)
        if not candidates:
            return None
        if kind == "conv":
            return candidates[0].name
        blocks = [layer for layer in candidates if not layer.is_leaf] or candidates
        return max(blocks, key=lambda layer: layer.end).name


def _kinds_of(module: nn.Module, shape: tuple[int, ...]) -> frozenset[LayerKind]:
    kinds: set[LayerKind] = set()
    if len(shape) == 3 and shape[1] * shape[2] > 1:
        kinds.add("spatial")
    if isinstance(module, nn.Conv2d):
        kinds.add("conv")
    return frozenset(kinds)


def _find_cam_site(calls: list[ModuleCall], output: torch.Tensor) -> tuple[CamSite | None, str]:
    finished = sorted((c for c in calls if c.output is not None), key=lambda c: c.end)
    linear = next((c for c in reversed(finished) if isinstance(c.module, nn.Linear)), None)
    if linear is None or linear.first_input is None:
        return (
            None,
            "CAM needs the network to end in one Linear layer after global average pooling; this one has no Linear layer.",
        )
    if linear.output.shape != output.shape or not torch.equal(linear.output, output):
        return None, (
            f"CAM needs the network's output to come straight from one Linear layer; after '{linear.name}' "
            "the network still changes the result (for example a second Linear layer or an activation)."
        )
    features = linear.first_input
    for call in reversed(finished):
        out = call.output
        if call.end >= linear.end or out.dim() != 4 or out.shape[2] * out.shape[3] <= 1:
            continue
        if out.shape[:2] == features.shape and torch.allclose(out.mean(dim=(2, 3)), features, rtol=1e-4, atol=1e-5):
            return CamSite(layer=call.name, linear=linear.name), ""
        break  # the latest spatial output is not what was pooled: something else sits in between
    return None, (
        f"CAM needs global average pooling right before the last Linear layer ('{linear.name}'); here the "
        "Linear layer receives something else (for example a flattened 7×7 map or extra layers), so the "
        "class weights cannot be laid back onto a feature map. Grad-CAM works on this model."
    )


def _unguided(calls: list[ModuleCall], functional: dict[str, int]) -> tuple[str, ...]:
    names = sorted(
        {
            f"{c.name} ({type(c.module).__name__})"
            for c in calls
            if isinstance(c.module, ACTIVATION_MODULES) and not isinstance(c.module, GUIDED_ACTIVATIONS)
        }
        | {
            f"{c.name} (TorchScript: every activation inside)"
            for c in calls
            if isinstance(c.module, torch.jit.ScriptModule)
        }
    )
    names += [f"functional {name} ×{count}" for name, count in sorted(functional.items())]
    return tuple(names)


def start_order(calls: list[ModuleCall]) -> list[ModuleCall]:
    """Calls in the order they started, from calls in the order they ended: a call's children are the calls
    of its submodules (by name) that ended just before it, so each call is put before its children. A module
    called from outside its parent module (rare) is placed as if it ran at its end."""
    done: list[list[ModuleCall]] = []  # finished calls not yet claimed by a parent, each with its subtree
    for call in calls:
        prefix = call.name + "."
        first_child = len(done)
        while first_child and done[first_child - 1][0].name.startswith(prefix):
            first_child -= 1
        subtree = [call]
        for child in done[first_child:]:
            subtree += child
        del done[first_child:]
        done.append(subtree)
    return [call for subtree in done for call in subtree]


def build_trace(capture: Capture, output: torch.Tensor, functional: dict[str, int] | None = None) -> Trace:
    """Turn a recorded forward pass into the list of layers the input passed through."""
    started = {id(call): position for position, call in enumerate(start_order(capture.calls))}
    grouped = capture.by_name()
    layers = []
    for name, calls in grouped.items():
        last = max(calls, key=lambda c: c.end)
        shape = tuple(last.output.shape[1:]) if last.output is not None else ()
        module = last.module
        layers.append(
            LayerInfo(
                name=name,
                kind=type(module).__name__,
                shape=shape,
                calls=len(calls),
                is_leaf=next(module.children(), None) is None,
                depth=name.count(".") + 1,
                order=min(started[id(call)] for call in calls),
                end=last.end,
                kinds=_kinds_of(module, shape),
            )
        )
    layers.sort(key=lambda layer: layer.order)
    site, reason = _find_cam_site(capture.calls, output)
    if site is not None:
        layers = [
            dataclasses.replace(layer, kinds=layer.kinds | {"cam_site"}) if layer.name == site.layer else layer
            for layer in layers
        ]
    return Trace(
        layers=tuple(layers),
        cam_site=site,
        cam_reason=reason,
        unguided=_unguided(capture.calls, functional if functional is not None else capture.functional_activations),
    )
