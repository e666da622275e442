"""The 1000 ImageNet class names, read offline from torchvision's weight metadata."""

from __future__ import annotations

from functools import cache

import torchvision
from torch import nn

from .bundle import ModelBundle, WeightsSource


@cache
def imagenet_classes() -> tuple[str, ...]:
    """("tench", "goldfish", ..., "toilet tissue"), index = ImageNet-1k class id."""
    return tuple(torchvision.models.get_model_weights("resnet50").DEFAULT.meta["categories"])


def imagenet_bundle(name: str, module: nn.Module, weights: WeightsSource, detail: str, description: str) -> ModelBundle:
    """An ImageNet classifier from the torchvision or timm zoo, in eval mode, with ImageNet names and preprocessing."""
    module.eval()
    return ModelBundle(
        name=name,
        module=module,
        class_names=imagenet_classes(),
        weights_source=weights,
        weights_detail=detail,
        description=description,
    )
