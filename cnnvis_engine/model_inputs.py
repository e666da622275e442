"""What the explainer feeds the model: pictures or a ready tensor -> the model input (N, C, H, W) on the model's
device, the pictures as the model sees them ((H, W, 3) uint8 each) and each picture's decoding notes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .errors import ImageError
from .images import DecodedImage, decode_image
from .models.bundle import ModelBundle

ImageSource = Any  # PIL image, bytes, path or DecodedImage
ModelInput = tuple[torch.Tensor, list[np.ndarray], list[tuple[str, ...]]]


def decode(image: ImageSource) -> DecodedImage:
    return image if isinstance(image, DecodedImage) else decode_image(image)


def from_images(bundle: ModelBundle, decoded: list[DecodedImage]) -> ModelInput:
    """Each picture resized to the model's input size and normalised, as `ModelBundle.prepare` does."""
    displays = [bundle.resize(d.image) for d in decoded]
    x = bundle.normalization.apply(np.stack(displays), bundle.device)
    return x, displays, [d.notes for d in decoded]


def from_tensor(bundle: ModelBundle, x: torch.Tensor) -> ModelInput:
    """A ready batch (checked by `check_tensor`), copied to the model's device; its pictures by inverting the
    normalisation."""
    check_tensor(bundle, x)
    x = x.detach().to(bundle.device, torch.float32)
    return x.clone(), list(bundle.normalization.invert(x)), [()] * len(x)


def check_tensor(bundle: ModelBundle, x: torch.Tensor) -> None:
    """A ready batch must have the model's input shape and hold only finite values: a NaN would be traced (CAM
    then judged from NaN outputs) before anything could notice."""
    expected = (bundle.channels, *bundle.input_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected or not x.is_floating_point():
        raise ImageError(
            f"A ready batch must be a float tensor of shape (N, {', '.join(map(str, expected))}); got {tuple(x.shape)}."
        )
    finite = torch.isfinite(x.detach()).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        which = f"image {bad[0]}" if len(bad) == 1 else f"{len(bad)} images (the first is image {bad[0]})"
        raise ImageError(
            f"The batch holds NaN or infinite values in {which}, so it cannot be explained; nothing was run."
        )
