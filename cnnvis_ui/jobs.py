"""The server's queue of slow jobs: at most N run at once, first come first served, one per session in the queue.

Slow work (extra methods that run many forward passes, faithfulness scores, the Sanity test, the Layers page's
channel gallery, audits) takes seconds to minutes of CPU. Unchecked, ten sessions on two cores run ten such jobs at
once, and a quick explain (Grad-CAM on a new picture) shares the cores and the interpreter with all of them. So slow
jobs pass through one `Gate`: at most `limit` run at once (`CNNVIS_SLOW_JOBS`, default one core fewer than the
machine has, at least 1: the spare core is the quick work's), the others wait in arrival order. Quick work (the
recorded pass, Grad-CAM, CAM, saliency and feature maps, predictions, layer lists, model loads) never enters it, so
it runs beside at most `limit` slow jobs instead of behind them.

Rules, each a test in tests/test_jobs.py:
- First in, first out: the queue admits its oldest job whenever fewer than `limit` run, so a job waits only for
  jobs that came before it, each of which ends; nothing starves.
- One job per session in the queue. A second slow job from a session whose first is still queued or running waits
  outside the queue for its own first and then joins at the back, behind the jobs of sessions that asked meanwhile:
  a session cannot fill the queue. (Streamlit runs one script run per session at a time, so a browser session never
  has two; the rule keeps the queue fair for any other caller.) A job entered again by the thread that is running it
  (one slow call inside another) passes straight through.
- Superseded jobs leave. While a job waits, `on_wait(ahead)` is called when the count ahead changes and at least
  every `heartbeat` seconds; an exception from it (Streamlit stops a superseded script run when it next draws, and
  the dashboard's `on_wait` draws the waiting sentence) or from the job itself leaves the queue in `finally`, and
  the next job moves up. A changed setting therefore drops the old job and queues the new one at the back.
- `ahead` counts the jobs that came before this one and have not finished: the running ones and those queued in
  front of it; it never grows while a job waits in the queue.

No streamlit here: the dashboard's side (the session's id, the waiting sentence drawn where the panel will be) is
`slow_jobs.queued`, which bench/sessions_bench.py drives from threads; the tests drive this module directly.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

from .threads import cores

ENV = "CNNVIS_SLOW_JOBS"  # how many slow jobs may run at once; "off" (or 0): no queue at all
HEARTBEAT = 1.0  # seconds between `on_wait` calls while a job waits (Streamlit stops a superseded run there)


@dataclass(eq=False)
class Job:
    """One slow job's place: its session, what it is (for the page and logs) and where it stands."""

    session: str
    label: str
    number: int  # order of arrival, server-wide; renumbered when a held job joins the queue at its back
    thread: int = field(default_factory=threading.get_ident)
    state: str = "held"  # "held" (behind its own session's job), "queued", "running"
    shown: int | None = None  # the count ahead that `on_wait` last returned from (tests wait on it)


@dataclass(frozen=True)
class Snapshot:
    """What the gate holds at one moment, oldest first."""

    running: tuple[Job, ...]
    queued: tuple[Job, ...]
    held: tuple[Job, ...]


