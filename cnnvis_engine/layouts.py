"""How each traced output lays out its numbers, so that map methods read every one as channels × height × width.

A layer's output (batch first) is one of:
- a map, (N, C, h, w): what convolutions give;
- channels-last, (N, h, w, C): Swin, Hiera, MambaOut, VOLO, Sequencer, and torchvision's ConvNeXt and Swin between
  their `Permute` calls;
- tokens, (N, P + h·w, C): a vision transformer's sequence, whose last h·w tokens are the patch grid after P prefix
  tokens (class, distillation, register tokens);
- not a map: per-head tensors (heads × tokens × features), attention matrices (tokens × tokens), vectors, patches
  folded into the batch (MobileViT), anything whose grid cannot be told for certain.

What the model declares is read first (timm's `num_prefix_tokens`, `patch_embed`, `output_fmt` and `feature_info`;
torchvision ViT's class token and patch size; the `Permute` calls recorded in the pass; layers whose output is a map
by construction: convolutions, 2-D norms and pools), and the grids it shows are the grids a layout may have. Only
where the model declares nothing is a grid inferred from the input size (an integer stride). An output that reads as
a grid both ways (7 × 7 × 7) is not a map: it is never guessed. `Layout.view` gives the canonical (N, C, h, w) view:
the explainer hands methods that view of activations and gradients alike, so no method knows about layouts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import nn

from .hooks import ACTIVATION_MODULES

LayoutKind = Literal["map", "channels_last", "tokens", "none"]
Grid = tuple[int, int]
MAX_INFERRED_PREFIX = 8  # prefix tokens tried where a model declares none (class, distillation, a few registers)

# Modules whose 4-D output is (N, C, h, w) by construction.
_ELEMENTWISE: tuple[type[nn.Module], ...] = (
    *ACTIVATION_MODULES,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
MAP_MODULES: tuple[type[nn.Module], ...] = (
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.BatchNorm2d,
    nn.InstanceNorm2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.LPPool2d,
    nn.PixelShuffle,
    nn.Upsample,
)


ADAPTIVE_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class Layout:
    """How one output's numbers (without the batch dimension) form a picture, and why we believe it."""

    kind: LayoutKind
    grid: Grid = (0, 0)
    prefix: int = 0  # tokens before the patch grid
    prefix_words: str = ""  # what they are: "class token", "class and distillation tokens"
    source: str = ""  # what declared or showed the layout
    reason: str = ""  # for "none": why this is not a map, in plain words

    @property
    def is_map(self) -> bool:
        return self.kind != "none" and self.grid[0] * self.grid[1] > 1

    def view(self, values: torch.Tensor) -> torch.Tensor:
        """(N, *output shape) -> (N, C, h, w): prefix tokens dropped, the grid restored, channels first."""
        if self.kind == "channels_last":
            return values.permute(0, 3, 1, 2)
        if self.kind == "tokens":
            patches = values[:, self.prefix :]
            return patches.transpose(1, 2).reshape(values.shape[0], values.shape[2], *self.grid)
        return values

    def describe(self) -> str:
        """ "tokens · 14×14 patches + 1 class token", "channels-last 7×7", "map 7×7"; the reason for "none"."""
        h, w = self.grid
        if self.kind == "tokens":
            words = self.prefix_words or ("prefix token" if self.prefix == 1 else "prefix tokens")
            extra = f" + {self.prefix} {words}" if self.prefix else ""
            return f"tokens · {h}×{w} patches{extra}"
        if self.kind == "channels_last":
            return f"channels-last {h}×{w}"
        if self.kind == "map":
            return f"map {h}×{w}"
        return f"not a map: {self.reason}"


def not_a_map(reason: str) -> Layout:
    return Layout("none", reason=reason)


@dataclass(frozen=True)
class Declared:
    """What a model says about its layouts, for one input size."""

    patch_grid: Grid | None = None
    prefix: int | None = None  # None: not declared
    prefix_words: str = ""
    channels_last: bool = False  # timm's output_fmt == "NHWC": its stages hand on (N, h, w, C)
    stage_modules: tuple[tuple[str, int], ...] = ()  # timm feature_info: stage outputs and their reductions
    source: str = ""
    unrolled: bool = False  # Hiera: tokens in its own unrolled order, row by row only in its last stage
    raster_grid: Grid | None = None  # Hiera: the grid of its last stage, whose tokens are row by row


