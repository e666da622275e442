"""Plain words for what the engine calls by its code names: a layer's module class, a class without a name."""

from __future__ import annotations

import re

from cnnvis_engine import LayerInfo

# Module class -> what it does, for a person who does not read PyTorch. Unlisted classes are split into words.
LAYER_KINDS = {
    "Conv2d": "convolution",
    "Conv2dSame": "convolution",
    "ConvTranspose2d": "up-convolution",
    "BatchNorm2d": "batch norm",
    "BatchNormAct2d": "batch norm + activation",
    "GroupNorm": "group norm",
    "LayerNorm2d": "layer norm",
    "ReLU": "activation (ReLU)",
    "ReLU6": "activation (ReLU6)",
    "SiLU": "activation (SiLU)",
    "GELU": "activation (GELU)",
    "Hardswish": "activation (hard swish)",
    "Hardsigmoid": "gate (hard sigmoid)",
    "Sigmoid": "gate (sigmoid)",
    "MaxPool2d": "max pooling",
    "AvgPool2d": "average pooling",
    "AdaptiveAvgPool2d": "average pooling",
    "Sequential": "group of layers",
    "Bottleneck": "residual block",
    "BasicBlock": "residual block",
    "InvertedResidual": "inverted residual block",
    "DepthwiseSeparableConv": "depthwise separable block",
    "Conv2dNormActivation": "convolution + norm + activation",
    "ConvBnAct": "convolution + norm + activation",
    "SqueezeExcitation": "channel attention",
    "SqueezeExcite": "channel attention",
    "SEModule": "channel attention",
    "Identity": "pass-through (does nothing)",
    "Dropout": "dropout (off while explaining)",
    "Linear": "fully connected",
}


def layer_kind(kind: str) -> str:
    """"batch norm + activation" for BatchNormAct2d; unknown classes as words ("MyBlock" -> "my block")."""
    if kind in LAYER_KINDS:
        return LAYER_KINDS[kind]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", kind).lower() or "layer"


def layer_label(layer: LayerInfo) -> str:
    """What the layer list shows: name, what the layer does, output size (and reuse)."""
    shape = "×".join(str(s) for s in layer.shape) or "—"
    reuse = f" · runs {layer.calls}×" if layer.calls > 1 else ""
    return f"{layer.name} · {layer_kind(layer.kind)} · {shape}{reuse}"


def layer_detail(layer: LayerInfo) -> str:
    """The technical detail for a tooltip: the module class and the output's shape in PyTorch's terms."""
    channels = " × ".join(str(s) for s in layer.shape)
    return f"`{layer.name}` is a `{layer.kind}` module; its output is channels × height × width = {channels}."


def class_name(names: tuple[str, ...], index: int) -> str:
    """A class as a person reads it: "tabby (281)"; a class without a name once: "class 1", not "class 1 (1)"."""
    name = names[index] if 0 <= index < len(names) else ""
    if not name or re.fullmatch(rf"(class\s*)?{index}", name.strip(), flags=re.IGNORECASE):
        return f"class {index}"
    return f"{name} ({index})"