class Gate:
    """At most `limit` slow jobs at once, first come first served, one per session in the queue; `limit=None`
    lets every job through at once, unrecorded (the gate off: the bench's "before")."""

    def __init__(self, limit: int | None, heartbeat: float = HEARTBEAT) -> None:
        if limit is not None and limit < 1:
            raise ValueError("a gate admits at least one job at a time (None: no limit)")
        self.limit = limit
        self.heartbeat = heartbeat
        self._cond = threading.Condition()
        self._jobs: list[Job] = []  # every job inside, in arrival order
        self._numbers = itertools.count()
        self._held_here = threading.local()  # the job this thread is running, if any

    @contextmanager
    def slow(self, session: str, label: str, on_wait: Callable[[int], None] | None = None) -> Iterator[Job]:
        """Around one slow job: returns when it may run, `on_wait(ahead)` called while it waits; leaves the gate
        when the block ends, raises, or `on_wait` raises."""
        running = getattr(self._held_here, "job", None)
        if running is not None:  # this thread already runs a slow job: the inner one is part of it
            yield running
            return
        if self.limit is None:  # the gate off: every job runs at once, as before there was a queue
            yield Job(session, label, -1, state="running")
            return
        with self._cond:
            job = Job(session, label, next(self._numbers))
            self._jobs.append(job)
            self._admit()
        try:
            self._wait(job, on_wait)
            self._held_here.job = job
            yield job
        finally:
            self._held_here.job = None
            with self._cond:
                self._jobs.remove(job)
                self._admit()

    def ahead(self, job: Job) -> int:
        """How many earlier jobs `job` waits for: the running ones and those queued in front of it; for a job held
        behind its own session's, every job inside (all came first)."""
        with self._cond:
            return self._ahead(job)

    def snapshot(self) -> Snapshot:
        with self._cond:
            return self._snapshot_locked()

    def wait_for(self, condition: Callable[[Snapshot], bool], timeout: float) -> bool:
        """Block until `condition(snapshot)` holds (checked at every change); False if `timeout` passes first. For
        tests and the bench, which must not guess with sleeps."""
        with self._cond:
            return self._cond.wait_for(lambda: condition(self._snapshot_locked()), timeout=timeout)

    # ----- inside the lock ------------------------------------------------------------------------------------
    def _snapshot_locked(self) -> Snapshot:
        return Snapshot(
            tuple(j for j in self._jobs if j.state == "running"),
            tuple(j for j in self._jobs if j.state == "queued"),
            tuple(j for j in self._jobs if j.state == "held"),
        )

    def _admit(self) -> None:
        """Held jobs join the queue (at its back) once their session has none inside, oldest first; then the
        oldest queued jobs start while fewer than `limit` run."""
        inside = {j.session for j in self._jobs if j.state != "held"}
        for job in self._jobs:
            if job.state == "held" and job.session not in inside:
                job.state, job.number = "queued", next(self._numbers)  # at the back of the queue
                inside.add(job.session)
        running = sum(j.state == "running" for j in self._jobs)
        for job in sorted((j for j in self._jobs if j.state == "queued"), key=lambda j: j.number):
            if self.limit is not None and running >= self.limit:
                break
            job.state = "running"
            running += 1
        self._cond.notify_all()

    def _ahead(self, job: Job) -> int:
        if job.state == "running":
            return 0
        if job.state == "held":
            return sum(j.state != "held" or j.number < job.number for j in self._jobs if j is not job)
        return sum(j.state != "held" and j.number < job.number for j in self._jobs)

    # ----- outside the lock: `on_wait` draws, and may raise ---------------------------------------------------
    def _wait(self, job: Job, on_wait: Callable[[int], None] | None) -> None:
        """Until `job` runs: `on_wait(ahead)` when the count changes or a heartbeat has passed since the last call
        (other changes, such as another job's drawing, wake this thread without a redraw)."""
        shown, shown_at = -1, 0.0
        while True:
            with self._cond:
                if job.state == "running":
                    return
                ahead = self._ahead(job)
            if ahead != shown or time.monotonic() - shown_at >= self.heartbeat:
                if on_wait is not None:
                    on_wait(ahead)
                shown, shown_at = ahead, time.monotonic()
                with self._cond:
                    job.shown = ahead
                    self._cond.notify_all()
            with self._cond:
                if job.state != "running" and self._ahead(job) == shown:
                    self._cond.wait(timeout=max(0.0, self.heartbeat - (time.monotonic() - shown_at)))


def limit(environ: dict[str, str] | None = None) -> int | None:
    """`CNNVIS_SLOW_JOBS` if it is a whole number >= 1, None (no gate) for "off" or 0, else one core fewer than there
    are, at least 1. On this 2-core machine (bench/sessions_bench.py, 9 sessions' slow work): a quick explain took
    2.5x its idle time with 1 at once, 3.1x with 2, 51x with no queue."""
    text = (os.environ if environ is None else environ).get(ENV, "").strip().lower()
    if text in ("off", "0"):
        return None
    if text.isdigit():
        return int(text)
    return max(1, cores() - 1)


@functools.cache
def gate() -> Gate:
    """The server's one gate, its limit read once."""
    return Gate(limit())


def slow(session: str, label: str, on_wait: Callable[[int], None] | None = None) -> AbstractContextManager[Job]:
    """`with jobs.slow(session, label, on_wait=...):` one slow job in the server's gate (`Gate.slow`)."""
    return gate().slow(session, label, on_wait)


def waiting_sentence(ahead: int, label: str) -> str:
    """What the page shows where a job's result will be: "Waiting for 2 earlier jobs… The Sanity test starts when
    they are done." """
    earlier = "1 earlier job" if ahead == 1 else f"{ahead} earlier jobs"
    done = "it is" if ahead == 1 else "they are"
    return f"Waiting for {earlier}… {label[:1].upper()}{label[1:]} starts when {done} done."
