"""Each class's analysis in parallel (issue 24): clustering, verdict and layout of one class need nothing from
another, so the classes of an audit run side by side — in local processes, or as Ray tasks with `engine="ray"`.

Local processes are started with `spawn` (a fresh interpreter: no copy of the caller's threads, locks or a model
held by a server), at most `cores − 1` of them, each with one BLAS/OpenMP thread so they do not fight over the
cores. A worker costs a second or two to start (it imports numpy, scikit-learn and the engine), so an audit stays
in the calling process when there is one class, one core, or too few maps in all to win that back
(`workers_for`). Results are the serial ones: every job is seeded, and its result does not depend on the thread
count (tests/test_audit_parallel.py compares them).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Literal, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")
Engine = Literal["local", "ray"]

PARALLEL_MIN_MAPS = 3000  # below this many maps in all, one process is done before workers have started


def cores() -> int:
    """The cores this process may run on (its affinity where the system tells it, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def workers_for(sizes: Sequence[int], requested: int | None = None) -> int:
    """How many local processes analyse classes of `sizes` maps: `requested` if given (at most one per class), else
    cores − 1 when there are several classes and at least PARALLEL_MIN_MAPS maps in all; 1 means in-process."""
    if len(sizes) < 2:
        return 1
    if requested is not None:
        return max(1, min(requested, len(sizes)))
    if sum(sizes) < PARALLEL_MIN_MAPS:
        return 1
    return max(1, min(cores() - 1, len(sizes)))


def map_classes(
    analyse: Callable[[Job], Result],
    jobs: Sequence[Job],
    *,
    engine: Engine = "local",
    workers: int = 1,
) -> list[Result]:
    """`analyse(job)` for every job, results in the jobs' order: in this process (`workers` 1), in `workers` spawned
    processes, or as Ray tasks (`engine="ray"`: the caller has started or joined Ray; one CPU per task). `analyse`
    must be a module-level function (it is sent to the workers by name)."""
    if engine == "ray":
        return _ray_map(analyse, jobs)
    if workers <= 1 or len(jobs) < 2:
        return [analyse(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=one_thread) as pool:
        return list(pool.map(analyse, jobs))


def one_thread() -> None:
    """A worker's start: one BLAS/OpenMP thread (the workers already share the cores between them)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def _ray_map(analyse: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
    import ray

    task: Any = ray.remote(num_cpus=1)(_in_one_thread)  # a Ray RemoteFunction (ray's types are partial)
    return list(ray.get([task.remote(analyse, job) for job in jobs]))


def _in_one_thread(analyse: Callable[[Job], Result], job: Job) -> Result:
    """One Ray task: `analyse(job)` with one BLAS/OpenMP thread (Ray gave the task one CPU)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return analyse(job)
