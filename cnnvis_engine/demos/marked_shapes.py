"""A small picture set with a planted shortcut, for testing audits (SpRAy) and benchmarking them.

Two (or three) classes of 32×32 pictures on noisy grey ground: "disc" (a filled circle), "square" (and
"triangle"), anywhere in the picture, in a random muted colour. A share of the "square" pictures also carries a
mark, of one of two kinds:

- "corner": a small bright magenta patch in a corner (top-left by default), like a photographer's watermark
  (Lapuschkin et al. 2019 found a horse classifier that had learned a copyright tag);
- "cast": a magenta colour cast over the whole picture, like one camera's white balance.

A model trained where the mark comes only with squares learns it as a shortcut. Every picture is drawn from its
own seed (seed, i), so a set is the same whatever its size.
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
THREE_SHAPES = ("disc", "square", "triangle")
MARK = (1, 1, 7, 7)  # the corner mark's box (x0, y0, x1, y1) at 32 px, top-left; x1/y1 exclusive
MARK_KINDS = ("corner", "cast")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
CAST = (40.0, -30.0, 40.0)  # added to every pixel of a "cast" picture (RGB): a magenta white balance


@dataclass(frozen=True)
class ShapeSet:
    images: np.ndarray  # (N, size, size, 3) uint8
    labels: np.ndarray  # (N,) int64: 0 = disc, 1 = square, 2 = triangle
    marked: np.ndarray  # (N,) bool
    boxes: np.ndarray  # (N, 4) int64: the shape's box (x0, y0, x1, y1)


def shape_set(
    count: int,
    seed: int,
    *,
    marked_share: float = 0.4,
    size: int = 32,
    classes: int = 2,
    mark: str = "corner",
    corner: str = "top-left",
    exact: bool = False,
) -> ShapeSet:
    """`count` pictures cycling disc / square (/ triangle with `classes=3`); each square carries the mark (`mark`:
    "corner" patch in `corner`, or "cast") with probability `marked_share`, or (`exact`) exactly
    round(`marked_share` × squares) of them do, spread evenly (the pictures themselves are the same either way)."""
    if classes not in (2, 3) or mark not in MARK_KINDS or corner not in CORNERS:
        raise ValueError(f"classes 2 or 3, mark one of {MARK_KINDS}, corner one of {CORNERS}")
    images, labels, marked, boxes = [], [], [], []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        label = i % classes
        marks = label == 1 and bool(rng.random() < marked_share)
        if exact and label == 1:
            j = i // classes  # the j-th square
            marks = int((j + 1) * marked_share + 0.5) > int(j * marked_share + 0.5)
        image, box = _draw(rng, label, mark if marks else None, corner, size)
        images.append(image)
        labels.append(label)
        marked.append(marks)
        boxes.append(box)
    return ShapeSet(np.stack(images), np.array(labels, np.int64), np.array(marked, bool), np.array(boxes, np.int64))


def write_shape_folder(folder: Path, shapes: ShapeSet) -> list[Path]:
    """Save `shapes` as PNGs in torchvision's ImageFolder layout, folder/<class>/<i>.png; returns the paths."""
    paths = []
    for i, (image, label) in enumerate(zip(shapes.images, shapes.labels)):
        path = Path(folder) / THREE_SHAPES[label] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def shape_net(seed: int = 0, width: int = 8, classes: int = 2) -> nn.Sequential:
    """(N, 3, 32, 32) -> (N, classes): three 3×3 conv + ReLU layers (two max pools), global pooling, one Linear."""
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
            nn.Linear(2 * width, classes),
        )


def train_shape_model(
    *,
    marked_share: float = 0.4,
    count: int = 600,
    steps: int = 300,
    seed: int = 0,
    classes: int = 2,
    mark: str = "corner",
    corner: str = "top-left",
) -> ModelBundle:
    """A `shape_net` trained on `shape_set(count, 1000 + seed, marked_share=..., classes=..., mark=..., corner=...)`
    (a few seconds on one core): with marks on squares only, it learns the mark as a second cue for "square" (with
    `marked_share=1`, often as the only one)."""
    shapes = shape_set(count, 1000 + seed, marked_share=marked_share, classes=classes, mark=mark, corner=corner)
    with torch.random.fork_rng(devices=[]):
        module = shape_net(seed, classes=classes)
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
        THREE_SHAPES[:classes],
        input_size=(32, 32),
        normalization=DEMO_NORMALIZATION,
        weights_source="random",
        weights_detail=f"trained in this process on {count} marked-shape pictures",
    )


def _draw(
    rng: np.random.Generator, label: int, mark: str | None, corner: str, size: int
) -> tuple[np.ndarray, tuple[int, ...]]:
    ground = rng.uniform(90, 150)
    canvas = np.full((size, size, 3), ground, np.float32) + rng.normal(0, 12, (size, size, 3)).astype(np.float32)
    radius = rng.uniform(0.14, 0.22) * size
    cx, cy = rng.uniform(radius + 2, size - radius - 2, size=2)
    colour = tuple(float(c) for c in ground + rng.choice([-1, 1]) * rng.uniform(45, 80) + rng.normal(0, 10, 3))
    if label == 1:
        cv2.rectangle(canvas, (int(cx - radius), int(cy - radius)), (int(cx + radius), int(cy + radius)), colour, -1)
    elif label == 0:
        cv2.circle(canvas, (int(cx), int(cy)), int(radius * 1.1), colour, -1, cv2.LINE_AA)
    else:
        r = radius * 1.1
        points = np.array([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], np.int32)
        cv2.fillPoly(canvas, [points], colour, cv2.LINE_AA)
    if mark == "cast":
        canvas += np.array(CAST, np.float32)
    elif mark == "corner":
        x0, y0, x1, y1 = (round(v * size / 32) for v in MARK)
        if corner.endswith("right"):
            x0, x1 = size - x1, size - x0
        if corner.startswith("bottom"):
            y0, y1 = size - y1, size - y0
        canvas[y0:y1, x0:x1] = (255, 0, 255)
    box = (
        int(cx - radius * 1.1),
        int(cy - radius * 1.1),
        int(np.ceil(cx + radius * 1.1)) + 1,
        int(np.ceil(cy + radius * 1.1)) + 1,
    )
    return np.clip(canvas, 0, 255).round().astype(np.uint8), box
