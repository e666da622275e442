"""The 1000 ImageNet class names, read offline from torchvision's weight metadata."""

from __future__ import annotations

from functools import cache

import torchvision


@cache
def imagenet_classes() -> tuple[str, ...]:
    """("tench", "goldfish", ..., "toilet tissue"), index = ImageNet-1k class id."""
    return tuple(torchvision.models.get_model_weights("resnet50").DEFAULT.meta["categories"])
