"""How faithful is a map to the model? Scores that change the picture as the map says and watch the model.

- Deletion and insertion (Petsiuk et al. 2018, RISE, https://arxiv.org/abs/1806.07421): pixels are removed
  (set to a baseline) or inserted (into a blurred copy) in order of decreasing importance, in `steps` equal
  shares; the curve is the target's probability after each share, and its area under the curve (trapezoid
  over the fraction of pixels, 0 to 1) is the score: low for deletion, high for insertion is good.
- Average drop (Chattopadhay et al. 2018, Grad-CAM++, https://arxiv.org/abs/1710.11063): max(0, Y − O) / Y
  with Y the probability on the image and O on the image multiplied by the map (in [0, 1]); low is good. Its
  mean over images is the paper's "Average Drop"; the share of images with O > Y its "Increase in Confidence".

"Probability" is the softmax probability of the target class for classifiers and the target's score otherwise.
All perturbed pictures live in the model's normalised input space, so the zero baseline is the mean colour for
ImageNet normalisation. Every perturbed picture of every image goes through the model in batches.

    result = evaluate_map(bundle, image, explanation["gradcam"].map, target=281)
    result.deletion.auc, result.insertion.auc, result.average_drop, result.deletion.scores
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .errors import EngineError, MethodError
from .explainer import ImageSource, TargetSpec
from .images import DecodedImage, decode_image
from .models.bundle import ModelBundle
from .models.contained_onnx import in_worker
from .targets import Target, resolve_target

Baseline = Literal["zeros", "blur"]


@dataclass(frozen=True)
class Curve:
    """`fractions` (steps + 1,) share of pixels removed or inserted; `scores` (steps + 1,) the probability then."""

    fractions: np.ndarray
    scores: np.ndarray
    auc: float


@dataclass(frozen=True)
class Faithfulness:
    """One image's scores for one map. `score` is Y (the unchanged image), `masked_score` O."""

    deletion: Curve
    insertion: Curve
    average_drop: float
    increase: bool
    score: float
    masked_score: float


def evaluate_map(
    bundle: ModelBundle,
    image: ImageSource,
    saliency: np.ndarray | torch.Tensor,
    target: TargetSpec = None,
    *,
    steps: int = 50,
    deletion_baseline: Baseline = "zeros",
    insertion_baseline: Baseline = "blur",
    batch_size: int | None = None,
) -> Faithfulness:
    """`evaluate_maps` for one image and its (H, W) map."""
    return evaluate_maps(
        bundle,
        [image],
        [saliency],
        [target],
        steps=steps,
        deletion_baseline=deletion_baseline,
        insertion_baseline=insertion_baseline,
        batch_size=batch_size,
    )[0]


@in_worker(images=("images",))  # an uploaded ONNX model is scored in its worker
def evaluate_maps(
    bundle: ModelBundle,
    images: Sequence[ImageSource],
    maps: Sequence[np.ndarray | torch.Tensor],
    targets: Sequence[TargetSpec] | None = None,
    *,
    steps: int = 50,
    deletion_baseline: Baseline = "zeros",
    insertion_baseline: Baseline = "blur",
    batch_size: int | None = None,
) -> list[Faithfulness]:
    """Deletion, insertion and average drop for N images and their maps (any size; resized bilinearly to the
    model's input). `targets`: one per image (class index, Target or None for the top-1 class)."""
    if len(maps) != len(images) or (targets is not None and len(targets) != len(images)):
        raise EngineError("Give exactly one map (and one target, if any) per image.")
    decoded = [image if isinstance(image, DecodedImage) else decode_image(image) for image in images]
    prepared = [bundle.prepare(d.image)[1] for d in decoded]
    x = torch.stack(prepared).to(bundle.device)
    saliency = torch.stack([_fit(m, (x.shape[2], x.shape[3])) for m in maps]).to(x.device)
    forward = bundle.run
    with torch.no_grad():
        output = forward(x)
    specs = list(targets) if targets is not None else [None] * len(images)
    resolved = [resolve_target(s, output[i : i + 1], bundle.task, bundle.class_names) for i, s in enumerate(specs)]
    score = _scorer(bundle, resolved)
    size = batch_size or (256 if x.device.type == "cuda" else 64)
    fractions, deletion, insertion = curves(
        forward, score, x, saliency, steps, deletion_baseline, insertion_baseline, size
    )
    with torch.no_grad():
        full = score(output, torch.arange(len(x)))
        masked = score(forward(x * saliency.clamp(0, 1)[:, None]), torch.arange(len(x)))
    drop = torch.where(full > 0, (full - masked).clamp(min=0) / full.clamp(min=1e-30), torch.zeros_like(full)).tolist()
    points = fractions.cpu().numpy()
    return [
        Faithfulness(
            deletion=Curve(points, d.cpu().numpy(), area_under_curve(points, d)),
            insertion=Curve(points, i.cpu().numpy(), area_under_curve(points, i)),
            average_drop=drop[n],
            increase=bool(masked[n] > full[n]),
            score=float(full[n]),
            masked_score=float(masked[n]),
        )
        for n, (d, i) in enumerate(zip(deletion, insertion))
    ]


