"""What every method shares: its result type, the inputs the explainer hands it, and the registry.

Adding a method is one small class: declare `needs` (what the explainer must capture) and write `compute`.
The explainer merges the needs of all requested methods, so a panel set costs one forward pass and at most
one plain and one guided backward pass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..targets import Target

Need = Literal["activation", "layer_gradient", "input_gradient", "guided_input_gradient", "cam", "module"]


@dataclass(frozen=True)
class MethodResult:
    """`map`: float32 in [0, 1] at the input resolution, for display ((H, W), or (K, H, W) for channel sets).
    `raw`: the method's own un-normalised output at its native resolution.
    `rgb`: an optional (H, W, 3) float32 image in [0, 1] for methods whose natural picture has colour."""

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
class MethodInputs:
    """What the explainer captured for one method. Tensors are detached, without the batch dimension."""

    layer: str | None
    module: nn.Module | None
    input_size: tuple[int, int]
    target: Target
    activation: torch.Tensor | None = None  # (C, h, w)
    layer_gradient: torch.Tensor | None = None  # (C, h, w): d score / d activation
    input_gradient: torch.Tensor | None = None  # (3, H, W): d score / d input
    guided_input_gradient: torch.Tensor | None = None  # (3, H, W) with guided ReLUs
    cam_weights: torch.Tensor | None = None  # (C,): the Linear's weights for the target
    cam_bias: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


class Method(ABC):
    """One visualisation. Subclasses set the class attributes and implement `compute`."""

    name: ClassVar[str]
    title: ClassVar[str]
    summary: ClassVar[str]  # one plain sentence for a non-coder
    paper: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()
    uses_layer: ClassVar[bool] = True  # False: the method picks its own layer (CAM) or needs none

    @abstractmethod
    def compute(self, inputs: MethodInputs) -> MethodResult: ...


METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def normalize(values: torch.Tensor) -> torch.Tensor:
    """Min-max to [0, 1]; a flat map becomes zeros (never NaN)."""
    low, high = values.min(), values.max()
    span = high - low
    if not torch.isfinite(span) or span <= 0:
        return torch.zeros_like(values)
    return (values - low) / span


def upsample(values: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) or (K, h, w) -> same at `size`, bilinear."""
    batched = values[None, None] if values.dim() == 2 else values[None]
    out = F.interpolate(batched.float(), size=size, mode="bilinear", align_corners=False)
    return out[0, 0] if values.dim() == 2 else out[0]


def to_numpy(values: torch.Tensor) -> np.ndarray:
    return values.detach().float().cpu().numpy().astype(np.float32, copy=False)


def gradient_rgb(gradient: torch.Tensor) -> np.ndarray:
    """(3, H, W) gradient -> (H, W, 3) picture in [0, 1]: centred at grey, ±3 std spans the range."""
    centred = gradient - gradient.mean()
    std = centred.std()
    scaled = centred / (std * 6) + 0.5 if std > 0 else torch.full_like(centred, 0.5)
    return to_numpy(scaled.clamp(0, 1).permute(1, 2, 0))
