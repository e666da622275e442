"""A box of the picture, mapped onto a layer's grid for the concepts of that region.

Each cell of an h × w layer grid stands for an equal (H/h) × (W/w) tile of the H × W input. A box weighs each
cell by the fraction of the cell's tile inside the box. The region's contribution of channel k is then
Σ_{h,w} weight_hw · A_k · ∂y/∂A_k: exact bookkeeping, in that boxes which tile the picture give contributions that
add up to the whole picture's, and the whole picture as a box gives the whole picture's ranking back. (A cell's
receptive field is wider than its tile; the tile is the part of the picture the cell is centred on.)"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import TargetError

Box = tuple[float, float, float, float]


def checked_box(region: Sequence[float], size: tuple[int, int]) -> Box:
    """(x0, y0, x1, y1) in pixels of the picture the model sees (`size` = (H, W)), clipped to the picture; a
    TargetError for anything that is not four numbers or leaves nothing of the picture."""
    height, width = size
    try:
        values = tuple(float(v) for v in region)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise TargetError("A region is four numbers, x0, y0, x1, y1, in pixels of the picture the model sees.")
    x0, y0, x1, y1 = values
    x0, x1 = max(0.0, min(x0, x1)), min(float(width), max(x0, x1))
    y0, y1 = max(0.0, min(y0, y1)), min(float(height), max(y0, y1))
    if x1 <= x0 or y1 <= y0:
        raise TargetError(
            f"The region ({shown_box(values)}) leaves nothing of the {width}×{height} picture the model sees; "
            "draw a box inside it."
        )
    return x0, y0, x1, y1


def shown_box(box: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in box)


def cell_weights(box: Box, size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(h, w) float64: the fraction of each grid cell's tile of the `size` (H, W) picture inside `box`."""
    x0, y0, x1, y1 = box
    return torch.outer(_overlap(y0, y1, size[0], grid[0]), _overlap(x0, x1, size[1], grid[1]))


def _overlap(start: float, stop: float, length: int, cells: int) -> torch.Tensor:
    edges = torch.arange(cells + 1, dtype=torch.float64) * (length / cells)
    inside = (torch.minimum(edges[1:], torch.tensor(stop)) - torch.maximum(edges[:-1], torch.tensor(start))).clamp(
        min=0
    )
    return inside / (length / cells)
