"""Progress bars for the commands: tqdm on stderr, fed by the engine's `progress(done, total)` callbacks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(total: int, unit: str = "image") -> Iterator[Callable[[int, int], None]]:
    """`with progress_bar(total) as progress:` then `progress(done, total)` as work completes; the bar closes on
    leaving, also when the work raises."""
    with tqdm(total=total, unit=unit, file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            if total != bar.total:
                bar.total = total
            bar.update(done - bar.n)

        yield progress
