"""The demo architectures: small enough to train in a minute on two CPU cores, shaped like the article's.

- `TankNet`: conv blocks, a squeeze-and-excitation block, global average pooling and one Linear — so CAM
  applies (Zhou et al. 2016) as well as Grad-CAM.
- `SaltUNet`: a three-level U-Net (Ronneberger et al. 2015, https://arxiv.org/abs/1505.04597) giving two
  logits per pixel ("sediment", "salt") at the input resolution.
- `RobotNet`: conv blocks, then one Linear from the flattened map to many independent logits (one sigmoid
  each), so the net keeps where in the picture things are.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_block(c_in: int, c_out: int, convs: int = 1) -> nn.Sequential:
    """`convs` × (3×3 conv, BatchNorm, ReLU), resolution kept: (N, c_in, H, W) -> (N, c_out, H, W)."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Hu et al. 2018 (https://arxiv.org/abs/1709.01507): x · σ(W2 ReLU(W1 GAP(x))) per channel, (N, C, H, W)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, channels // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(channels // reduction, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x * self.gate(self.expand(self.relu(self.reduce(self.squeeze(x)))))
        return out


class TankNet(nn.Module):
    """(N, 3, 64, 64) -> (N, 2) logits. block1-3 halve the size each time (8×8 at `se`), then pool and `fc`."""

    def __init__(self, classes: int = 2, width: int = 16) -> None:
        super().__init__()
        self.block1 = conv_block(3, width)
        self.block2 = nn.Sequential(nn.MaxPool2d(2), conv_block(width, 2 * width))
        self.block3 = nn.Sequential(nn.MaxPool2d(2), conv_block(2 * width, 4 * width))
        self.block4 = nn.Sequential(nn.MaxPool2d(2), conv_block(4 * width, 4 * width))
        self.se = SqueezeExcitation(4 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.se(self.block4(self.block3(self.block2(self.block1(x)))))
        out: torch.Tensor = self.fc(torch.flatten(self.pool(x), 1))
        return out


class SaltUNet(nn.Module):
    """(N, 3, H, W) -> (N, classes, H, W) logits; H and W divisible by 4. Skip connections concatenate."""

    def __init__(self, classes: int = 2, width: int = 16) -> None:
        super().__init__()
        self.down1 = conv_block(3, width, convs=2)
        self.down2 = nn.Sequential(nn.MaxPool2d(2), conv_block(width, 2 * width, convs=2))
        self.bottom = nn.Sequential(nn.MaxPool2d(2), conv_block(2 * width, 4 * width, convs=2))
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.decode2 = conv_block(4 * width, 2 * width, convs=2)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.decode1 = conv_block(2 * width, width, convs=2)
        self.head = nn.Conv2d(width, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.down1(x)
        skip2 = self.down2(skip1)
        y = self.bottom(skip2)
        y = self.decode2(torch.cat([self.up2(y), skip2], dim=1))
        y = self.decode1(torch.cat([self.up1(y), skip1], dim=1))
        out: torch.Tensor = self.head(y)
        return out


class RobotNet(nn.Module):
    """(N, 3, 96, 96) -> (N, outputs) logits; `features` ends at 12×12, `head` pools to 6×6 and flattens."""

    def __init__(self, outputs: int = 25, width: int = 16, size: int = 96) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_block(3, width),
            nn.Sequential(nn.MaxPool2d(2), conv_block(width, 2 * width)),
            nn.Sequential(nn.MaxPool2d(2), conv_block(2 * width, 3 * width)),
            nn.Sequential(nn.MaxPool2d(2), conv_block(3 * width, 4 * width)),
        )
        self.head = nn.Sequential(
            nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * width * (size // 16) ** 2, outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.features(x))
        return out
