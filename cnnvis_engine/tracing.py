"""The layers an input actually passed through, in execution order, and which kinds of layer each is (the kinds
methods declare they take: `Method.layer`). This module speaks layer kinds only; which methods a layer serves is
the methods' business (`methods.layers_for`, `methods.default_layer`), so tracing imports no method.

A `Trace` is built from one recorded forward pass (`hooks.capture`). Layers are listed in the order their
calls started (a block before the layers inside it); a module run several times (ResNet's shared `relu`)
appears once with its call count, and its shape is that of its last call.

CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150) needs the network to end in global average
pooling followed by one Linear layer. We find that structure from the recorded values rather than from
module names: the model's output must be the output of one Linear, and the Linear's input must equal the
spatial mean of some recorded 4-D output. The latest such output is the CAM layer — the global pool's
input (for a ResNet that is `layer4`, not `layer4.2.conv3`, and for EfficientNet the activated `bn2`,
not `conv_head`).

Each layer's output has a layout (`layouts`): a map, channels-last, tokens on a patch grid, or not a map with a
reason; "spatial" means it is a map in some layout. The same check finds CAM's pool through any layout (a
transformer that averages its patch tokens), and says so when the head reads a class token alone instead.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from .errors import LayerError
from .hooks import ACTIVATION_MODULES, GUIDED_ACTIVATIONS, Capture, ModuleCall
from .layouts import Declared, Layout, Output, assign, declared, not_a_map

# Which layers a method takes (`Method.layer`): none; any layer with a spatial output (C, h, w) in some layout; a
# convolution (its weights); or the CAM site, the layer that feeds the global average pool (found here; the user
# does not choose it).
LayerKind = Literal["none", "spatial", "conv", "cam_site"]

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


MAP = Layout("map")


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
    kinds: frozenset[LayerKind]  # "spatial" (a map in some layout), "conv" (a convolution), "cam_site"
    layout: Layout = MAP  # how its output forms a picture (`layouts`); kind "none" for no map

    @property
    def passes_through(self) -> bool:
        """Whether this module only passes its input on (an Identity, a dropout in eval mode)."""
        return self.kind in PASS_THROUGH_KINDS

    @property
    def map_shape(self) -> tuple[int, ...]:
        """The (C, h, w) of its canonical view; its own shape if it is no map."""
        if not self.layout.is_map or self.layout.kind == "map":
            return self.shape
        return (self.shape[-1], *self.layout.grid)

    @property
    def label(self) -> str:
        shape = "×".join(str(s) for s in self.shape) or "—"
        reuse = f" · runs {self.calls}×" if self.calls > 1 else ""
        layout = f" · {self.layout.describe()}" if self.layout.is_map and self.layout.kind != "map" else ""
        return f"{self.name} · {self.kind} · {shape}{layout}{reuse}"


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
    pooling: str = ""  # "class token": the head reads a prefix token alone (its patches get no weight of their own)

    def get(self, name: str) -> LayerInfo:
        for layer in self.layers:
            if layer.name == name:
                return layer
        close = difflib.get_close_matches(name, [layer.name for layer in self.layers], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise LayerError(f"The model has no layer called '{name}'.{hint}")

    def of_kind(self, kind: LayerKind) -> list[LayerInfo]:
        return [layer for layer in self.layers if kind in layer.kinds]

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
        later = [layer for layer in candidates if not _is_position(layer)] or candidates
        blocks = [layer for layer in later if not layer.is_leaf] or later
        chosen = max(blocks, key=lambda layer: layer.end)
        if chosen.layout.kind == "tokens" and chosen.layout.prefix:
            return self._entry_of_last_block(chosen, later).name
        return chosen.name

    def _entry_of_last_block(self, chosen: LayerInfo, candidates: list[LayerInfo]) -> LayerInfo:
        """For a transformer with prefix tokens: when its head reads the class token alone, the last block's output
        gets no gradient through its patches, so the map is read where the last block starts (its first norm,
        pytorch-grad-cam's `blocks[-1].norm1`), which serves average pooling as well: from `chosen`, down through the last map inside it to the last of a run of
        repeated blocks, then that block's first map layer."""
        inside = {layer.name: layer for layer in candidates}
        classes = {layer.name: layer.kind for layer in self.layers}
        block = chosen
        while not _repeated(block.name, classes):
            children = [layer for layer in inside.values() if _parent(layer.name) == block.name and not layer.is_leaf]
            if not children:
                break
            block = max(children, key=lambda layer: layer.end)
        within = [layer for layer in candidates if layer.name.startswith(block.name + ".")]
        return min(within, key=lambda layer: layer.order) if within else block


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _repeated(name: str, classes: dict[str, str]) -> bool:
    """Whether the module is one of several siblings of its class (a block in a stack of blocks)."""
    parent, kind = _parent(name), classes.get(name)
    if kind in ("Sequential", "ModuleList", "ModuleDict"):
        return False
    return sum(1 for other, k in classes.items() if k == kind and _parent(other) == parent and other != name) > 0


def _is_position(layer: LayerInfo) -> bool:
    """A positional embedding: it shows where patches are, not what the picture holds."""
    last = layer.name.rpartition(".")[2].lower()
    return "positional" in layer.kind.lower() or last in {"pos_embed", "pos_embedding", "pos_enc", "rel_pos"}


def _kinds_of(module: nn.Module, shape: tuple[int, ...], layout: Layout) -> frozenset[LayerKind]:
    kinds: set[LayerKind] = set()
    if layout.is_map:
        kinds.add("spatial")
    if isinstance(module, nn.Conv2d):
        kinds.add("conv")
    return frozenset(kinds)


def _find_cam_site(
    calls: list[ModuleCall], output: torch.Tensor, layouts: dict[str, Layout]
) -> tuple[CamSite | None, str, str]:
    """The CAM site, or why there is none; and "class token" when the head reads a prefix token alone."""
    finished = sorted((c for c in calls if c.output is not None), key=lambda c: c.end)
    linears = [c for c in reversed(finished) if isinstance(c.module, nn.Linear) and c.first_input is not None]
    if not linears:
        return (
            None,
            "CAM needs the network to end in one Linear layer after global average pooling; this one has no Linear layer.",
            "",
        )
    token = next((read for linear in linears[:2] if (read := _reads_prefix_token(finished, linear, layouts))), "")
    if token:
        return None, token, "class token"
    linear = linears[0]
    if linear.recorded_output().shape != output.shape or not torch.equal(linear.recorded_output(), output):
        return (
            None,
            (
                f"CAM needs the network's output to come straight from one Linear layer; after '{linear.name}' "
                "the network still changes the result (for example a second Linear layer or an activation)."
            ),
            "",
        )
    features = linear.recorded_input()
    for call in reversed(finished):
        layout = layouts.get(call.name)
        if call.end >= linear.end or layout is None or not layout.is_map:
            continue
        pooled = layout.view(call.recorded_output()).mean(dim=(2, 3))
        if pooled.shape == features.shape and torch.allclose(pooled, features, rtol=1e-4, atol=1e-5):
            return CamSite(layer=call.name, linear=linear.name), "", ""
        break  # the latest spatial output is not what was pooled: something else sits in between
    return (
        None,
        (
            f"CAM needs global average pooling right before the last Linear layer ('{linear.name}'); here the "
            "Linear layer receives something else (for example a flattened 7×7 map, a normalisation after the "
            "pooling, or extra layers), so the class weights cannot be laid back onto a feature map. Grad-CAM "
            "works on this model."
        ),
        "",
    )


def _reads_prefix_token(finished: list[ModuleCall], linear: ModuleCall, layouts: dict[str, Layout]) -> str:
    """Why CAM does not apply if `linear` reads one prefix token of the latest token sequence before it (a ViT's
    class token); empty otherwise."""
    features = linear.recorded_input()
    for call in reversed(finished):
        layout = layouts.get(call.name)
        if call.end >= linear.end or layout is None or layout.kind != "tokens":
            continue
        for index in range(layout.prefix):
            token = call.recorded_output()[:, index]
            if token.shape == features.shape and torch.allclose(token, features, rtol=1e-4, atol=1e-5):
                return (
                    f"CAM needs the class score to come from the average over the picture's patches; this "
                    f"transformer's '{linear.name}' reads token {index} of '{call.name}' alone (a "
                    f"{'class' if index == 0 else 'prefix'} token that gathers the patches through attention), "
                    "so no weight belongs to any one patch. Grad-CAM works on this model."
                )
        return ""
    return ""


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


def build_trace(
    capture: Capture,
    output: torch.Tensor,
    functional: dict[str, int] | None = None,
    model: nn.Module | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Trace:
    """Turn a recorded forward pass into the list of layers the input passed through. `model` (what it declares
    about its layouts) and `input_shape` (N, C, H, W) tell the layouts; without them only layers that are maps by
    construction or fit no other reading are maps."""
    order = start_order(capture.calls)
    started = {id(call): position for position, call in enumerate(order)}
    grouped = capture.by_name()
    last_calls = {name: max(calls, key=lambda c: c.end) for name, calls in grouped.items()}
    batch = input_shape[0] if input_shape else (output.shape[0] if output.dim() else 1)
    input_size = (int(input_shape[2]), int(input_shape[3])) if input_shape and len(input_shape) == 4 else (0, 0)
    decl = declared(model, input_size) if model is not None else Declared()
    layouts = assign(_outputs(order, last_calls), batch, input_size, decl)
    layers = []
    for name, calls in grouped.items():
        last = last_calls[name]
        shape = tuple(last.output.shape[1:]) if last.output is not None else ()
        module = last.module
        layout = layouts.get(name) or not_a_map("not a tensor")
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
                kinds=_kinds_of(module, shape, layout),
                layout=layout,
            )
        )
    layers.sort(key=lambda layer: layer.order)
    site, reason, pooling = _find_cam_site(capture.calls, output, layouts)
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
        pooling=pooling,
    )


def _outputs(order: list[ModuleCall], last_calls: dict[str, ModuleCall]) -> list[Output]:
    """Each layer's last output for `layouts.assign`, in start order, with whether it ran between a Permute to
    channels-last and the Permute back (torchvision's ConvNeXt and Swin blocks)."""
    outputs, seen, region = [], set(), False
    for call in order:
        dims = tuple(getattr(call.module, "dims", ())) if type(call.module).__name__ == "Permute" else ()
        if dims == (0, 2, 3, 1):
            region = True
        elif dims == (0, 3, 1, 2):
            region = False
        last = last_calls[call.name]
        if call.name in seen or last.output is None:
            continue
        seen.add(call.name)
        first = last.first_input
        shape = tuple(first.shape) if first is not None else ()
        outputs.append(Output(call.name, last.module, tuple(last.output.shape), last.output, region, shape))
    return outputs
