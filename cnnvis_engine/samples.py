"""The sample photos bundled in assets/samples/ (copied from scikit-image; see ATTRIBUTION.md there)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ImageError

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"


@dataclass(frozen=True)
class Sample:
    """One bundled photo: its key, a title to show, its file and its credit line."""

    key: str
    title: str
    path: Path
    credit: str


_SAMPLES = (
    Sample("cat", "Chelsea the cat", SAMPLES_DIR / "cat.jpg", "Stefan van der Walt, CC0"),
    Sample("coffee", "Coffee cup", SAMPLES_DIR / "coffee.jpg", "Rachel Michetti (Pikolo Espresso Bar), CC0"),
    Sample("astronaut", "Astronaut Eileen Collins", SAMPLES_DIR / "astronaut.jpg", "NASA, public domain"),
    Sample("rocket", "Falcon 9 launching DSCOVR", SAMPLES_DIR / "rocket.jpg", "SpaceX, public domain"),
)


def list_samples() -> list[Sample]:
    """The bundled samples in display order: cat, coffee, astronaut, rocket."""
    return list(_SAMPLES)


def sample_path(key: str) -> Path:
    """The file of the sample called `key`; raises ImageError naming the known keys if there is none."""
    for sample in _SAMPLES:
        if sample.key == key:
            return sample.path
    known = ", ".join(sample.key for sample in _SAMPLES)
    raise ImageError(f"There is no sample photo called {key!r}; choose one of {known}.")
