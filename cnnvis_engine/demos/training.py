"""A small, seeded training loop shared by the demo recipes (Adam, cosine learning rate, fixed batches)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..models.bundle import ModelBundle

Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class TrainLog:
    steps: int
    batch_size: int
    seconds: float  # wall clock
    cpu_seconds: float  # process CPU time (all threads): what the training cost, however busy the machine was
    first_loss: float
    last_loss: float  # mean over the last 20 steps


def to_inputs(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, normalised as `ModelBundle.prepare` does with
    `DEMO_NORMALIZATION` (RGB / 255 mapped from [0, 1] to [-1, 1])."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - 0.5) / 0.5


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    augment: Augment | None = None,
) -> TrainLog:
    """Train `model` in place for `steps` Adam steps on shuffled batches, then leave it in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=max(steps, 1), pct_start=0.15)
    model.train()
    losses: list[float] = []
    order = torch.randperm(len(inputs), generator=generator)
    cursor = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = torch.randperm(len(inputs), generator=generator), 0
        index = order[cursor : cursor + batch_size]
        cursor += batch_size
        x, y = inputs[index], targets[index]
        if augment is not None:
            x, y = augment(x, y, generator)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.eval()
    for p in model.parameters():
        p.grad = None
    tail = losses[-20:] or [float("nan")]
    return TrainLog(
        steps,
        batch_size,
        time.perf_counter() - start,
        time.process_time() - cpu_start,
        losses[0] if losses else float("nan"),
        float(np.mean(tail)),
    )


def flip_images(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror half the batch left-right (labels unchanged)."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x = x.clone()
    x[flip] = x[flip].flip(-1)
    return x, y


def flip_images_and_masks(
    x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror half the batch left-right, masks (N, H, W) with their images."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    x, y = x.clone(), y.clone()
    x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
    return x, y


@torch.no_grad()
def predict_batches(model: nn.Module | ModelBundle, inputs: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """The model's outputs for all `inputs` (N, 3, H, W), `batch_size` at a time, without gradients, through
    `ModelBundle.run` (a shared bundle's lock held per batch). A bare module, one being trained or checked
    that no one else holds, runs as an unshared bundle of its own."""
    bundle = model if isinstance(model, ModelBundle) else ModelBundle(type(model).__name__, model, ())
    batches = inputs.split(batch_size)
    return torch.cat(
        [bundle.run(batch, failed_on=f"a batch of {len(batch)} pictures", fast=False) for batch in batches]
    )
