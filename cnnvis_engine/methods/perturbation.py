"""Perturbation methods: change the picture, watch the score. No gradients; extra forward passes only."""

from __future__ import annotations

import torch

from ..errors import MethodError
from .base import Method, MethodInputs, MethodOutput, MethodResult, Option, captured, normalize, register_method
from .extra_passes import batch_size, chunks, item_scores

MAX_POSITIONS = 4096  # occlusion windows per image, each a forward pass: 64 × 64 (window 1 on 224 px is 50,176)
# The dashboard's window (at least the default 32 px) and stride (at least 16 px, half of that: a stride left at its
# default follows the window), so its number boxes and links can make a panel cheaper than the default's 13 × 13 =
# 169 forward passes on a 224 px input, never dearer (16 px with stride 8 was 729 passes: 117 s on a loaded 2-core
# box); at most 1024 px, larger than any model's input here.
DASHBOARD_WINDOWS, DASHBOARD_STRIDES = (32, 1024), (16, 1024)
BASELINES = (-10.0, 10.0)  # the dashboard's baselines: normalised ImageNet pixels lie within ±2.7


def window_positions(size: int, window: int, stride: int, device: torch.device) -> torch.Tensor:
    """(P, size) bool: which of `size` pixels the P windows cover. Windows start at 0, s, 2s, ... until one
    reaches the edge: P = ⌈(size − window) / stride⌉ + 1, the last one clipped at the edge (as captum)."""
    starts = torch.arange(-(-(size - window) // stride) + 1, device=device)[:, None] * stride
    pixels = torch.arange(size, device=device)[None]
    return (pixels >= starts) & (pixels < starts + window)


@register_method
class Occlusion(Method):
    """Occlusion (Zeiler & Fergus 2014): a `window` × `window` patch (32 px, all channels) slides with `stride`
    (half the window) and is set to `baseline` (0.0 in the normalised input space: the mean colour for ImageNet
    normalisation); raw (H, W) = the mean, over the patches covering a pixel, of score(x) − score(x with the
    patch occluded) — captum's Occlusion. Positive: hiding it lowers the score. `map` is raw min-max scaled."""

    name = "occlusion"
    title = "Occlusion"
    summary = "Covers the picture patch by patch and shows where covering it lowers the score most."
    paper = "https://arxiv.org/abs/1311.2901"
    needs = frozenset({"forward"})
    layer = "none"
    options = (
        Option("window", 32, "patch size in pixels", dashboard=DASHBOARD_WINDOWS),
        Option("stride", 16, "pixels between patches (by default half the patch size)", dashboard=DASHBOARD_STRIDES),
        Option(
            "baseline", 0.0, "the patch's value (normalised input)", low=-float("inf"), kind=float, dashboard=BASELINES
        ),
    )
    legend = ("0: no drop when hidden", "1: the biggest drop")
    hover = "score drop when hidden"

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        window, stride = result.meta["window"], result.meta["stride"]
        return f"{window}×{window} px grey patches, {stride} px apart · drop in {target}"

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        x, (height, width) = inputs.x, inputs.input_size
        window = int(self.setting(inputs, "window"))
        stride = int(self.setting(inputs, "stride", default=max(1, window // 2)))
        forward = captured(inputs.forward, "forward")
        baseline = self.setting(inputs, "baseline")
        if window > min(height, width) or stride > window:
            raise MethodError(
                f"The occlusion window ({window} px, stride {stride}) must fit the {height}×{width} input "
                "and be at least as large as the stride."
            )
        positions = (-(-(height - window) // stride) + 1) * (-(-(width - window) // stride) + 1)
        if positions > MAX_POSITIONS:
            raise MethodError(
                f"An occlusion window of {window} px with stride {stride} on the {height}×{width} input means "
                f"{positions:,} forward passes per image; the limit is {MAX_POSITIONS:,}. Use a larger window or stride."
            )
        rows = window_positions(height, window, stride, x.device)
        cols = window_positions(width, window, stride, x.device)
        per_image = len(rows) * len(cols)
        drops = x.new_zeros(len(x) * per_image)
        with torch.no_grad():
            output, _ = forward(x)
            base = inputs.scores(output)
            for chunk in chunks(len(drops), batch_size(inputs, grad=False)):
                owners = chunk // per_image
                r, c = ((chunk % per_image) // len(cols)).to(x.device), (chunk % len(cols)).to(x.device)
                mask = (rows[r][:, :, None] & cols[c][:, None, :])[:, None].to(x.dtype)
                output, _ = forward(x[owners.to(x.device)] * (1 - mask) + baseline * mask)
                drops[chunk.to(x.device)] = base[owners.to(x.device)] - item_scores(inputs, output, owners)
        rows, cols = rows.to(x.dtype), cols.to(x.dtype)
        total = torch.einsum("nij,iy,jx->nyx", drops.view(len(x), len(rows), len(cols)), rows, cols)
        raw = total / torch.outer(rows.sum(dim=0), cols.sum(dim=0))
        meta = {"window": window, "stride": stride, "baseline": baseline}
        return MethodOutput(map=normalize(raw), raw=raw, meta=meta)
