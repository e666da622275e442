"""Localisation scores where the object's place is known (a box or a mask), as Quantus defines them
(Hedström et al. 2023, https://jmlr.org/papers/v24/22-0142.html):

- pointing game (Zhang et al. 2018, https://arxiv.org/abs/1608.00507): 1 if a pixel where the map takes its
  maximum lies inside the object, else 0 (Quantus `PointingGame`, not weighted);
- relevance mass accuracy (Arras et al. 2022, https://arxiv.org/abs/2003.07258): Σ_inside a / Σ a
  (Quantus `RelevanceMassAccuracy`).

Both are NaN where the region is empty. Maps are (H, W) non-negative floats; regions (H, W) bool.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in pixels, x1/y1 exclusive
Region = Box | np.ndarray


def pointing_game(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N, H, W) maps, (N, H, W) bool regions -> (N,) float: 1.0 hit, 0.0 miss, NaN for an empty region."""
    flat, inside = maps.reshape(len(maps), -1), regions.reshape(len(regions), -1).astype(bool)
    at_max = flat == flat.max(axis=1, keepdims=True)
    hit = np.any(at_max & inside, axis=1).astype(np.float64)
    hit[~inside.any(axis=1)] = np.nan
    return np.asarray(hit)


def relevance_mass(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """(N, H, W) maps, (N, H, W) bool regions -> (N,) share of each map's total inside its region (NaN for an
    empty region or an all-zero map)."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    inside = regions.reshape(len(regions), -1).astype(bool)
    total = flat.sum(axis=1)
    within = (flat * inside).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = within / total
    mass[~inside.any(axis=1) | (total == 0)] = np.nan
    return np.asarray(mass)


def region_mask(region: Region, original_size: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    """A box in the original picture's pixels, or a mask of any size, as an (H, W) bool mask at `shape`
    (height, width). `original_size` is the picture's (width, height)."""
    height, width = shape
    if isinstance(region, np.ndarray) and region.ndim == 2:
        if region.shape == shape:
            return region.astype(bool)
        resized = cv2.resize(region.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
        return resized.astype(bool)
    x0, y0, x1, y1 = (float(v) for v in region)
    sx, sy = width / original_size[0], height / original_size[1]
    mask = np.zeros(shape, bool)
    c0, c1 = int(np.floor(x0 * sx)), int(np.ceil(x1 * sx))
    r0, r1 = int(np.floor(y0 * sy)), int(np.ceil(y1 * sy))
    mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = True
    return mask
