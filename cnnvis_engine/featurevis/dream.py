"""DeepDream (Mordvintsev, Olah & Tyka, "Inceptionism", 2015; the article's own source shipped it): amplify
what a layer already sees in a photo by gradient ascent on ||A_layer(x)||², with each step normalised by the
gradient's mean magnitude, x ← clip(x + step_size · g / mean|g|, 0, 1), a random circular shift (jitter) per
step, and an octave pyramid: dream on a small copy first, then carry the added detail up to the next size.

Same safety rules as `visualize`: the lock is held per forward pass, gradients come from
`torch.autograd.grad` with respect to the image only, hooks live only inside each pass, and a fixed seed
gives the same picture.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import MethodError
from ..models.bundle import ModelBundle
from . import objectives as obj
from .model_pass import check_layers, forward, from_uint8, to_model_input, to_uint8
from .results import Cancelled

MIN_OCTAVE_SIDE = 16


def deepdream(
    bundle: ModelBundle,
    image: np.ndarray | Image.Image,
    layer: str,
    *,
    octaves: int = 3,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 0.02,
    jitter: int = 16,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """Dream `image` ((H, W, 3) uint8 or a PIL image) at `layer`; returns (H, W, 3) uint8 of the same size.

    `steps` per octave; `progress(step, octaves * steps)` after each step; `cancel()` before each step —
    True raises `Cancelled` whose `partial` is the picture so far at full size.
    """
    rgb = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)
    base = from_uint8(rgb, bundle.device)
    height, width = base.shape[2:]
    if octaves < 1 or octave_scale < 1 or steps < 0 or step_size <= 0 or jitter < 0:
        raise MethodError("DeepDream needs at least one octave, an octave scale ≥ 1, steps ≥ 0 and a step size > 0.")
    sizes = [(round(height / octave_scale**k), round(width / octave_scale**k)) for k in reversed(range(octaves))]
    if min(sizes[0]) < MIN_OCTAVE_SIDE:
        raise MethodError(
            f"With {octaves} octaves at scale {octave_scale:g} the smallest picture is "
            f"{sizes[0][1]}×{sizes[0][0]} pixels; "
            f"use fewer octaves or a smaller scale so it stays at least {MIN_OCTAVE_SIDE} pixels a side."
        )
    objective = obj.squared_norm(layer)
    check_layers(bundle, objective.layers)
    generator = torch.Generator().manual_seed(seed)
    total, done = octaves * steps, 0
    detail = torch.zeros(1, 3, *sizes[0], device=base.device)
    x = base
    for size in sizes:
        octave_base = _resize(base, size)
        detail = _resize(detail, size)
        x = (octave_base + detail).clamp(0, 1)
        for _ in range(steps):
            if cancel is not None and cancel():
                partial = to_uint8(_resize(x, (height, width)))[0]
                raise Cancelled(f"DeepDream was cancelled after {done} of {total} steps.", partial)
            x = _step(bundle, x, objective, step_size, jitter, generator)
            done += 1
            if progress is not None:
                progress(done, total)
        detail = x - octave_base
    return np.asarray(to_uint8(x)[0])


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[2]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def _step(
    bundle: ModelBundle,
    x: torch.Tensor,
    objective: obj.Objective,
    step_size: float,
    jitter: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """One normalised gradient-ascent step on a randomly shifted copy, shifted back: (1, 3, H, W) in [0, 1]."""
    dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
    shifted = torch.roll(x.detach(), shifts=(dy, dx), dims=(2, 3)).requires_grad_(True)
    with torch.enable_grad():
        output, activations = forward(bundle, to_model_input(shifted, bundle.normalization), objective.layers)
        (grad,) = torch.autograd.grad(objective(activations, output).sum(), shifted)
    grad = grad / (grad.abs().mean() + 1e-8)
    stepped = (shifted.detach() + step_size * grad).clamp(0, 1)
    return torch.roll(stepped, shifts=(-dy, -dx), dims=(2, 3))
