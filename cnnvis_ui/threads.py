"""What the server's many threads cost, kept in check: how many threads torch's CPU work may use, shared among the
browser sessions computing at once, and glibc's per-thread malloc arenas (`tune_malloc`).

torch starts with one intra-op thread per core, which suits one program alone on a machine, not a server: with
another CPU-bound process on one of two cores, two torch threads wait on each other at every parallel step (the
channel gallery took 120-177 s instead of 2.2 s, 3.3 s with one thread). So the server keeps a budget of threads,
one core fewer than it has (at least 1), or `CNNVIS_TORCH_THREADS` when set, and each heavy call gets an equal
share of the budget among the sessions computing as it starts (`budget // busy`, at least 1). torch's setting
belongs to the calling thread (OpenMP's), and Streamlit runs each script run on a thread of its own, so each call
sets its own thread's count; a run makes several such calls, so shares follow the number of busy sessions.

No streamlit here: the bench (bench/threads_bench.py) uses the same policy.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import torch

ENV = "CNNVIS_TORCH_THREADS"  # the server's thread budget, overriding cores - 1

P = ParamSpec("P")
R = TypeVar("R")


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and `taskset` narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def budget(environ: dict[str, str] | None = None) -> int:
    """`CNNVIS_TORCH_THREADS` if it is a whole number >= 1, else one core fewer than there are (at least 1): the
    spare core keeps the server's own threads and the machine's other work from stalling torch's."""
    text = (os.environ if environ is None else environ).get(ENV, "").strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    return max(1, cores() - 1)


def share(busy: int, total: int) -> int:
    """Threads for each of `busy` sessions computing at once out of `total`."""
    return max(1, total // max(1, busy))


class ThreadPolicy:
    """Counts the threads inside a heavy call (each counted once, however deeply calls nest) and sets torch's
    intra-op threads to their share of the budget."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.busy = 0
        self._lock = threading.Lock()
        self._depth = threading.local()

    @contextmanager
    def computing(self) -> Iterator[int]:
        """Around one session's heavy torch work; yields the share it starts with."""
        depth = getattr(self._depth, "value", 0)
        self._depth.value = depth + 1
        if depth:
            try:
                yield torch.get_num_threads()
            finally:
                self._depth.value = depth
            return
        with self._lock:
            self.busy += 1
            threads = share(self.busy, self.total)
        torch.set_num_threads(threads)  # for this thread: torch's intra-op setting belongs to the calling thread
        try:
            yield threads
        finally:
            self._depth.value = 0
            with self._lock:
                self.busy -= 1


@functools.cache
def policy() -> ThreadPolicy:
    """The process's one policy, with the budget read once."""
    return ThreadPolicy(budget())


def sized(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: run `func` as one session's share of the thread budget."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with policy().computing():
            return func(*args, **kwargs)

    return wrapper


def tune_malloc(arenas: int = 2, mmap_threshold: int = 1 << 20) -> None:
    """Keep the server's resident memory near its working set (glibc only; a no-op elsewhere).

    Streamlit runs every script run on a fresh thread and glibc gives threads their own malloc arenas (up to 8 per
    core), so tensors freed by one run are not reused by the next. And glibc raises its mmap threshold after large
    frees, so later activation tensors (1–30 MB) come from arenas that never shrink. Capping the arenas (like
    MALLOC_ARENA_MAX=2) and fixing the threshold at 1 MiB (like MALLOC_MMAP_THRESHOLD_) returns big tensors to the
    system when freed: measured here, peak RSS with the default model and resnet50 fell from about 1.9 to 1.5 GB.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, arenas)
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3  # glibc malloc.h
_M_ARENA_MAX = -8