def curves(
    forward: Callable[[torch.Tensor], torch.Tensor],
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    saliency: torch.Tensor,
    steps: int = 50,
    deletion_baseline: Baseline = "zeros",
    insertion_baseline: Baseline = "blur",
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tensor core: x (N, C, H, W), saliency (N, H, W) -> fractions (steps + 1,) and deletion and insertion
    scores (N, steps + 1). After step i the k_i = ⌊i·HW / steps⌋ most important pixels (ties: the earlier pixel
    first) are deleted (replaced by the baseline) or inserted (copied into the insertion baseline).
    `score(output, owners)` gives each item's target score, `owners` (M,) its image index."""
    if not isinstance(steps, int) or steps < 1:
        raise MethodError(f"Deletion and insertion need a whole number of steps, at least 1; got {steps!r}.")
    n, pixels = len(x), saliency[0].numel()
    order = saliency.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(pixels, device=x.device).expand(n, -1))
    counts = torch.arange(steps + 1, device=x.device) * pixels // steps
    sources = {"deletion": (x, _baseline(x, deletion_baseline)), "insertion": (_baseline(x, insertion_baseline), x)}
    results = {}
    with torch.no_grad():
        for kind, (start, end) in sources.items():
            scores = x.new_zeros(n * (steps + 1))
            for first in range(0, len(scores), batch_size):
                items = torch.arange(first, min(first + batch_size, len(scores)), device=x.device)
                owners, step = items // (steps + 1), items % (steps + 1)
                changed = (rank[owners] < counts[step][:, None]).view(-1, 1, *x.shape[2:]).to(x.dtype)
                scores[items] = score(forward(start[owners] * (1 - changed) + end[owners] * changed), owners)
            results[kind] = scores.view(n, steps + 1)
    return counts.double() / pixels, results["deletion"], results["insertion"]


def gaussian_blur(x: torch.Tensor, size: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """RISE's blur (an 11 × 11 Gaussian, σ = 5) per channel, edges reflected: (N, C, H, W) -> same."""
    half = size // 2
    taps = torch.exp(-((torch.arange(size, device=x.device, dtype=x.dtype) - half) ** 2) / (2 * sigma**2))
    taps = taps / taps.sum()
    channels = x.shape[1]
    padded = F.pad(x, (half, half, half, half), mode="reflect" if min(x.shape[2:]) > half else "replicate")
    rows = F.conv2d(padded, taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(rows, taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def _fit(saliency: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """One (h, w) map -> (H, W) float32 on the CPU, bilinear."""
    if isinstance(saliency, torch.Tensor):
        values = saliency.detach().float().cpu()
    else:
        values = torch.as_tensor(np.asarray(saliency, dtype=np.float32))
    if values.dim() != 2:
        raise EngineError(f"Each map must be one (H, W) array; got shape {tuple(values.shape)}.")
    return F.interpolate(values[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def _baseline(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x)
    raise MethodError(f"The baseline must be 'zeros' or 'blur', not '{kind}'.")


def area_under_curve(fractions: np.ndarray, scores: torch.Tensor | np.ndarray) -> float:
    """The trapezoid rule over the fraction axis (RISE's AUC when the steps are equal)."""
    values = np.asarray(scores.double().cpu() if isinstance(scores, torch.Tensor) else scores, dtype=np.float64)
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(fractions)))


def _scorer(bundle: ModelBundle, targets: Sequence[Target]) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(M, ...) outputs and their (M,) sorted image indices -> each item's target probability (M,)."""
    classifier = bundle.task == "classification"

    def score(output: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        values = torch.softmax(output.float(), dim=1) if classifier else output
        counts = torch.bincount(owners.cpu(), minlength=len(targets)).tolist()
        parts = torch.split(values, counts)
        return torch.cat([targets[i].score(part) for i, part in enumerate(parts) if len(part)])

    return score
