"""What to maximise: small callables that turn one forward pass into one score per image, as Lucid's
`objectives` (https://github.com/tensorflow/lucid/blob/master/lucid/optvis/objectives.py).

An `Objective` names the layers whose outputs it reads (only those are captured) and maps
`(activations: {layer: (N, C, h, w) or (N, C)}, output: (N, K))` to scores `(N,)`. Objectives add, subtract
and scale (`channel(l, 3) - channel(l, 7)`, `obj - 10 * diversity(l)`); `name` describes the objective
exactly, so it can key a cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import MethodError

Activations = Mapping[str, torch.Tensor]
ScoreFn = Callable[[Activations, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Objective:
    """`score(activations, output) -> (N,)`, to be maximised; `layers` are the ones it reads."""

    name: str
    layers: frozenset[str]
    score: ScoreFn

    def __call__(self, activations: Activations, output: torch.Tensor) -> torch.Tensor:
        return self.score(activations, output)

    def __add__(self, other: Objective) -> Objective:
        return Objective(
            f"{self.name} + {other.name}", self.layers | other.layers, lambda a, o: self(a, o) + other(a, o)
        )

    def __sub__(self, other: Objective) -> Objective:
        return Objective(
            f"{self.name} - {other.name}", self.layers | other.layers, lambda a, o: self(a, o) - other(a, o)
        )

    def __mul__(self, weight: float) -> Objective:
        weight = float(weight)
        return Objective(f"{weight:g} * ({self.name})", self.layers, lambda a, o: weight * self(a, o))

    __rmul__ = __mul__

    def __neg__(self) -> Objective:
        return Objective(f"-({self.name})", self.layers, lambda a, o: -self(a, o))


def _channel_maps(activations: Activations, layer: str, index: int | torch.Tensor) -> torch.Tensor:
    """Channel `index` of `layer`, (N, h, w) or (N,); `index` may be one channel per image, (N,)."""
    value = activations[layer]
    channels = value.shape[1] if value.dim() >= 2 else 0
    top = int(index.max()) if isinstance(index, torch.Tensor) else int(index)
    if value.dim() not in (2, 4) or not 0 <= top < channels:
        shape = "×".join(map(str, value.shape[1:]))
        raise MethodError(
            f"The layer '{layer}' outputs shape {shape}, so it has no channel {top}; pick one from 0 to {channels - 1}."
            if value.dim() in (2, 4)
            else f"The layer '{layer}' outputs shape {shape}, not channels (× height × width)."
        )
    if isinstance(index, torch.Tensor):
        return value[torch.arange(value.shape[0], device=value.device), index.to(value.device)]
    return value[:, index]


def channel(layer: str, index: int) -> Objective:
    """Mean activation of one channel over all positions: mean_{y,x} A[n, c, y, x]."""

    def score(a: Activations, o: torch.Tensor) -> torch.Tensor:
        maps = _channel_maps(a, layer, index)
        return maps.flatten(1).mean(dim=1) if maps.dim() > 1 else maps

    return Objective(f"channel({layer}, {index})", frozenset({layer}), score)


def channels_per_image(layer: str, indices: Sequence[int]) -> Objective:
    """Image n maximises channel `indices[n]` (a gallery rendered as one batch); the batch must match."""
    picked = torch.tensor(list(indices), dtype=torch.long)

    def score(a: Activations, o: torch.Tensor) -> torch.Tensor:
        maps = _channel_maps(a, layer, picked)
        return maps.flatten(1).mean(dim=1) if maps.dim() > 1 else maps

    return Objective(f"channels({layer}, {list(indices)})", frozenset({layer}), score)


def neuron(layer: str, index: int) -> Objective:
    """One channel at the centre position: A[n, c, h // 2, w // 2]."""

    def score(a: Activations, o: torch.Tensor) -> torch.Tensor:
        maps = _channel_maps(a, layer, index)
        return maps[:, maps.shape[1] // 2, maps.shape[2] // 2] if maps.dim() == 3 else maps

    return Objective(f"neuron({layer}, {index})", frozenset({layer}), score)


def class_logit(index: int) -> Objective:
    """The model's output (pre-softmax logit) for class `index`: output[n, k]."""

    def score(a: Activations, o: torch.Tensor) -> torch.Tensor:
        if o.dim() != 2 or not 0 <= index < o.shape[1]:
            count = o.shape[1] if o.dim() == 2 else "no"
            raise MethodError(f"The model has {count} class outputs; there is no class {index}.")
        return o[:, index]

    return Objective(f"class_logit({index})", frozenset(), score)


def channel_difference(layer: str, index: int, other: int, other_layer: str | None = None) -> Objective:
    """ "This channel minus that one": channel(layer, index) - channel(other_layer or layer, other)."""
    return channel(layer, index) - channel(other_layer or layer, other)


def diversity(layer: str) -> Objective:
    """Per image, the summed cosine similarity of its Gram matrix G_n = A_n A_nᵀ (channels × channels) to the
    other images' in the batch, divided by N (Lucid's `diversity`). Subtract it to push a batch apart:
    `channel(l, c) - w * diversity(l)`. Zero for a batch of one."""

    def score(a: Activations, o: torch.Tensor) -> torch.Tensor:
        value = a[layer]
        if value.dim() != 4:
            shape = "×".join(map(str, value.shape[1:]))
            raise MethodError(
                f"Diversity compares feature maps; the layer '{layer}' outputs shape {shape}, "
                "not channels × height × width."
            )
        flat = value.flatten(2)  # (N, C, h*w)
        grams = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).flatten(1), dim=1)  # (N, C*C)
        similarity = grams @ grams.T
        count = value.shape[0]
        return (similarity.sum(dim=1) - similarity.diagonal()) / count

    return Objective(f"diversity({layer})", frozenset({layer}), score)


def squared_norm(layer: str) -> Objective:
    """DeepDream's objective (Mordvintsev et al. 2015): the layer's mean squared activation,
    ||A_n||² / (C·h·w) — whatever the layer already sees, amplified."""

    def score(a: Activations, o: torch.Tensor) -> torch.Tensor:
        return a[layer].flatten(1).pow(2).mean(dim=1)

    return Objective(f"squared_norm({layer})", frozenset({layer}), score)
