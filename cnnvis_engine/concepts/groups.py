"""Groups of channels: Deep Feature Factorization (Collins, Achanta and Süsstrunk, ECCV 2018,
https://arxiv.org/abs/1806.10206) — a non-negative factorisation of a layer's activations.

The layer's activations, made non-negative (ReLU) and laid out as channels × positions V (C, P), are factorised
as V ≈ W H with W (C, G) and H (G, P) non-negative, by Lee and Seung's multiplicative updates from an SVD-based start (NNDSVDa, Boutsidis and Gallopoulos 2008:
deterministic, so the same groups every time). Channel k's reconstructed activation splits over the groups as W_kg · Σ_p H_gp; its
`loadings` are those parts as fractions (each row adds up to 1). A group's contribution is Σ_k loading_kg · R_k.

Where this loses the exact sum: a channel counts towards its groups by how its activation splits, not by where its
relevance lies, so a group's contribution is an attribution by proportion; and a channel that no group loads (never
positive at this layer: dead, or a layer before its ReLU) gives its contribution to no group, so the groups then
add up to the total less those channels' contributions (the result's notes say how much)."""

from __future__ import annotations

import torch

from ..errors import MethodError

DEFAULT_GROUPS = 6
MAX_GROUPS = 64  # a bound on the factorisation's work (200 updates of C × P × G)
ITERATIONS = 200
EPSILON = 1e-12


def checked_groups(groups: int, channels: int, positions: int) -> tuple[int, str]:
    """The number of groups to factorise into, at most min(channels, positions), and a note if it was cut."""
    if isinstance(groups, bool) or not isinstance(groups, int) or not 1 <= groups <= MAX_GROUPS:
        raise MethodError(f"The number of groups must be a whole number from 1 to {MAX_GROUPS}; got {groups!r}.")
    most = min(channels, positions)
    if groups <= most:
        return groups, ""
    return (
        most,
        f"{groups} groups were asked for, but this layer's {channels} channels × {positions} positions allow {most}.",
    )


def loadings(activation: torch.Tensor, groups: int) -> torch.Tensor:
    """(C, G) float64: each channel's split over `groups` non-negative factors of ReLU(activation) (C, h, w);
    rows add up to 1, or are 0 for a channel no group holds (never positive, or left out by the factorisation)."""
    v = activation.detach().to(torch.float64).clamp(min=0).flatten(1)
    w, h = _nndsvd(v, groups)
    for _ in range(ITERATIONS):
        h = h * (w.T @ v) / (w.T @ w @ h + EPSILON)
        w = w * (v @ h.T) / (w @ (h @ h.T) + EPSILON)
    parts = w * h.sum(dim=1)[None, :]
    totals = parts.sum(dim=1, keepdim=True)
    return torch.where(totals > EPSILON, parts / totals.clamp(min=EPSILON), torch.zeros_like(parts))


def _nndsvd(v: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """NNDSVDa's start (C, G), (G, P) for V (C, P): each singular pair's larger non-negative part, zeros filled with
    V's mean (so multiplicative updates can move them)."""
    u, s, vt = torch.linalg.svd(v, full_matrices=False)
    w, h = v.new_zeros((v.shape[0], groups)), v.new_zeros((groups, v.shape[1]))
    for j in range(groups):
        x, y = u[:, j], vt[j]
        pairs = [(x.clamp(min=0), y.clamp(min=0)), ((-x).clamp(min=0), (-y).clamp(min=0))]
        a, b = max(pairs, key=lambda p: float(p[0].norm() * p[1].norm()))
        norm = float(a.norm() * b.norm())
        if norm > 0:
            w[:, j] = (s[j] * norm).sqrt() * a / a.norm()
            h[j] = (s[j] * norm).sqrt() * b / b.norm()
    fill = float(v.mean()) if float(v.mean()) > 0 else EPSILON
    return torch.where(w > 0, w, torch.full_like(w, fill)), torch.where(h > 0, h, torch.full_like(h, fill))
