"""A small picture set with a planted shortcut, for testing audits (SpRAy) and benchmarking them.

Two classes of 32×32 pictures on noisy grey ground: "disc" (a filled circle) and "square", anywhere in the
picture, in a random muted colour. A share of the "square" pictures also carries a mark: a small bright
magenta patch in the top-left corner, like a photographer's watermark (Lapuschkin et al. 2019 found a horse
classifier that had learned a copyright tag). A model trained where the mark comes only with squares learns
it as a shortcut. Every picture is drawn from its own seed (seed, i), so a set is the same whatever its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from ..models.bundle import ModelBundle
from .catalog import DEMO_NORMALIZATION
from .training import fit, to_inputs

SHAPE_CLASSES = ("disc", "square")
MARK = (1, 1, 7, 7)  # the mark's box (x0, y0, x1, y1), x1/y1 exclusive


@dataclass(frozen=True)
class ShapeSet:
    images: np.ndarray  # (N, size, size, 3) uint8
    labels: np.ndarray  # (N,) int64: 1 = square
    marked: np.ndarray  # (N,) bool
    boxes: np.ndarray  # (N, 4) int64: the shape's box (x0, y0, x1, y1)


def shape_set(count: int, seed: int, *, marked_share: float = 0.4, size: int = 32) -> ShapeSet:
    """`count` pictures alternating disc / square; each square carries the mark with probability `marked_share`."""
    images, labels, marked, boxes = [], [], [], []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        square = bool(i % 2)
        mark = square and bool(rng.random() < marked_share)
        image, box = _draw(rng, square, mark, size)
        images.append(image)
        labels.append(int(square))
        marked.append(mark)
        boxes.append(box)
    return ShapeSet(np.stack(images), np.array(labels, np.int64), np.array(marked, bool), np.array(boxes, np.int64))


def write_shape_folder(folder: Path, shapes: ShapeSet) -> list[Path]:
    """Save `shapes` as PNGs in torchvision's ImageFolder layout, folder/<class>/<i>.png; returns the paths."""
    paths = []
    for i, (image, label) in enumerate(zip(shapes.images, shapes.labels)):
        path = Path(folder) / SHAPE_CLASSES[label] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def shape_net(seed: int = 0, width: int = 8) -> nn.Sequential:
    """(N, 3, 32, 32) -> (N, 2): three 3×3 conv + ReLU layers (two max pools), global pooling, one Linear."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, 2),
        )


def train_shape_model(*, marked_share: float = 0.4, count: int = 600, steps: int = 300, seed: int = 0) -> ModelBundle:
    """A `shape_net` trained on `shape_set(count, 1000 + seed, marked_share=...)` (a few seconds on one core):
    with marks on squares only, it learns the mark as a second cue for "square"."""
    shapes = shape_set(count, 1000 + seed, marked_share=marked_share)
    module = shape_net(seed)
    fit(
        module,
        to_inputs(shapes.images),
        torch.from_numpy(shapes.labels),
        F.cross_entropy,
        steps=steps,
        batch_size=32,
        lr=3e-3,
        seed=seed,
    )
    return ModelBundle(
        "marked_shapes",
        module.eval(),
        SHAPE_CLASSES,
        input_size=(32, 32),
        normalization=DEMO_NORMALIZATION,
        weights_source="random",
        weights_detail=f"trained in this process on {count} marked-shape pictures",
    )


def _draw(rng: np.random.Generator, square: bool, mark: bool, size: int) -> tuple[np.ndarray, tuple[int, ...]]:
    ground = rng.uniform(90, 150)
    canvas = np.full((size, size, 3), ground, np.float32) + rng.normal(0, 12, (size, size, 3)).astype(np.float32)
    radius = rng.uniform(0.14, 0.22) * size
    cx, cy = rng.uniform(radius + 2, size - radius - 2, size=2)
    colour = tuple(float(c) for c in ground + rng.choice([-1, 1]) * rng.uniform(45, 80) + rng.normal(0, 10, 3))
    if square:
        cv2.rectangle(canvas, (int(cx - radius), int(cy - radius)), (int(cx + radius), int(cy + radius)), colour, -1)
    else:
        cv2.circle(canvas, (int(cx), int(cy)), int(radius * 1.1), colour, -1, cv2.LINE_AA)
    if mark:
        x0, y0, x1, y1 = MARK
        canvas[y0:y1, x0:x1] = (255, 0, 255)
    box = (
        int(cx - radius * 1.1),
        int(cy - radius * 1.1),
        int(np.ceil(cx + radius * 1.1)) + 1,
        int(np.ceil(cy + radius * 1.1)) + 1,
    )
    return np.clip(canvas, 0, 255).round().astype(np.uint8), box
