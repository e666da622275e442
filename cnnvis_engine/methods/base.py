"""What every method shares: its result types, the inputs the explainer hands it, and the registry.

Adding a method is one small class: declare `needs` (what the explainer must capture) and write `compute`
over a batch. The explainer merges the needs of all requested methods, so a panel set costs one forward
pass and at most one plain and one guided backward pass, for one image or a whole batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..targets import Target

Need = Literal["activation", "layer_gradient", "input_gradient", "guided_input_gradient", "cam", "module", "forward"]


@dataclass(frozen=True)
class MethodResult:
    """One image's result. `map`: float32 in [0, 1] at the input resolution, for display ((H, W), or
    (K, H, W) for channel sets). `raw`: the method's own un-normalised output at its native resolution.
    `rgb`: an optional (H, W, 3) float32 picture in [0, 1] for methods whose natural picture has colour."""

    method: str
    layer: str | None = None
    map: np.ndarray | None = None
    raw: np.ndarray | None = None
    rgb: np.ndarray | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""  # why the method does not apply; empty when it does

    @property
    def applicable(self) -> bool:
        return not self.reason

    @classmethod
    def not_applicable(cls, method: str, reason: str, layer: str | None = None) -> MethodResult:
        return cls(method=method, layer=layer, reason=reason)


@dataclass
class MethodOutput:
    """A method's output for a batch: tensors with a leading batch dimension N (or 1 when `shared`)."""

    map: torch.Tensor
    raw: torch.Tensor
    rgb: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # the same for every sample
    sample_meta: dict[str, Sequence[Any]] = field(default_factory=dict)  # one entry per sample
    shared: bool = False  # one result for all samples (kernels)

    def numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Every array moved to the CPU once, for the whole batch."""
        return to_numpy(self.map), to_numpy(self.raw), None if self.rgb is None else to_numpy(self.rgb)

    def results(self, method: str, layer: str | None, count: int) -> list[MethodResult]:
        maps, raws, rgbs = self.numpy()
        out = []
        for i in range(count):
            j = 0 if self.shared else i
            meta = {**self.meta, **{key: values[j] for key, values in self.sample_meta.items()}}
            out.append(MethodResult(method, layer, maps[j], raws[j], None if rgbs is None else rgbs[j], meta))
        return out


@dataclass
class MethodInputs:
    """What the explainer captured for a batch of N images. Tensors are detached and keep the batch dim."""

    layer: str | None
    module: nn.Module | None
    input_size: tuple[int, int]
    targets: tuple[Target, ...]
    x: torch.Tensor  # (N, 3, H, W): the model's input
    output: torch.Tensor | None = None  # (N, ...): the model's output on x, from the recorded pass
    activation: torch.Tensor | None = None  # (N, C, h, w)
    layer_gradient: torch.Tensor | None = None  # (N, C, h, w): d score / d activation
    input_gradient: torch.Tensor | None = None  # (N, 3, H, W): d score / d input
    guided_input_gradient: torch.Tensor | None = None  # (N, 3, H, W) with guided ReLUs
    cam_weights: torch.Tensor | None = None  # (N, C): the Linear's weights for each sample's target
    cam_bias: torch.Tensor | None = None  # (N,)
    # For extra passes: forward(x (M, 3, H, W), layer=None) -> (output, the layer's output or None)
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """(M, ...) outputs of M = k·N inputs laid out sample-major -> (M,) target scores."""
        per_sample = output.shape[0] // len(self.targets)
        return torch.cat([
            target.score(output[i * per_sample:(i + 1) * per_sample]) for i, target in enumerate(self.targets)
        ])


class Method(ABC):
    """One visualisation. Subclasses set the class attributes and implement `compute`."""

    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]  # one plain sentence for a non-coder
    paper: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()
    uses_layer: ClassVar[bool] = True  # False: the method picks its own layer (CAM) or needs none

    @abstractmethod
    def compute(self, inputs: MethodInputs) -> MethodOutput: ...


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


FLAT_SPAN = 1e-5  # a map whose values differ by less than this share of their magnitude is flat


def normalize(values: torch.Tensor, dims: int = 2) -> torch.Tensor:
    """Min-max to [0, 1] over the last `dims` dimensions; a flat map becomes zeros (never NaN). Flat includes
    a constant map plus rounding noise (bilinear upsampling of a constant leaves differences of a few ulps),
    which would otherwise be stretched into full-contrast stripes."""
    flat = values.flatten(-dims)
    shape = (*flat.shape[:-1], *([1] * dims))
    low, high = flat.amin(dim=-1).view(shape), flat.amax(dim=-1).view(shape)
    span = high - low
    varies = span > FLAT_SPAN * torch.maximum(low.abs(), high.abs())
    safe = torch.where(varies, span, torch.ones_like(span))
    return torch.where(varies, (values - low) / safe, torch.zeros_like(values)).nan_to_num(0.0)


def upsample(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) or (N, K, h, w) -> the same at `size`, bilinear."""
    batched = values[:, None] if values.dim() == 3 else values
    out = F.interpolate(batched.float(), size=size, mode="bilinear", align_corners=False)
    return out[:, 0] if values.dim() == 3 else out


def to_numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy().astype(np.float32, copy=False)


def gradient_rgb(gradient: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) gradients -> (N, H, W, 3) pictures in [0, 1]: centred at grey, ±3 std span the range; a
    grayscale model's one channel (C = 1) is drawn gray."""
    centred = gradient - gradient.mean(dim=(1, 2, 3), keepdim=True)
    std = centred.flatten(1).std(dim=1).view(-1, 1, 1, 1)
    scaled = torch.where(std > 0, centred / (std * 6).clamp_min(1e-30) + 0.5, torch.full_like(centred, 0.5))
    return scaled.clamp(0, 1).expand(-1, 3, -1, -1).permute(0, 2, 3, 1)
