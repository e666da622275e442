"""Classic ImageNet classifiers from torchvision: pretrained weights (downloaded once, then cached) or random."""

from __future__ import annotations

from functools import partial

import torchvision

from .bundle import ModelBundle
from .imagenet import imagenet_bundle
from .registry import register_model
from .weights import RANDOM_DETAIL, load_checkpoint, seeded_init

_BASIC = "ResNet (basic blocks)"
_BOTTLENECK = "ResNet (bottleneck blocks)"

# (registry name = torchvision name, family, description for a non-coder)
_ZOO: tuple[tuple[str, str, str], ...] = (
    ("alexnet", "AlexNet", "The 2012 network that started the deep-learning boom: five convolutions, big filters."),
    ("vgg16", "VGG", "Sixteen layers of small 3×3 filters stacked in a plain column; simple and heavy."),
    ("vgg16_bn", "VGG", "VGG16 with batch normalisation after every convolution, which makes it train steadier."),
    ("resnet18", _BASIC, "A small residual network: shortcuts let each block add a correction to what it got."),
    ("resnet34", _BASIC, "A deeper residual network built from the same two-convolution blocks as ResNet-18."),
    ("resnet50", _BOTTLENECK, "The standard residual network: blocks squeeze channels, filter, then widen again."),
    ("resnet101", _BOTTLENECK, "ResNet-50's design with twice as many blocks in its third stage."),
    ("resnet152", _BOTTLENECK, "The deepest standard residual network, 152 layers of bottleneck blocks."),
    ("regnet_y_400mf", "RegNet (SE)", "A small network whose widths follow a simple rule, with channel attention."),
    ("mobilenet_v3_large", "MobileNetV3 (SE)", "A fast network designed for phones, with channel attention blocks."),
    ("efficientnet_b0", "EfficientNet (SE)", "A compact network grown evenly in depth, width and image size."),
)


def build_torchvision(name: str, description: str, weights: str) -> ModelBundle:
    """torchvision model `name` with "pretrained" (its DEFAULT weights) or "random" (seeded) weights."""
    if weights not in ("random", "pretrained"):
        raise ValueError(f"{name}: unknown weights choice {weights!r}")
    state_dict = None
    if weights == "pretrained":  # first: offline it fails in milliseconds, before seconds of building (vgg16: 5 s)
        enum = torchvision.models.get_model_weights(name).DEFAULT
        state_dict = load_checkpoint(
            name, enum.url, lambda: enum.get_state_dict(progress=False, check_hash=True, weights_only=True)
        )
    with seeded_init():  # repeatable random weights; the caller's generator is left alone either way
        module = torchvision.models.get_model(name, weights=None)
    if state_dict is None:
        detail = RANDOM_DETAIL
    else:
        module.load_state_dict(state_dict)
        detail = f"torchvision {enum} ({enum.url})"
    return imagenet_bundle(name, module, "random" if weights == "random" else "pretrained", detail, description)


def _checkpoint_url(name: str) -> str:
    url: str = torchvision.models.get_model_weights(name).DEFAULT.url
    return url


for _name, _family, _description in _ZOO:
    register_model(_name, family=_family, description=_description, checkpoint_url=partial(_checkpoint_url, _name))(
        partial(build_torchvision, _name, _description)
    )
