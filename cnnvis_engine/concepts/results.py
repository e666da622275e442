"""What a concepts call returns: one frozen dataclass for channels, groups of channels and sub-concepts, so a page
draws them all the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ConceptKind = Literal["channels", "groups"]


@dataclass(frozen=True)
class ConceptResult:
    """The concepts (channels, or groups of channels) of `layer` that the target's score rests on, for one image.

    `contributions` (U,): per unit (channel, or group for `kind="groups"`), its contribution R_u to the target's
    score, in the unit's own order (index u). `channels` (U,): the unit indices ranked by contribution, highest
    first. `shares` (U,): R_u / (sum of the positive R) for positive units, R_u / |sum of the negative R| for
    negative ones (so the positive shares add up to 1 and the negative ones to -1; 0 for a unit with R_u = 0).
    `maps` (top, H, W) float32: the conditional map of `channels[:top]`, in that order, at the input's
    resolution (summed over its colour channels; signed). `image` (H, W, 3) uint8: the input as the model saw it.

    `region` is the box (x0, y0, x1, y1) in pixels of `image` the ranking was restricted to (None: the whole
    picture). `parent` is (layer, channel) of the concept whose sub-concepts these are (None for concepts of
    the score). `loadings` (C, U) for groups: each channel's share in each group (rows add up to 1, or to 0 for
    a channel no group loads); None for channels. `score` is the target's score; `total` the sum of
    `contributions`."""

    kind: ConceptKind
    layer: str
    target: int  # the class index (or output index) explained
    target_name: str
    contributions: np.ndarray
    channels: np.ndarray
    shares: np.ndarray
    maps: np.ndarray
    image: np.ndarray
    score: float
    total: float
    model: str = ""
    region: tuple[float, float, float, float] | None = None
    parent: tuple[str, int] | None = None
    loadings: np.ndarray | None = None
    notes: tuple[str, ...] = ()

    @property
    def top(self) -> int:
        """How many units have a conditional map (the first `top` of `channels`)."""
        return int(self.maps.shape[0])

    def positive(self) -> list[int]:
        """The units that speak for the target, highest contribution first."""
        return [int(u) for u in self.channels if self.contributions[u] > 0]

    def negative(self) -> list[int]:
        """The units that speak against the target, most negative first."""
        return [int(u) for u in self.channels[::-1] if self.contributions[u] < 0]


def shares_of(contributions: np.ndarray) -> np.ndarray:
    """Positive contributions as shares of the positive total, negative ones of the negative total, kept apart."""
    values = np.asarray(contributions, dtype=np.float64)
    positive, negative = values[values > 0].sum(), -values[values < 0].sum()
    shares = np.zeros_like(values)
    if positive > 0:
        shares[values > 0] = values[values > 0] / positive
    if negative > 0:
        shares[values < 0] = values[values < 0] / negative
    return shares


def ranked(contributions: np.ndarray) -> np.ndarray:
    """Unit indices by contribution, highest first (ties by index, so the order is deterministic)."""
    return np.lexsort((np.arange(len(contributions)), -np.asarray(contributions, dtype=np.float64)))
