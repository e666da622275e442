"""Synthetic seismic sections with salt bodies, for the salt-segmentation U-Net.

A section is a grey image of sedimentary reflectors: a random reflectivity series along depth, convolved with
a Ricker wavelet, laid along gently folded horizons (and sometimes a fault). Salt is a blob-shaped body,
often rising from the bottom like a diapir, where the layering stops: inside it the image is weak and chaotic,
and its top is a strong reflection. The mask marks the salt pixels (1) and the sediment (0), like the TGS
Salt Identification Challenge data the article's U-Net was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SALT_CLASSES = ("sediment", "salt")


@dataclass(frozen=True)
class SaltSection:
    image: np.ndarray  # (H, W, 3) uint8, grey
    mask: np.ndarray  # (H, W) uint8: 1 = salt


@dataclass(frozen=True)
class SaltDataset:
    images: np.ndarray  # (N, H, W, 3) uint8
    masks: np.ndarray  # (N, H, W) int64


def draw_salt_section(rng: np.random.Generator, *, size: int = 64, salt_probability: float = 0.9) -> SaltSection:
    """One `size`×`size` section and its salt mask."""
    amplitude = _layers(rng, size)
    mask = _salt_mask(rng, size) if rng.random() < salt_probability else np.zeros((size, size), np.uint8)
    if mask.any():
        chaos = cv2.GaussianBlur(rng.normal(0, 1, (size, size)).astype(np.float32), (0, 0), rng.uniform(0.8, 1.6))
        chaos *= rng.uniform(0.15, 0.30) / (chaos.std() + 1e-6)
        soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.8)
        amplitude = amplitude * (1 - soft) + chaos * soft
        top = _top_edge(mask)
        amplitude += rng.uniform(0.6, 1.0) * cv2.GaussianBlur(top, (0, 0), 0.7) * rng.choice([-1, 1])
    amplitude += rng.normal(0, rng.uniform(0.04, 0.10), amplitude.shape)
    grey = np.clip(128 + 100 * amplitude * rng.uniform(0.8, 1.1), 0, 255).round().astype(np.uint8)
    return SaltSection(image=np.repeat(grey[:, :, None], 3, axis=2), mask=mask)


def salt_dataset(count: int, seed: int, *, size: int = 64) -> SaltDataset:
    sections = [draw_salt_section(np.random.default_rng([seed, i]), size=size) for i in range(count)]
    return SaltDataset(
        images=np.stack([s.image for s in sections]),
        masks=np.stack([s.mask for s in sections]).astype(np.int64),
    )


def _layers(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size) float amplitudes of folded, layered sediment in about [-1, 1]."""
    length = 4 * size
    spikes = rng.normal(0, 1, length) * (rng.random(length) < rng.uniform(0.15, 0.35))
    t = np.arange(-12, 13)
    f = rng.uniform(0.10, 0.20)  # the wavelet's peak frequency, cycles per pixel
    ricker = (1 - 2 * (np.pi * f * t) ** 2) * np.exp(-((np.pi * f * t) ** 2))
    trace = np.convolve(spikes, ricker, mode="same")
    trace /= np.abs(trace).max() + 1e-6
    x = np.arange(size)[None, :] / size
    y = np.arange(size)[:, None].astype(np.float64)
    depth = y * rng.uniform(0.8, 1.3) + rng.uniform(-0.25, 0.25) * size * x  # dip
    for _ in range(rng.integers(1, 4)):  # folds, stronger with depth
        depth += rng.uniform(1, 6) * (0.4 + y / size) * np.sin(2 * np.pi * (rng.uniform(0.3, 1.8) * x + rng.random()))
    if rng.random() < 0.4:  # a fault: one side slipped along a tilted line
        side = (x * size - size * rng.uniform(0.2, 0.8) - rng.uniform(-0.5, 0.5) * y) > 0
        depth = depth + side * rng.uniform(3, 9)
    depth += size
    amplitude = np.interp(depth, np.arange(length), trace)
    lateral = 1 + 0.25 * np.sin(2 * np.pi * (rng.uniform(0.2, 1.0) * x + rng.random()))
    return (amplitude * lateral).astype(np.float32)


def _salt_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A lumpy blob, half the time joined to the bottom edge by a stem (a diapir)."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.15, 0.85) * size, rng.uniform(0.3, 0.85) * size
    radius = rng.uniform(0.12, 0.30) * size
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    r = np.ones_like(angles)
    for k in range(2, 6):
        r += rng.uniform(0, 0.25 / k * 2) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    pts = np.stack([cx + radius * r * np.cos(angles) * rng.uniform(1.0, 1.6), cy + radius * r * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [pts.round().astype(np.int32)], 1)
    if rng.random() < 0.5:
        half = radius * rng.uniform(0.4, 0.8)
        stem = np.array([[cx - half, cy], [cx + half, cy], [cx + half * 1.4, size], [cx - half * 1.4, size]])
        cv2.fillPoly(mask, [stem.round().astype(np.int32)], 1)
    return mask


def _top_edge(mask: np.ndarray) -> np.ndarray:
    """(H, W) float: 1 on the salt pixels whose upper neighbour is sediment (the salt's top reflection)."""
    above = np.zeros_like(mask)
    above[1:] = mask[:-1]
    return np.asarray((mask == 1) & (above == 0), np.float32)
