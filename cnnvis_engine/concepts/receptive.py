"""The receptive field of a layer's units, measured from gradients, in input pixels.

Once per index: two probe pictures, a seeded random one and its negative (so a first-layer ReLU off for one is
mostly on for the other), go through the model (eval mode, as the bundle keeps it) with the chosen layers recorded
(`hooks.capture`, outputs cloned); for each layer the gradient of Σ_k A_k[h_c, w_c] (every channel at the central
unit of the canonical (N, K, h, w) view) is taken to the input. Its non-zero support, united over the pictures (so
a ReLU that happens to be off for one picture does not shrink it), is the central unit's receptive field: a box
(left, top, right, bottom). A unit (i, j) sees that box moved by the grid's stride, (i - h_c)·H/h rows and
(j - w_c)·W/w columns, clipped to the picture. Where the measured box reaches an edge of the picture the field was
cut there, so every unit's box keeps that edge: the box then holds more than the field, never less (a field wider
than the picture, as in resnet's layer4 or any vision transformer block, is the whole picture for every unit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..hooks import capture
from ..layouts import Layout
from ..models.bundle import ModelBundle

PROBES = 2  # pictures the support is united over: a seeded random one and its negative
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
        # A side where the measured field reaches the picture's edge was cut there: the field goes on beyond it, so
        # the moved box keeps that edge (a whole-picture field, as a vision transformer's, stays the whole picture).
        return (
            0 if left == 0 else max(0, min(width - 1, left + dx)),
            0 if top == 0 else max(0, min(height - 1, top + dy)),
            width if right == width else max(1, min(width, right + dx)),
            height if bottom == height else max(1, min(height, bottom + dy)),
        )


def measure_receptive_fields(
    bundle: ModelBundle, layers: Sequence[tuple[str, Layout]], seed: int = 0
) -> list[ReceptiveField]:
    """The receptive fields of the units of each (layer, layout) (see the module's docstring), from one forward pass
    of the probe pictures with those layers recorded and one backward pass per layer to the input. The whole
    picture where no gradient reaches the input."""
    height, width = bundle.input_size
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(PROBES // 2, bundle.channels, height, width, generator=generator)
    x = torch.cat([noise, -noise]).to(bundle.device).requires_grad_(True)
    names = {name for name, _ in layers}
    with bundle.lock, torch.enable_grad(), capture(bundle.module, clone_outputs=names, only=names) as record:
        bundle.run(x, failed_on="the receptive-field probe")
    outputs = {call.name: call.output for call in sorted(record.calls, key=lambda c: c.end)}  # the last call wins
    fields = []
    for name, layout in layers:
        view = layout.view(outputs[name])
        h, w = int(view.shape[2]), int(view.shape[3])
        centre = (h // 2, w // 2)
        (grad,) = torch.autograd.grad(view[:, :, centre[0], centre[1]].sum(), x, retain_graph=True, allow_unused=True)
        fields.append(_field(grad, (h, w), (height, width), centre))
    return fields


def _field(
    grad: torch.Tensor | None, grid: tuple[int, int], size: tuple[int, int], centre: tuple[int, int]
) -> ReceptiveField:
    height, width = size
    if grad is None or not bool((grad != 0).any()):
        return ReceptiveField(grid, size, centre, (0, 0, width, height))
    support = (grad.detach() != 0).any(dim=0).any(dim=0)  # (H, W)
    rows = torch.nonzero(support.any(dim=1)).flatten()
    cols = torch.nonzero(support.any(dim=0)).flatten()
    return ReceptiveField(grid, size, centre, (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
