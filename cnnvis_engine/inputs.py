"""What a call hands the explainer, checked and made ready: pictures or a ready tensor turned into the model input
(N, C, H, W) on the model's device with the pictures as the model sees them ((H, W, 3) uint8 each) and their
decoding notes; and the method names and `top_k`, each refusal a sentence that quotes the wrong value briefly."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .errors import ImageError, MethodError, TargetError
from .images import DecodedImage, decode_image
from .methods import METHODS
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


MAX_METHOD_NAMES = 1000  # names read from one `methods` argument (an endless generator stops here)


def method_names(methods: Iterable[str]) -> list[str]:
    """The method names, each once, in order. A string is refused: it would be read letter by letter."""
    if isinstance(methods, (str, bytes)):
        raise MethodError(
            f"The methods must be a list of names, such as [{shown(methods)}], not one piece of text "
            "(it would be read letter by letter)."
        )
    methods = list(itertools.islice(methods, MAX_METHOD_NAMES + 1))
    if len(methods) > MAX_METHOD_NAMES:
        raise MethodError(f"More than {MAX_METHOD_NAMES} method names were given; there are {len(METHODS)} methods.")
    wrong = [m for m in methods if not isinstance(m, str)]
    if wrong:
        raise MethodError(f"Each method must be named by a string such as 'gradcam'; got {shown(wrong[0])}.")
    names = list(dict.fromkeys(methods))
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise MethodError(f"Unknown method {shown(unknown[0])}. Available methods: {', '.join(METHODS)}.")
    return names


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut at `limit` characters: user input quoted in a message stays short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def check_top_k(top_k: Any) -> None:
    """`top_k` must be a whole number ≥ 1; more than the model's outputs gives all of them."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise TargetError(
            f"The number of predictions to list (top_k) must be a whole number of at least 1; got {shown(top_k)}."
        )
