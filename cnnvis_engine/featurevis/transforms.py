"""Transformation robustness (Olah et al. 2017, https://distill.pub/2017/feature-visualization/#regularizer-transform):
each optimisation step shows the model a randomly jittered, scaled and rotated view of the image, so the
result must activate the unit from many nearby viewpoints and high-frequency noise does not pay.

Lucid's standard transforms are pad(12, grey) → jitter(8) → scale(0.9…1.1) → rotate(−10…10°) → jitter(4).
Here the jitters, scale and rotation are composed into one affine map and applied with one `grid_sample`
(bilinear), which costs one resampling instead of four; what falls outside the image is mid-grey (0.5),
as Lucid's padding. The output keeps the input's size, so the model sees the size the caller asked for.
Every random choice comes from the caller's `torch.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TransformSettings:
    """The ranges each step draws from; `jitter` in pixels (each axis), `degrees` and `scales` as in Lucid."""

    jitter: int = 12  # Lucid's 8 px then 4 px
    scales: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))  # 0.9 … 1.1
    degrees: tuple[float, ...] = tuple(range(-10, 11)) + (0,) * 5  # −10 … 10°, no rotation more often
    fill: float = 0.5

    @classmethod
    def none(cls) -> TransformSettings:
        return cls(jitter=0, scales=(1.0,), degrees=(0.0,))


def _choice(values: tuple[float, ...], generator: torch.Generator) -> float:
    return float(values[int(torch.randint(len(values), (1,), generator=generator))])


def random_affine(size: tuple[int, int], settings: TransformSettings, generator: torch.Generator) -> torch.Tensor:
    """One random view as an `affine_grid` matrix (1, 2, 3): output coordinates -> input coordinates,
    in the normalised [-1, 1] frame. Draws shift (x, y), scale, angle — always in that order."""
    height, width = size
    dx, dy = (int(v) for v in torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=generator))
    scale = _choice(settings.scales, generator)
    angle = math.radians(_choice(settings.degrees, generator))
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    # Rotation in pixel units needs the aspect ratio in the normalised frame.
    aspect = width / height
    theta = torch.tensor(
        [
            [cos, -sin / aspect, -2.0 * dx / width],
            [sin * aspect, cos, -2.0 * dy / height],
        ],
        dtype=torch.float32,
    )
    return theta[None]


def apply_affine(images: torch.Tensor, theta: torch.Tensor, fill: float = 0.5) -> torch.Tensor:
    """Resample (N, 3, H, W) through `theta` (1, 2, 3), `fill` outside the picture; same size out."""
    theta = theta.to(images).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill


def random_view(images: torch.Tensor, settings: TransformSettings, generator: torch.Generator) -> torch.Tensor:
    """One random jittered, scaled and rotated view of the whole batch: (N, 3, H, W) -> (N, 3, H, W)."""
    theta = random_affine((images.shape[2], images.shape[3]), settings, generator)
    return apply_affine(images, theta, settings.fill)
