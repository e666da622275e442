"""The reference index's data: per layer and channel, the top pictures by activation (ActMax) and by contribution
(RelMax), and the questions asked of them (`ReferenceIndex.top`, `.classes`, `.channels_by_contribution`). Built by
`reference.reference_index`, stored by `reference_store`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from ..audit.dataset import Skipped
from ..errors import EngineError
from .receptive import Box, ReceptiveField
from .reference_set import ReferenceSet

Ranking = Literal["activation", "contribution"]
FORMAT = 1  # of the stored file; part of the fingerprint


class ConceptsError(EngineError):
    """A concepts analysis cannot run as asked (no layers, a bad setting, a model it cannot reach)."""


class TopImage(NamedTuple):
    image: int  # index into the reference set
    score: float  # the activation maximum or the contribution
    box: Box  # (left, top, right, bottom) in model-input pixels: the receptive field around the maximum


@dataclass
class LayerTops:
    """One layer's top pictures per channel, best first: (K, top) arrays; image -1 where fewer were seen."""

    receptive: ReceptiveField
    total: np.ndarray  # (K,) float64: Σ over the pictures of each channel's contribution
    scores: dict[str, np.ndarray]  # by ranking: (K, top) float32
    images: dict[str, np.ndarray]  # by ranking: (K, top) int64
    positions: dict[str, np.ndarray]  # by ranking: (K, top) int64, flat positions on `receptive.grid`

    @classmethod
    def empty(cls, receptive: ReceptiveField, channels: int, top: int) -> LayerTops:
        return cls(
            receptive,
            np.zeros(channels),
            {r: np.full((channels, top), -np.inf, np.float32) for r in RANKINGS},
            {r: np.full((channels, top), -1, np.int64) for r in RANKINGS},
            {r: np.zeros((channels, top), np.int64) for r in RANKINGS},
        )

    @property
    def channels(self) -> int:
        return len(self.total)

    def merge(self, ranking: str, images: np.ndarray, scores: np.ndarray, positions: np.ndarray) -> None:
        """Add a batch's (B,) images with their (B, K) scores and positions; keep the best `top` per channel,
        ties to the lower image index (so any batch order gives the same tops)."""
        top = self.scores[ranking].shape[1]
        all_scores = np.concatenate([self.scores[ranking], scores.T.astype(np.float32)], axis=1)
        all_images = np.concatenate([self.images[ranking], np.broadcast_to(images, scores.T.shape)], axis=1)
        all_positions = np.concatenate([self.positions[ranking], positions.T], axis=1)
        unseen = np.where(all_images < 0, np.iinfo(np.int64).max, all_images)
        order = np.lexsort((unseen, -all_scores), axis=-1)[:, :top]
        self.scores[ranking] = np.take_along_axis(all_scores, order, axis=1)
        self.images[ranking] = np.take_along_axis(all_images, order, axis=1)
        self.positions[ranking] = np.take_along_axis(all_positions, order, axis=1)


RANKINGS: tuple[Ranking, ...] = ("activation", "contribution")


@dataclass
class ReferenceIndex:
    """The top reference pictures of every channel of `layers` (see the module's docstring)."""

    names: tuple[str, ...]  # the reference pictures, in order
    predicted: np.ndarray  # (N,) int64: each picture's top-1 class, -1 where it could not be read
    class_names: tuple[str, ...]
    layers: dict[str, LayerTops]
    fingerprint: str
    skipped: tuple[Skipped, ...] = ()
    reference: ReferenceSet | None = None  # the pictures themselves (not stored)
    from_cache: bool = False  # opened from the stored file, nothing run
    forward_passes: int = field(default=0, compare=False)  # batches this call ran (0 when opened)

    def tops(self, layer: str) -> LayerTops:
        if layer not in self.layers:
            raise ConceptsError(f"The index has no layer '{layer}'; it holds {', '.join(self.layers)}.")
        return self.layers[layer]

    def top(self, layer: str, channel: int, by: Ranking = "activation") -> list[TopImage]:
        """Channel `channel`'s top pictures at `layer` by "activation" (ActMax) or "contribution" (RelMax), best
        first, each with its score and the channel's receptive field around where it was largest."""
        tops = self.tops(layer)
        if by not in RANKINGS:
            raise ConceptsError(f"Rank the pictures by 'activation' or 'contribution', not {by!r}.")
        if not 0 <= channel < tops.channels:
            raise ConceptsError(f"'{layer}' has channels 0 to {tops.channels - 1}; there is no channel {channel}.")
        return [
            TopImage(int(image), float(score), tops.receptive.around(int(position)))
            for image, score, position in zip(
                tops.images[by][channel], tops.scores[by][channel], tops.positions[by][channel]
            )
            if image >= 0
        ]

    def classes(self, layer: str, channel: int, most: int = 3) -> list[tuple[int, int]]:
        """The classes channel `channel` serves most: (class index, count) among the predicted classes of its
        RelMax top pictures, most frequent first (ties to the lower class index)."""
        predicted = [int(self.predicted[t.image]) for t in self.top(layer, channel, "contribution")]
        counts = np.bincount(np.array([p for p in predicted if p >= 0], np.int64), minlength=1)
        ranked = sorted((int(c) for c in np.flatnonzero(counts)), key=lambda c: (-int(counts[c]), c))
        return [(c, int(counts[c])) for c in ranked[:most]]

    def channels_by_contribution(self, layer: str, count: int) -> list[int]:
        """The `count` channels of `layer` with the largest total contribution over the reference set."""
        total = self.tops(layer).total
        return [int(c) for c in np.lexsort((np.arange(len(total)), -total))[:count]]

    def class_name(self, index: int) -> str:
        return self.class_names[index] if 0 <= index < len(self.class_names) else f"class {index}"
