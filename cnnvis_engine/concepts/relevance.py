"""Concepts: which channels of a layer the target's score rests on, where each one is in the picture, and which
channels of an earlier layer a concept draws on. Concept Relevance Propagation (Achtibat et al., Nature Machine
Intelligence 2023, https://arxiv.org/abs/2206.03208) with the gradient rule instead of LRP.

With y the target's score, A (C, h, w) the layer's output and G = ∂y/∂A (both from the explainer's recorded pass,
G the gradient Grad-CAM takes: no extra forward pass):
- channel k's contribution is R_k = Σ_{h,w} A_k · G_k (gradient × activation);
- its conditional map is x ⊙ ∂/∂x Σ_{h,w} A_k · G_k with G held fixed, summed over the colour channels: where in
  the picture the channel's part of the decision comes from. The top channels' maps come from backward passes
  over the recorded graph, one batched pass on an accelerator, one per map on a CPU, where that is faster
  (`graph.input_maps`).
Identities: at a block output (every path from the input passes through it) the conditional maps of all channels
add up to the plain input × gradient x ⊙ ∂y/∂x, since Σ_k ∂/∂x Σ A_k G_k = Jᵀ G = ∂y/∂x. At the CAM layer (the
global average pool's input, followed by one Linear layer) G_k = w_k / (h·w), so R_k = w_k · mean_{h,w} A_k and the
contributions add up to the logit minus the bias.
Layers are read in their canonical C × h × w view (`layouts`): channels-last transposed, token layers as their patch
grid. Prefix tokens (a class token) are no place in the picture and are left out, so at a token layer whose class
token reaches the head later on (ViT with class-token pooling) the concepts hold only the part of the score that
flows through the patches; with patch-average pooling every path passes through the patches and both identities hold.

Sub-concepts of channel k at layer L, at an earlier layer L′ with output A′: the concept's relevance
Q = Σ_{h,w} A_k · G_k (G held fixed) flows back to L′ as G′ = ∂Q/∂A′, and sub-channel j's share is
R′_j = Σ A′_j · G′_j. (They add up to R_k only where the layers between carry no bias: a bias's part of
R_k comes from no channel of L′.) Their maps: x ⊙ ∂/∂x Σ A′_j · G′_j (G′ held fixed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import LayerError, MethodError
from ..models.bundle import ModelBundle
from ..recording import RecordedPass
from ..targets import Target, resolve_target
from . import groups as dff
from .graph import View, attached, gradient_at, input_maps
from .regions import Box, cell_weights, checked_box
from .results import ConceptResult, ranked, shares_of

DEFAULT_TOP = 8
MAX_TOP = 256  # maps per call: on resnet50 at 224 px each costs about one saliency backward pass (0.2 s CPU)


def concepts(
    bundle: ModelBundle,
    fp: RecordedPass,
    *,
    layer: str | None = None,
    target: int | Target | None = None,
    top: int = DEFAULT_TOP,
    region: Sequence[float] | None = None,
    groups: int | None = None,
) -> ConceptResult:
    """The concepts of `layer` for the target's score on the recorded one-image pass `fp` (see the module
    docstring). `layer` None: the CAM layer if the model has one, else the last layer Grad-CAM would pick.
    `region` (x0, y0, x1, y1), in pixels of the picture the model sees: the ranking of that part of the picture
    (`regions`), and the maps of what the channels take from it. `groups` (a number, default None): that many
    groups of channels (Deep Feature Factorization, `groups`) instead of single channels."""
    check_top(top)
    with fp.lock:
        name = layer or fp.trace.default_of_kind("cam_site") or fp.trace.default_of_kind("spatial")
        if name is None:
            raise LayerError("This model has no layer whose output forms a picture, so it has no concepts to show.")
        view = map_view(fp, name)
        size = (int(fp.x.shape[2]), int(fp.x.shape[3]))
        tgt = resolve_target(target, fp.output[:1], bundle.task, bundle.class_names)
        score = fp.score((tgt,))
        g = view(fp.gradient((tgt,), score, name))
        a = view(fp.value(name))
        notes = _reuse_notes(fp, name)
        box = checked_box(region, size) if region is not None else None
        if box is not None:
            g = g * cell_weights(box, size, (int(g.shape[2]), int(g.shape[3]))).to(g)
        per_channel = (a.double() * g.double()).sum(dim=(2, 3))[0]  # (C,)
        load: torch.Tensor | None = None
        if groups is not None:
            count, note = dff.checked_groups(groups, a.shape[1], a.shape[2] * a.shape[3])
            load = dff.loadings(a[0], count)
            notes += [note] if note else []
            notes += _lost_note(per_channel, load)
        units = per_channel if load is None else load.T @ per_channel  # (U,)
        order = ranked(units.cpu().numpy())
        shown = order[: min(top, len(order))]
        unit_weights = _unit_weights(shown, len(per_channel), load)  # (top, C)
        rows = g[None] * unit_weights.to(g)[:, None, :, None, None]  # (top, 1, C, h, w)
        maps, note = input_maps(fp.x, view(attached(fp, name)), rows)
    return _result(
        "channels" if load is None else "groups",
        name,
        tgt,
        units,
        order,
        maps,
        fp,
        score,
        bundle.name,
        notes + ([note] if note else []),
        region=box,
        loadings=None if load is None else load.cpu().numpy(),
    )


def sub_concepts(
    bundle: ModelBundle,
    fp: RecordedPass,
    layer: str,
    channel: int,
    lower_layer: str,
    *,
    target: int | Target | None = None,
    top: int = DEFAULT_TOP,
) -> ConceptResult:
    """The channels of `lower_layer` that channel `channel` of `layer` draws on for the target, ranked by the
    relevance that flows from them into it (see the module docstring); their maps as in `concepts`."""
    check_top(top)
    with fp.lock:
        view, lower_view = map_view(fp, layer), map_view(fp, lower_layer)
        tgt = resolve_target(target, fp.output[:1], bundle.task, bundle.class_names)
        score = fp.score((tgt,))
        g = view(fp.gradient((tgt,), score, layer))
        if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < g.shape[1]:
            raise LayerError(f"'{layer}' has channels 0 to {g.shape[1] - 1}; there is no channel {channel!r}.")
        picked = torch.zeros_like(g)
        picked[:, channel] = g[:, channel]
        upper = view(attached(fp, layer))
        raw = gradient_at(fp, lower_layer, upper, picked)
        if raw is None or not torch.is_tensor(raw):
            raise LayerError(
                f"'{lower_layer}' does not feed '{layer}' in this model, so '{layer}' draws nothing from it; pick a "
                "layer that runs before it."
            )
        g_lower = lower_view(raw)
        a_lower = lower_view(fp.value(lower_layer))
        units = (a_lower.double() * g_lower.double()).sum(dim=(2, 3))[0]
        order = ranked(units.cpu().numpy())
        shown = order[: min(top, len(order))]
        weights = _unit_weights(shown, len(units), None)
        rows = g_lower[None] * weights.to(g_lower)[:, None, :, None, None]
        maps, note = input_maps(fp.x, lower_view(attached(fp, lower_layer)), rows)
        notes = _reuse_notes(fp, layer) + _reuse_notes(fp, lower_layer) + ([note] if note else [])
    return _result(
        "channels",
        lower_layer,
        tgt,
        units,
        order,
        maps,
        fp,
        score,
        bundle.name,
        notes,
        parent=(layer, channel),
    )


def check_top(top: int) -> None:
    """A MethodError unless 0 <= top <= MAX_TOP (each map is one input-gradient backward pass); a `top` above the
    number of channels maps them all."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise MethodError(f"The number of concepts to map must be a whole number from 0 up; got {top!r}.")
    if top > MAX_TOP:
        raise MethodError(
            f"The number of concepts to map may be at most {MAX_TOP} (each map costs one backward pass: a bound on "
            f"the work of one call); got {top:,}."
        )


