"""Attention methods for vision transformers: follow the attention from the prediction's token back to the patches
through every block. They read each block's attention probabilities (`attention.record`); a model without an
attention the engine can read gets a sentence instead (`refuses`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import attention
from ..targets import Target
from ..tracing import Trace
from .base import (
    Method,
    MethodInputs,
    MethodOutput,
    MethodResult,
    Option,
    captured,
    normalize,
    register_method,
    upsample,
)

# How a block's heads are combined (the `head_fusion` option's 0, 1, 2): (N, heads, T, T) -> (N, T, T)
FUSIONS = {
    "mean": lambda probs: probs.mean(dim=1),
    "max": lambda probs: probs.amax(dim=1),
    "min": lambda probs: probs.amin(dim=1),
}


def patch_map(rolled: torch.Tensor, record: attention.AttentionRecord) -> torch.Tensor:
    """(N, T, T) token-to-token relevance -> (N, h, w): the query rows' relevance of the patch tokens (the prefix
    tokens' columns dropped), laid out on the patch grid."""
    rows = rolled[:, list(record.query), record.prefix :].mean(dim=1)
    return rows.reshape(len(rolled), *record.grid)


class _AttentionMethod(Method):
    needs = frozenset({"attention"})
    layer = "none"

    @classmethod
    def refuses(cls, trace: Trace, targets: Sequence[Target]) -> str:
        return attention.support(layer.kind for layer in trace.layers)

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        h, w = result.meta["grid"]
        return f"{result.meta['blocks']} attention blocks over {h}×{w} patches · {target}"


@register_method
class AttentionRollout(_AttentionMethod):
    """Attention rollout (Abnar & Zuidema 2020): per block l, the heads' probabilities (N, heads, T, T) fused into
    one (T, T) matrix A_l (mean, max or min over heads), its `discard_ratio` weakest entries set to zero (never
    those attending to a prefix token), then Ã_l = row-normalised (A_l + I) / 2, the identity standing for the
    residual path; rollout R = Ã_L ··· Ã_1. `raw` (h, w): the query rows of R (the class token) over the patch
    tokens, on the patch grid; the map is it upsampled and min-max normalised. It ignores the target class."""

    name = "attention_rollout"
    title = "Attention rollout"
    summary = "Follows the transformer's attention from its class token back through every block to the patches."
    paper = "https://arxiv.org/abs/2005.00928"
    options = (
        Option(
            "discard_ratio", 0.0, "share of the weakest attention dropped per block", low=0.0, high=0.99, kind=float
        ),
        Option("head_fusion", 0, "heads combined by 0: mean, 1: max, 2: min", low=0, high=2),
    )
    hover = "attention reaching this patch"

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        record = captured(inputs.attention, "attention")
        discard, fusion = self.setting(inputs, "discard_ratio"), list(FUSIONS)[int(self.setting(inputs, "head_fusion"))]
        tokens = record.probs[0].shape[-1]
        eye = torch.eye(tokens, device=record.probs[0].device)
        rolled = eye.expand(len(record.probs[0]), -1, -1)
        for probs in record.probs:
            fused = FUSIONS[fusion](probs.float())
            if discard > 0:
                fused = _discard(fused, discard, record.prefix)
            mixed = (fused + eye) / 2
            rolled = (mixed / mixed.sum(dim=-1, keepdim=True)) @ rolled
        raw = patch_map(rolled, record)
        meta = {"grid": record.grid, "blocks": len(record.probs), "discard_ratio": discard, "head_fusion": fusion}
        return MethodOutput(map=normalize(upsample(raw, inputs.input_size)), raw=raw, meta=meta)


def _discard(fused: torch.Tensor, ratio: float, prefix: int) -> torch.Tensor:
    """(N, T, T) with the ⌊ratio · n⌋ smallest of the n entries outside the first `prefix` columns set to 0."""
    n, tokens = fused.shape[0], fused.shape[-1]
    kept = torch.zeros(tokens, tokens, dtype=torch.bool, device=fused.device)
    kept[:, :prefix] = True
    count = int(ratio * (tokens * tokens - int(kept.sum())))
    if count == 0:
        return fused
    flat = fused.reshape(n, -1)
    weakest = flat.masked_fill(kept.flatten(), float("inf")).topk(count, dim=1, largest=False).indices
    return flat.scatter(1, weakest, 0.0).view_as(fused)


@register_method
class GradRollout(_AttentionMethod):
    """Gradient-weighted attention rollout (Chefer, Gur & Wolf 2021): per block, Ā_l = mean over heads of
    (∇A_l ⊙ A_l)⁺, with ∇A_l = d score / d A_l (N, heads, T, T) for the target; R ← R + Ā_l R from R = I over
    blocks 1..L. `raw` (h, w): the query rows of R (the class token) over the patch tokens, on the patch grid;
    the map is it upsampled and min-max normalised."""

    name = "grad_rollout"
    title = "Gradient-weighted rollout"
    summary = "Follows the transformer's attention back to the patches, counting only what raises this class's score."
    paper = "https://arxiv.org/abs/2103.15679"
    needs = frozenset({"attention", "attention_gradient"})
    hover = "relevance reaching this patch"

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        record = captured(inputs.attention, "attention")
        gradients = captured(record.gradients, "attention_gradient")
        tokens = record.probs[0].shape[-1]
        rolled = torch.eye(tokens, device=record.probs[0].device).expand(len(record.probs[0]), -1, -1)
        for probs, grads in zip(record.probs, gradients):
            weighted = (grads.float() * probs.float()).clamp(min=0).mean(dim=1)
            rolled = rolled + weighted @ rolled
        raw = patch_map(rolled, record)
        meta = {"grid": record.grid, "blocks": len(record.probs)}
        return MethodOutput(map=normalize(upsample(raw, inputs.input_size)), raw=raw, meta=meta)
