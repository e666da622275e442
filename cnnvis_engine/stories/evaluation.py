"""Held-out measurements of the demo models, on freshly generated scenes (seeds never used in training).

Used by the model cards (`scripts/train_demos.py`), the tests and the Stories page.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..demos.floor_views import draw_floor_view, floor_dataset
from ..demos.seismic_sections import salt_dataset
from ..demos.tank_scenes import LightRule, TankDataset, tank_dataset
from ..demos.training import predict_batches, to_inputs
from ..explainer import Explainer
from ..models.bundle import ModelBundle
from ..targets import ClassTarget, SegmentationTarget

HELD_OUT_SEEDS = {
    "tanks": 2001,
    "tanks_cam": 2002,
    "salt": 2003,
    "salt_cam": 2004,
    "robot": 2005,
    "robot_failures": 2006,
}


@dataclass(frozen=True)
class CamShare:
    """How much of a map's mass falls inside a region, averaged over images."""

    mean: float
    flat: int  # images whose map was flat (no evidence anywhere); they count as spread evenly
    count: int


def tank_accuracy(
    model: nn.Module | ModelBundle, light: LightRule, *, count: int = 400, seed: int = HELD_OUT_SEEDS["tanks"]
) -> float:
    """Accuracy on `count` fresh scenes whose light follows `light` ("shortcut", "clean" or "reversed")."""
    data = tank_dataset(count, seed, light=light)
    predicted = predict_batches(model, to_inputs(data.images)).argmax(dim=1).numpy()
    return float((predicted == data.labels).mean())


def tank_cam_share(
    bundle: ModelBundle, *, data: TankDataset | None = None, method: str = "gradcam", layer: str | None = None
) -> CamShare:
    """Mean share of `method`'s map (class "tank", input resolution) that falls inside each tank's box."""
    if data is None:
        data = tank_dataset(80, HELD_OUT_SEEDS["tanks_cam"], light="clean")
    tanks = np.flatnonzero(data.labels == 1)
    explanations = Explainer(bundle).explain_batch(
        [Image.fromarray(data.images[i]) for i in tanks], targets=ClassTarget(1, "tank"), methods=[method], layer=layer
    )
    shares, flat = [], 0
    for i, explanation in zip(tanks, explanations):
        x0, y0, x1, y1 = data.boxes[i]
        share, was_flat = _share(explanation[method].arrays()[0], _box_mask(data.images.shape[1:3], (x0, y0, x1, y1)))
        shares.append(share)
        flat += was_flat
    return CamShare(float(np.mean(shares)), flat, len(shares))


def salt_iou(model: nn.Module | ModelBundle, *, count: int = 300, seed: int = HELD_OUT_SEEDS["salt"]) -> float:
    """Intersection over union of predicted and true salt pixels, pooled over `count` fresh sections."""
    data = salt_dataset(count, seed)
    predicted = predict_batches(model, to_inputs(data.images)).argmax(dim=1).numpy() == 1
    truth = data.masks == 1
    return float((predicted & truth).sum() / max((predicted | truth).sum(), 1))


def salt_cam_share(
    bundle: ModelBundle, *, count: int = 40, seed: int = HELD_OUT_SEEDS["salt_cam"], layer: str | None = None
) -> CamShare:
    """Mean share of the "salt" Grad-CAM mass inside the predicted salt mask, over sections that show salt."""
    data = salt_dataset(count, seed)
    with torch.no_grad():
        predicted = predict_batches(bundle, to_inputs(data.images)).argmax(dim=1).numpy() == 1
    keep = [i for i in range(count) if predicted[i].any()]
    explanations = Explainer(bundle).explain_batch(
        [Image.fromarray(data.images[i]) for i in keep],
        targets=SegmentationTarget(1, name="salt"),
        methods=["gradcam"],
        layer=layer,
    )
    shares, flat = [], 0
    for i, explanation in zip(keep, explanations):
        share, was_flat = _share(explanation["gradcam"].arrays()[0], predicted[i])
        shares.append(share)
        flat += was_flat
    return CamShare(float(np.mean(shares)), flat, len(shares))


def robot_scores(
    model: nn.Module | ModelBundle, *, count: int = 400, seed: int = HELD_OUT_SEEDS["robot"]
) -> dict[str, float]:
    """Per-output accuracy (mean and worst output), precision, recall and the share of views with every
    output right, on `count` fresh views; an output says "obstacle" when its sigmoid exceeds 0.5."""
    data = floor_dataset(count, seed)
    predicted = (predict_batches(model, to_inputs(data.images)) > 0).numpy()
    truth = data.labels > 0.5
    right = predicted == truth
    hits = (predicted & truth).sum()
    return {
        "per_output_accuracy": float(right.mean()),
        "worst_output_accuracy": float(right.mean(axis=0).min()),
        "precision": float(hits / max(predicted.sum(), 1)),
        "recall": float(hits / max(truth.sum(), 1)),
        "all_outputs_right": float(right.all(axis=1).mean()),
        "all_zero_baseline": float((~truth).mean()),
    }


def robot_failures(
    model: nn.Module | ModelBundle, *, count: int = 100, seed: int = HELD_OUT_SEEDS["robot_failures"]
) -> dict[str, float]:
    """The article's two failure cases on fresh views: how often one obstacle is found when it is coloured
    like the floor (vs an ordinary colour), and how many obstacles a strong shadow alone conjures up."""

    def run(obstacles: int, camouflaged: bool = False, shadow: bool = False) -> tuple[np.ndarray, np.ndarray]:
        views = [
            draw_floor_view(
                np.random.default_rng([seed, i]), obstacles=obstacles, camouflaged=camouflaged, shadow=shadow
            )
            for i in range(count)
        ]
        out = predict_batches(model, to_inputs(np.stack([v.image for v in views]))).numpy() > 0
        return out, np.stack([v.labels for v in views]) > 0.5

    found, truth = run(obstacles=1)
    found_camo, truth_camo = run(obstacles=1, camouflaged=True)
    ghosts, _ = run(obstacles=0, shadow=True)
    plain, _ = run(obstacles=0)
    return {
        "found_ordinary": float(found[truth].mean()),
        "found_floor_coloured": float(found_camo[truth_camo].mean()),
        "false_obstacles_per_empty_view": float(plain.sum(axis=1).mean()),
        "false_obstacles_per_shadow_view": float(ghosts.sum(axis=1).mean()),
    }


def _box_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def _share(values: np.ndarray, region: np.ndarray) -> tuple[float, bool]:
    """Share of `values`' total inside boolean `region`; a flat (all-zero) map counts as spread evenly."""
    total = float(values.sum())
    if total <= 0:
        return float(region.mean()), True
    return float(values[region].sum() / total), False