def map_view(fp: RecordedPass, layer: str) -> View:
    """The canonical (N, C, h, w) view of a layer's output (`layouts`); a LayerError with the reason for a layer
    that is unknown or whose output is not a map. Outputs overwritten in place are made recoverable first."""
    info = fp.trace.get(layer)  # a LayerError for an unknown name
    if not info.layout.is_map:
        why = info.layout.reason or "it has no height and width"
        raise LayerError(
            f"'{layer}' outputs {'×'.join(map(str, info.shape)) or 'no tensor'}, which is not a map: {why}. Concepts "
            "need a layer whose output forms a picture; pick another layer."
        )
    fp.refresh({layer})
    return info.layout.view


def _unit_weights(shown: np.ndarray, channels: int, load: torch.Tensor | None) -> torch.Tensor:
    """(top, C): for each shown unit, how much of each channel it takes (one-hot for channels, loadings for groups)."""
    if load is not None:
        return load.T[torch.as_tensor(shown, dtype=torch.long)]
    weights = torch.zeros((len(shown), channels), dtype=torch.float64)
    weights[torch.arange(len(shown)), torch.as_tensor(shown, dtype=torch.long)] = 1.0
    return weights


def _reuse_notes(fp: RecordedPass, layer: str) -> list[str]:
    """A note for a module that runs more than once (its last run is used, as the methods do)."""
    runs = len(fp.calls[layer])
    return [f"'{layer}' runs {runs} times; its last run is used."] if runs > 1 else []


def _lost_note(per_channel: torch.Tensor, load: torch.Tensor) -> list[str]:
    lost = per_channel[load.sum(dim=1) == 0]
    if not len(lost) or float(lost.abs().sum()) == 0.0:
        return []
    total = float(lost.sum())
    return [
        f"{len(lost)} channels are held by no group (never positive here, or left out by the factorisation); the groups add up to the total less their {total:+.4g}."
    ]


def _result(
    kind: str,
    layer: str,
    target: Target,
    units: torch.Tensor,
    order: np.ndarray,
    maps: torch.Tensor,
    fp: RecordedPass,
    score: torch.Tensor,
    model: str,
    notes: list[str],
    *,
    region: Box | None = None,
    parent: tuple[str, int] | None = None,
    loadings: np.ndarray | None = None,
) -> ConceptResult:
    contributions = units.cpu().numpy()
    return ConceptResult(
        kind="groups" if kind == "groups" else "channels",
        layer=layer,
        target=int(getattr(target, "index", getattr(target, "category", -1))),
        target_name=str(target.label),
        contributions=contributions,
        channels=order.astype(np.int64),
        shares=shares_of(contributions),
        maps=maps.detach().to(torch.float32).cpu().numpy(),
        image=fp.images[0],
        score=float(score.detach()),
        total=float(contributions.sum()),
        model=model,
        region=region,
        parent=parent,
        loadings=loadings,
        notes=tuple(notes),
    )
