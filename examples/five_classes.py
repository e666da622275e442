"""An example of your own model, for the README's tour:

    cnnvis serve --model examples/five_classes.py:build --labels examples/five_classes.txt \
        --mean 127 127 127 --std 128 128 128 --scale 1

`FiveClasses` is not a registered architecture: EfficientNet-Lite0's convolutional features (the built-in ImageNet
weights, so it works offline) under a new five-class head, which keeps the ImageNet classifier's rows for tabby,
tiger cat, Egyptian cat, espresso and cup. Its preprocessing is the checkpoint's own: RGB in [0, 255] mapped to
(rgb - 127) / 128, hence `--scale 1` and that mean and std.
"""

import torch
from torch import nn

from cnnvis_engine.models import load_model

IMAGENET_IDS = (281, 282, 285, 967, 968)  # tabby, tiger cat, Egyptian cat, espresso, cup


class FiveClasses(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        lite0 = load_model("efficientnet_lite0").module
        self.features = nn.Sequential(lite0.conv_stem, lite0.bn1, lite0.blocks, lite0.conv_head, lite0.bn2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(lite0.classifier.in_features, len(IMAGENET_IDS))
        with torch.no_grad():
            self.head.weight.copy_(lite0.classifier.weight[list(IMAGENET_IDS)])
            self.head.bias.copy_(lite0.classifier.bias[list(IMAGENET_IDS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


def build() -> FiveClasses:
    return FiveClasses()
