"""What a feature visualisation returns: its settings (a cache key), its images and history, and the
`Cancelled` error that carries what was made before the caller said stop."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import EngineError
from .transforms import TransformSettings


class Cancelled(EngineError):
    """The caller's `cancel()` said stop. `partial` holds what was made so far (a FeatureVisResult with
    `cancelled=True`, or DeepDream's uint8 image); the model is as it was."""

    def __init__(self, message: str, partial: object = None) -> None:
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True)
class FeatureVisSettings:
    """Everything that determines a feature visualisation (with the model's weights): a cache key."""

    model: str
    objective: str
    size: tuple[int, int]  # (height, width)
    steps: int
    lr: float
    seed: int
    batch: int = 1  # images optimised together (a gallery renders its channels as one batch)
    diversity: float = 0.0
    transforms: TransformSettings = field(default_factory=TransformSettings)


@dataclass(frozen=True)
class FeatureVisResult:
    """`images`: (N, H, W, 3) uint8. `history`: (steps_done, N) float32, the objective on each step's random
    view. `scores`: (N,) the objective (without any diversity term) on the final uint8 images, unjittered."""

    images: np.ndarray
    history: np.ndarray
    scores: np.ndarray
    settings: FeatureVisSettings
    steps_done: int
    cancelled: bool = False

    @property
    def image(self) -> np.ndarray:
        """The first image, (H, W, 3) uint8."""
        return np.asarray(self.images[0])

    @property
    def objective_values(self) -> list[float]:
        """Per step, the objective averaged over the batch."""
        return [float(v) for v in self.history.mean(axis=1)] if self.history.size else []
