"""The receptive field of a layer's units, measured from gradients, in input pixels.

Once per layer: a few seeded random pictures go through the model (eval mode, as the bundle keeps it) with that
layer recorded (`recording.extra_pass`), and the gradient of Σ_k A_k[h_c, w_c] (every channel at the central unit
of the canonical (N, K, h, w) view) is taken to the input. Its non-zero support, united over the pictures (so a
ReLU that happens to be off for one picture does not shrink it), is the central unit's receptive field: a box
(top, left, bottom, right). A unit (i, j) sees that box moved by the grid's stride, (i - h_c)·H/h rows and
(j - w_c)·W/w columns, clipped to the picture. Where the field is wider than the picture the box of a unit near
the border is the shifted measured box, clipped: it may be smaller than the true field there, never outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layouts import Layout
from ..models.bundle import ModelBundle
from ..recording import extra_pass

PROBES = 4  # random pictures the support is united over
Box = tuple[int, int, int, int]  # (left, top, right, bottom) in input pixels, right/bottom exclusive (PIL's crop)


@dataclass(frozen=True)
class ReceptiveField:
    """Where a layer's units look: the measured box of the central unit (`centre`) on a `grid` over `size`."""

    grid: tuple[int, int]  # (h, w) of the layer's canonical view
    size: tuple[int, int]  # (H, W) of the model input
    centre: tuple[int, int]  # (h_c, w_c)
    box: Box  # the central unit's field

    def around(self, position: int) -> Box:
        """The box of the unit at flat position `position` (row-major over `grid`), clipped to the picture."""
        h, w = self.grid
        row, col = divmod(int(position), w)
        dy = round((row - self.centre[0]) * self.size[0] / h)
        dx = round((col - self.centre[1]) * self.size[1] / w)
        left, top, right, bottom = self.box
        height, width = self.size
        return (
            max(0, min(width - 1, left + dx)),
            max(0, min(height - 1, top + dy)),
            max(1, min(width, right + dx)),
            max(1, min(height, bottom + dy)),
        )


def measure_receptive_field(bundle: ModelBundle, layer: str, layout: Layout, seed: int = 0) -> ReceptiveField:
    """The receptive field of `layer`'s units (see the module's docstring); one forward and one backward pass of
    PROBES pictures at the model's input size. The whole picture where no gradient reaches the input."""
    height, width = bundle.input_size
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(PROBES, bundle.channels, height, width, generator=generator).to(bundle.device)
    x.requires_grad_(True)
    with torch.enable_grad():
        _, value = extra_pass(bundle, x, layer)
        assert value is not None
        view = layout.view(value)
        h, w = int(view.shape[2]), int(view.shape[3])
        centre = (h // 2, w // 2)
        (grad,) = torch.autograd.grad(view[:, :, centre[0], centre[1]].sum(), x, allow_unused=True)
    if grad is None or not bool((grad != 0).any()):
        return ReceptiveField((h, w), (height, width), centre, (0, 0, width, height))
    support = (grad.detach() != 0).any(dim=0).any(dim=0)  # (H, W)
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    return ReceptiveField((h, w), (height, width), centre, box)