def declared(model: nn.Module, input_size: Grid) -> Declared:
    """Read the layout declarations of a timm or torchvision model (nothing for other models)."""
    vision_transformer = _torchvision_vit()
    if vision_transformer is not None and isinstance(model, vision_transformer):
        patch = cast(int, model.patch_size)  # torchvision's VisionTransformer keeps it as an int
        return Declared(
            (input_size[0] // patch, input_size[1] // patch),
            1,
            "class token",
            source="torchvision ViT: class token, image_size // patch_size",
        )
    patch_embed = getattr(model, "patch_embed", None)
    grid = _patch_grid(patch_embed, input_size) if isinstance(patch_embed, nn.Module) else None
    prefix = getattr(model, "num_prefix_tokens", None)
    prefix = prefix if isinstance(prefix, int) else None
    info = getattr(model, "feature_info", None)
    info = info if isinstance(info, list) else []
    stages = tuple((f["module"], int(f.get("reduction") or 0)) for f in info if isinstance(f, dict) and "module" in f)
    reduction = next((f.get("reduction") for f in reversed(info) if isinstance(f, dict)), None)
    unrolled = type(model).__name__ == "Hiera"
    last = (input_size[0] // reduction, input_size[1] // reduction) if unrolled and reduction else None
    fmt = getattr(model, "output_fmt", None)
    fmt = getattr(fmt, "value", fmt)
    parts = [
        *(["num_prefix_tokens"] if prefix is not None else []),
        *(["patch_embed"] if grid else []),
        *(["output_fmt NHWC"] if fmt == "NHWC" else []),
        *(["feature_info"] if stages else []),
    ]
    return Declared(
        patch_grid=grid,
        prefix=prefix,
        prefix_words=_prefix_words(model, prefix or 0),
        channels_last=fmt == "NHWC",
        stage_modules=stages,
        source=f"timm: {', '.join(parts)}" if parts else "",
        unrolled=unrolled,
        raster_grid=last,
    )


def _torchvision_vit() -> type | None:
    try:
        from torchvision.models import VisionTransformer
    except ImportError:  # torchvision is optional for the engine
        return None
    found: type = VisionTransformer
    return found


def _patch_grid(patch_embed: nn.Module, input_size: Grid) -> Grid | None:
    feat_size = getattr(patch_embed, "dynamic_feat_size", None)
    if callable(feat_size) and getattr(patch_embed, "patch_size", None) is not None:
        try:
            h, w = feat_size(tuple(input_size))
            return int(h), int(w)
        except (TypeError, ValueError, AttributeError):
            pass
    grid, img_size = getattr(patch_embed, "grid_size", None), getattr(patch_embed, "img_size", None)
    if grid is not None and img_size is not None and tuple(img_size) == tuple(input_size):
        return int(grid[0]), int(grid[1])
    return None


def _prefix_words(model: nn.Module, prefix: int) -> str:
    if prefix <= 0:
        return ""
    names = []
    if getattr(model, "cls_token", None) is not None:
        names.append("class")
    if getattr(model, "dist_token", None) is not None:
        names.append("distillation")
    registers = getattr(model, "num_reg_tokens", 0) or 0
    if registers:
        names.append(f"{registers} register")
    if prefix == 1 and names == ["class"]:
        return "class token"
    return f"prefix tokens ({', '.join(names)})" if names else "prefix tokens"


@dataclass(frozen=True)
class Output:
    """One traced output, as `assign` reads it."""

    name: str
    module: nn.Module
    shape: tuple[int, ...]  # with the batch dimension
    value: torch.Tensor | None  # for the value checks (attention weights); None: not kept
    channels_last_region: bool = False  # run between a Permute to channels-last and the one back
    input_shape: tuple[int, ...] = ()  # its first input's, with the batch dimension


def assign(outputs: Sequence[Output], batch: int, input_size: Grid, decl: Declared) -> dict[str, Layout]:
    """The layout of each output (by name): see the module docstring."""
    grids = _known_grids(outputs, batch, input_size, decl)
    layouts: dict[str, Layout] = {}
    tokens: set[int] = set()
    for out in outputs:  # token sequences first: per-head tensors are told by their token count
        if len(out.shape) == 3 and out.shape[0] == batch:
            layout = _tokens(out, grids, decl, input_size)
            layouts[out.name] = layout
            if layout.kind == "tokens" and layout.prefix:
                tokens.add(out.shape[1])
    for out in outputs:
        if out.name not in layouts:
            layouts[out.name] = _layout(out, batch, grids, decl, input_size, tokens)
    if not decl.channels_last and not any(
        out.channels_last_region or _permute_dims(out.module) == (0, 2, 3, 1) for out in outputs
    ):
        _carry_maps(outputs, layouts)
    return layouts


def _carry_maps(outputs: Sequence[Output], layouts: dict[str, Layout]) -> None:
    """In a model that never goes channels-last (no Permute to it recorded, nothing declared), what cannot change a
    layout keeps its input's: an activation, dropout or identity module (element by element: it cannot permute)
    after a map of its shape, and a container (a Sequential, a block) whose last recorded descendant gives a map of
    its shape. So a ReLU after a convolution of 32 channels at 32×32 is a map, where the shape alone reads both
    ways. Children are settled before their parents (reverse execution order: a container starts first)."""
    previous: dict[str, Output | None] = {}
    last: Output | None = None
    for out in outputs:
        previous[out.name] = last
        last = out
    for out in reversed(outputs):
        layout = layouts[out.name]
        if layout.kind != "none" or len(out.shape) != 4 or "ambiguous" not in layout.reason:
            continue
        if isinstance(out.module, _ELEMENTWISE):
            before = previous[out.name]
            source = before if before is not None and before.shape == out.shape else None
        else:
            inside = [o for o in outputs if o.name.startswith(out.name + ".") and o.shape == out.shape]
            source = inside[-1] if inside else None
        carried = layouts.get(source.name) if source is not None else None
        if carried is not None and source is not None and carried.kind == "map":
            layouts[out.name] = Layout(
                "map", carried.grid, source=f"{carried.grid[0]}×{carried.grid[1]} as {source.name}"
            )


def _known_grids(outputs: Iterable[Output], batch: int, input_size: Grid, decl: Declared) -> dict[Grid, str]:
    """The grids the model declares or its map-by-construction layers show, each with where it was seen."""
    grids: dict[Grid, str] = {}
    if decl.patch_grid:
        grids[decl.patch_grid] = decl.source or "the declared patch grid"
    if decl.raster_grid:
        grids[decl.raster_grid] = "Hiera's last stage (feature_info)"
    stages = dict(decl.stage_modules)
    for out in outputs:
        if len(out.shape) == 3 and out.shape[0] == batch and stages.get(out.name):  # a token stage: its reduction
            r = stages[out.name]
            for grid in {(-(-input_size[0] // r), -(-input_size[1] // r)), (input_size[0] // r, input_size[1] // r)}:
                if out.shape[1] == grid[0] * grid[1]:
                    grids.setdefault(grid, "timm feature_info stage (tokens)")
        if len(out.shape) != 4 or out.shape[0] != batch:
            continue
        a, b, c = out.shape[1:]
        if _is_map_module(out.module):
            grids.setdefault((b, c), f"{type(out.module).__name__} output")
        elif _permute_dims(out.module) == (0, 2, 3, 1):
            grids.setdefault((a, b), "Permute to channels-last")
        elif _permute_dims(out.module) == (0, 3, 1, 2):
            grids.setdefault((b, c), "Permute to channels-first")
        elif out.name in stages:
            grids.setdefault((a, b) if decl.channels_last else (b, c), "timm feature_info stage")
    return grids


_MAP_NAMES = frozenset(cls.__name__ for cls in MAP_MODULES)


def _is_map_module(module: nn.Module) -> bool:
    """A module whose output is a channels-first map by construction: one of MAP_MODULES, or one compiled from
    one (a scripted `nn.Conv2d` keeps its class's name as `original_name`)."""
    return isinstance(module, MAP_MODULES) or (
        isinstance(module, torch.jit.ScriptModule) and getattr(module, "original_name", "") in _MAP_NAMES
    )


def _kind(module: nn.Module) -> str:
    return str(getattr(module, "original_name", "")) or type(module).__name__


def _permute_dims(module: nn.Module) -> tuple[int, ...] | None:
    dims = getattr(module, "dims", None) if type(module).__name__ == "Permute" else None
    return tuple(dims) if dims is not None else None


def _layout(
    out: Output, batch: int, grids: dict[Grid, str], decl: Declared, input_size: Grid, tokens: set[int]
) -> Layout:
    shape = out.shape
    if len(shape) < 2:
        return not_a_map("not a tensor")
    if shape[0] != batch:
        return not_a_map(
            f"its first dimension is {shape[0]}, not the {batch} picture(s): the model folds patches or windows "
            "into the batch here, so there is no one picture per image"
        )
    if len(shape) == 2:
        return not_a_map(f"a vector of {shape[1]} numbers per picture, with no height or width")
    if len(shape) != 4:
        return not_a_map(f"a {len(shape) - 1}-dimensional output, not channels × height × width")
    a, b, c = shape[1:]
    if b * c <= 1:
        return not_a_map(f"one number per channel ({a}×{b}×{c}), with no height or width to draw")
    if (
        isinstance(out.module, ADAPTIVE_POOLS)
        and len(out.input_shape) == 4
        and b * c > out.input_shape[2] * out.input_shape[3]
    ):
        h, w = out.input_shape[2:]
        return not_a_map(f"it spreads a {h}×{w} map over {b}×{c} cells: the larger grid holds no more of the picture")
    if _is_map_module(out.module) or _permute_dims(out.module) == (0, 3, 1, 2):
        return Layout("map", (b, c), source=f"{_kind(out.module)}: a map by construction")
    if _permute_dims(out.module) == (0, 2, 3, 1):
        return Layout("channels_last", (a, b), source="Permute to channels-last")
    if tokens & {b, c}:
        return not_a_map(f"{a} × {b} × {c} is split per attention head (heads × tokens × features), not a picture")
    if b == c and out.value is not None and _rows_are_probabilities(out.value):
        return not_a_map(f"attention weights ({a} heads × {b} × {c}, each row sums to 1), not a picture")
    as_map, as_last = (b, c) in grids, (a, b) in grids
    if as_map and as_last:
        if a == b == c or not (out.channels_last_region or decl.channels_last):
            return not_a_map(f"{a} × {b} × {c} reads as a grid both ways (channels first or last): ambiguous")
        as_map = False
    if as_map:
        return Layout("map", (b, c), source=f"grid {b}×{c} as in the {grids[(b, c)]}")
    if as_last:
        return Layout("channels_last", (a, b), source=f"grid {a}×{b} as in the {grids[(a, b)]}")
    if decl.patch_grid or decl.source:
        return not_a_map(f"neither {b}×{c} nor {a}×{b} is a grid of this model's picture")
    fits_map, fits_last = _fits((b, c), input_size), _fits((a, b), input_size)
    if fits_map and not fits_last:
        return Layout("map", (b, c), source=f"inferred: {b}×{c} fits the {input_size[0]}×{input_size[1]} input")
    if fits_last and not fits_map:
        return Layout(
            "channels_last", (a, b), source=f"inferred: {a}×{b} fits the {input_size[0]}×{input_size[1]} input"
        )
    if fits_map:
        return not_a_map(f"{a} × {b} × {c} reads as a grid both ways (channels first or last): ambiguous")
    return not_a_map(f"neither {b}×{c} nor {a}×{b} is a grid of the {input_size[0]}×{input_size[1]} picture")


def _tokens(out: Output, grids: dict[Grid, str], decl: Declared, input_size: Grid) -> Layout:
    count, channels = out.shape[1], out.shape[2]
    if decl.unrolled and (decl.raster_grid is None or count != decl.raster_grid[0] * decl.raster_grid[1]):
        return not_a_map("Hiera keeps its tokens in its own unrolled order, not row by row, so they form no grid")
    candidates = grids if (grids or decl.source) else {}
    prefixes = [decl.prefix, 0] if decl.prefix is not None else list(range(MAX_INFERRED_PREFIX + 1))
    found = {
        (prefix, grid)
        for prefix in dict.fromkeys(prefixes)
        for grid in candidates
        if count - prefix == grid[0] * grid[1] and grid[0] * grid[1] > 1
    }
    if not candidates:  # nothing declared or shown: square grids that fit the input, class token or none
        found = {
            (prefix, (side, side))
            for prefix in (0, 1)
            if (side := math.isqrt(count - prefix)) ** 2 == count - prefix and _fits((side, side), input_size)
        }
    if len(found) == 1:
        ((prefix, grid),) = found
        where = grids.get(grid, "inferred from the input size")
        return Layout(
            "tokens",
            grid,
            prefix,
            decl.prefix_words if prefix and prefix == decl.prefix else "",
            source=f"{prefix} prefix token(s) + {grid[0]}×{grid[1]} patches ({where})",
        )
    if found:
        return not_a_map(f"{count} tokens split into a grid more than one way: ambiguous")
    return not_a_map(f"{count} × {channels}: no grid of this model's picture has {count} tokens")


def _fits(grid: Grid, input_size: Grid) -> bool:
    """Whether (h, w) is the input seen at one integer stride (convolutions without padding shave a few pixels)."""
    (h, w), (height, width) = grid, input_size
    if h * w <= 1 or h > height or w > width:
        return False
    return any(
        height // s - 3 <= h <= -(-height // s) + 1 and width // s - 3 <= w <= -(-width // s) + 1
        for s in range(1, max(height, width) + 1)
    )


def _rows_are_probabilities(value: torch.Tensor) -> bool:
    """Each row of the last dimension non-negative and summing to 1: softmax attention weights."""
    rows = value.detach()[:1].float()
    return bool((rows >= 0).all()) and bool(torch.allclose(rows.sum(-1), torch.ones(()), atol=1e-3))
