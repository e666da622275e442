"""What the perturbation and noise methods share: option checks, chunks of extra forward passes, the target
score of every item of a chunk, and seeded noise.

An extra pass runs M items laid out sample-major (all items of image 0, then of image 1, ...); `owners` (M,)
says which image each item belongs to, so a chunk may cross image boundaries and still be scored with each
image's own target.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from .base import MethodInputs
from .base import read_option as option

MAX_INTERNAL_BATCH = 1024  # items per extra forward pass: 1024 × 3 × 224 × 224 float32 inputs are 616 MB


def batch_size(inputs: MethodInputs, grad: bool) -> int:
    """Images per extra forward pass: `internal_batch_size`, by default 256 (GPU) or 64 (CPU) without gradients
    and 128 or 16 for passes that keep their graph for a backward pass."""
    gpu = inputs.x.device.type == "cuda"
    default = (128 if gpu else 16) if grad else (256 if gpu else 64)
    return int(option(inputs, "internal_batch_size", default, high=MAX_INTERNAL_BATCH))


def chunks(total: int, size: int) -> Iterator[torch.Tensor]:
    """Index ranges [a, b) of at most `size` items covering 0..total-1, as (b - a,) long tensors on the CPU."""
    for start in range(0, total, size):
        yield torch.arange(start, min(start + size, total))


def item_scores(inputs: MethodInputs, output: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
    """(M, ...) outputs of sample-major items and their (M,) sorted image indices -> (M,) target scores."""
    counts = torch.bincount(owners.cpu(), minlength=len(inputs.targets)).tolist()
    parts = torch.split(output, counts)
    return torch.cat([inputs.targets[n].score(part) for n, part in enumerate(parts) if len(part)])


def seeded_noise(inputs: MethodInputs, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SmoothGrad's noise: ε (samples, C, H, W) ~ N(0, 1) drawn on the CPU from `seed` (default 0), the same for
    every image (so a batch gives each image exactly its single-image result, on any device), and σ (N,) =
    `noise` (default 0.15) × (max − min) of each image's input tensor (Smilkov et al.'s noise level)."""
    level = option(inputs, "noise", 0.15, float, 0.0)
    seed = int(option(inputs, "seed", 0, int, 0))
    generator = torch.Generator().manual_seed(seed)
    epsilon = torch.randn((samples, *inputs.x.shape[1:]), generator=generator).to(inputs.x.device)
    flat = inputs.x.flatten(1)
    return epsilon, level * (flat.amax(dim=1) - flat.amin(dim=1))


def noisy_items(
    inputs: MethodInputs, epsilon: torch.Tensor, sigma: torch.Tensor, items: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Items (sample-major, `len(epsilon)` per image) -> (their noisy inputs x_n + σ_n·ε_i, their owners n)."""
    owners, draws = items // len(epsilon), items % len(epsilon)
    owners_device = owners.to(inputs.x.device)
    noisy = inputs.x[owners_device] + sigma[owners_device].view(-1, 1, 1, 1) * epsilon[draws.to(inputs.x.device)]
    return noisy, owners
