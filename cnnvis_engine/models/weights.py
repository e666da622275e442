"""Getting weights: seeded random initialisation, the checkpoint cache, and plain-words download errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import ModelError

RANDOM_SEED = 0
RANDOM_DETAIL = f"random initialisation (torch.manual_seed({RANDOM_SEED}))"


def weights_cache_dir() -> Path:
    """Where torch.hub (and so torchvision and timm) keeps downloaded checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


@contextmanager
def seeded_init() -> Iterator[None]:
    """Make a model's random initialisation repeatable without changing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        yield


def checkpoint_filename(url: str) -> str:
    return Path(urlparse(url).path).name


def checkpoint_cached(url: str) -> bool:
    """Whether the checkpoint downloaded from `url` is already in the cache folder (a file check, no download)."""
    return (weights_cache_dir() / checkpoint_filename(url)).is_file()


def pretrained_error(name: str, url: str) -> ModelError:
    """The error for pretrained weights that could not be had; raise it `from` the cause."""
    cached = weights_cache_dir() / checkpoint_filename(url)
    if cached.is_file():
        return ModelError(
            f"The pretrained weights file {cached} for {name} could not be read. "
            "Delete it to download it again, or choose random weights."
        )
    return ModelError(
        f"Pretrained weights for {name} could not be downloaded (no internet connection?). "
        f"Put {cached.name} in {cached.parent}, or choose random weights."
    )


def load_checkpoint(name: str, url: str, download: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The state dict from the cache folder if the file is there, else from `download()`; ModelError on failure."""
    cached = weights_cache_dir() / checkpoint_filename(url)
    try:
        if cached.is_file():
            state: dict[str, torch.Tensor] = torch.load(cached, map_location="cpu", weights_only=True)
            return state
        return download()
    except Exception as exc:  # URLError, OSError, hash mismatch, corrupt file: all mean "no weights"
        raise pretrained_error(name, url) from exc
