"""A demo model's whole answer for one picture — the salt mask, every obstacle output — for the Stories page.

The forward pass is `ModelBundle.run`'s: it holds the bundle's lock, so it never runs while an explanation has
hooks on the same shared module.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..models.bundle import ModelBundle


def _outputs(bundle: ModelBundle, image: Image.Image) -> torch.Tensor:
    _, x = bundle.prepare(image)
    with torch.no_grad():
        return bundle.run(x[None].to(bundle.device), failed_on="this image")[0].cpu()


def segment(bundle: ModelBundle, image: Image.Image) -> np.ndarray:
    """(H, W) int64 class per pixel (argmax of the logits) at the model's input size."""
    return _outputs(bundle, image).argmax(dim=0).numpy()


def output_probabilities(bundle: ModelBundle, image: Image.Image) -> np.ndarray:
    """(M,) float32 sigmoid of every output, in output order."""
    return torch.sigmoid(_outputs(bundle, image).flatten()).numpy()


def mask_share(values: np.ndarray, region: np.ndarray) -> float:
    """Share of a non-negative map's total that lies inside boolean `region` (0 for an all-zero map)."""
    total = float(values.sum())
    return float(values[region].sum() / total) if total > 0 else 0.0
