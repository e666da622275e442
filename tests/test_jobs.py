"""The server's queue of slow jobs (cnnvis_ui/jobs.py): first come first served, N at once, one per session, left
on errors. Threads and events only: each step waits for the gate to reach a state (`Gate.wait_for`, with a
generous limit that only a hang would reach), never for time to pass."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cnnvis_ui import jobs

LONG = 30  # seconds before a wait counts as a hang


class Session:
    """One session's slow job on a thread of its own: enters the gate, records when it starts, runs until told."""

    def __init__(
        self,
        gate: jobs.Gate,
        session: str,
        started: list[str],
        *,
        name: str = "",
        on_wait: Callable[[int], None] | None = None,
        during: Callable[[], object] | None = None,
        fail: bool = False,
    ) -> None:
        self.name = name or session
        self.finish = threading.Event()
        self.seen: list[int] = []
        self.error: BaseException | None = None

        def show(ahead: int) -> None:
            self.seen.append(ahead)
            if on_wait is not None:
                on_wait(ahead)

        def run() -> None:
            try:
                with gate.slow(session, self.name, on_wait=show):
                    started.append(self.name)
                    if during is not None:
                        during()
                    self.finish.wait(LONG)
                    if fail:
                        raise ValueError("the job failed")
            except BaseException as error:  # noqa: BLE001 - kept for the test to look at
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)

    def start(self, gate: jobs.Gate, inside: int) -> Session:
        """Start, and return once the gate holds `inside` jobs (so arrival order is the order of these calls)."""
        self.thread.start()
        assert gate.wait_for(lambda s: len(s.running) + len(s.queued) + len(s.held) == inside, LONG)
        return self

    def end(self) -> None:
        self.finish.set()
        self.thread.join(LONG)
        assert not self.thread.is_alive()


def names(jobs_: tuple[jobs.Job, ...]) -> list[str]:
    return [job.label for job in jobs_]


def test_jobs_run_first_come_first_served_at_most_n_at_once():
    gate, started, lock, live, peak = jobs.Gate(limit=2, heartbeat=LONG), [], threading.Lock(), [0], [0]

    def count() -> None:  # jobs running at once, seen from inside them
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])

    class Counted(Session):
        def end(self) -> None:
            with lock:
                live[0] -= 1
            super().end()

    sessions = [Counted(gate, f"s{i}", started, during=count).start(gate, i + 1) for i in range(5)]
    snapshot = gate.snapshot()
    assert names(snapshot.running) == ["s0", "s1"] and names(snapshot.queued) == ["s2", "s3", "s4"]
    sessions[1].end()  # a later job ending first frees its place for the oldest waiting one
    assert gate.wait_for(lambda s: names(s.running) == ["s0", "s2"] and names(s.queued) == ["s3", "s4"], LONG)
    sessions[0].end()
    assert gate.wait_for(lambda s: names(s.running) == ["s2", "s3"] and names(s.queued) == ["s4"], LONG)
    sessions[3].end()
    assert gate.wait_for(lambda s: names(s.running) == ["s2", "s4"] and not s.queued, LONG)
    for index in (2, 4):
        sessions[index].end()
    assert started == ["s0", "s1", "s2", "s3", "s4"] and peak == [2]
    assert gate.snapshot() == jobs.Snapshot((), (), ())


def test_the_count_ahead_is_the_running_and_the_earlier_queued_jobs_and_only_falls():
    gate, started = jobs.Gate(limit=1, heartbeat=LONG), []
    first = Session(gate, "a", started).start(gate, 1)
    second = Session(gate, "b", started).start(gate, 2)
    third = Session(gate, "c", started).start(gate, 3)
    assert gate.wait_for(lambda s: [j.shown for j in s.queued] == [1, 2], LONG)  # each was told its count
    assert gate.ahead(gate.snapshot().running[0]) == 0
    first.end()
    assert gate.wait_for(lambda s: [j.shown for j in s.queued] == [1], LONG)
    second.end()
    third.end()
    assert first.seen == [] and second.seen == [1] and third.seen == [2, 1]  # a job that need not wait sees nothing


def test_a_session_s_second_job_waits_for_its_first_and_then_queues_at_the_back():
    gate, started = jobs.Gate(limit=1, heartbeat=LONG), []
    mine = Session(gate, "me", started, name="mine-1").start(gate, 1)
    again = Session(gate, "me", started, name="mine-2").start(gate, 2)
    other = Session(gate, "other", started).start(gate, 3)
    snapshot = gate.snapshot()
    assert names(snapshot.running) == ["mine-1"] and names(snapshot.held) == ["mine-2"]
    assert names(snapshot.queued) == ["other"]  # the session's second job is not in the queue
    assert gate.wait_for(lambda s: s.held[0].shown == 2, LONG)  # its own first and the other session's
    mine.end()
    assert gate.wait_for(lambda s: names(s.running) == ["other"] and names(s.queued) == ["mine-2"], LONG)
    other.end()
    again.end()
    assert started == ["mine-1", "other", "mine-2"]


def test_a_failing_job_leaves_the_gate_and_the_next_one_runs():
    gate, started = jobs.Gate(limit=1, heartbeat=LONG), []
    failing = Session(gate, "a", started, fail=True).start(gate, 1)
    waiting = Session(gate, "b", started).start(gate, 2)
    failing.end()
    assert isinstance(failing.error, ValueError)
    assert gate.wait_for(lambda s: names(s.running) == ["b"], LONG)
    waiting.end()
    assert waiting.error is None and gate.snapshot() == jobs.Snapshot((), (), ())


def test_a_superseded_waiting_job_leaves_the_queue_and_the_next_one_moves_up():
    gate, started, supersede = jobs.Gate(limit=1, heartbeat=LONG), [], threading.Event()

    def stopped_by_a_newer_run(ahead: int) -> None:  # as Streamlit stops a replaced run when it next draws
        if supersede.is_set():
            raise RuntimeError("superseded")

    gate.heartbeat = 0.05  # so the waiting job draws again soon and meets the stop
    running = Session(gate, "a", started).start(gate, 1)
    replaced = Session(gate, "b", started, on_wait=stopped_by_a_newer_run).start(gate, 2)
    behind = Session(gate, "c", started).start(gate, 3)
    supersede.set()
    replaced.thread.join(LONG)
    assert isinstance(replaced.error, RuntimeError) and "b" not in started
    assert gate.wait_for(lambda s: names(s.queued) == ["c"] and s.queued[0].shown == 1, LONG)  # moved up
    running.end()
    behind.end()
    assert started == ["a", "c"]


def test_a_slow_call_inside_a_running_job_passes_through():
    gate = jobs.Gate(limit=1, heartbeat=LONG)
    with gate.slow("a", "outer") as outer:
        with gate.slow("a", "inner") as inner:  # one slot, already this thread's: no deadlock
            assert inner is outer
        assert names(gate.snapshot().running) == ["outer"]
    assert gate.snapshot() == jobs.Snapshot((), (), ())


def test_with_the_gate_off_every_job_runs_at_once():
    gate, started, together = jobs.Gate(limit=None), [], threading.Barrier(4, timeout=LONG)
    sessions = [Session(gate, "same", started, name=f"job{i}", during=together.wait) for i in range(4)]
    for session in sessions:
        session.thread.start()
    for session in sessions:
        session.end()
    assert sorted(started) == ["job0", "job1", "job2", "job3"]
    assert all(session.error is None for session in sessions)  # all four met inside: none waited for another


def test_the_limit_is_one_core_fewer_or_the_environment_s(monkeypatch):
    monkeypatch.setattr(jobs, "cores", lambda: 8)
    assert jobs.limit({}) == 7 and jobs.limit({jobs.ENV: "3"}) == 3 and jobs.limit({jobs.ENV: "many"}) == 7
    assert jobs.limit({jobs.ENV: "off"}) is None and jobs.limit({jobs.ENV: "0"}) is None
    monkeypatch.setattr(jobs, "cores", lambda: 1)
    assert jobs.limit({}) == 1
    with pytest.raises(ValueError):
        jobs.Gate(limit=0)


def test_the_waiting_sentence():
    assert jobs.waiting_sentence(1, "the Sanity test") == (
        "Waiting for 1 earlier job… The Sanity test starts when it is done."
    )
    assert jobs.waiting_sentence(3, "SmoothGrad").startswith("Waiting for 3 earlier jobs… SmoothGrad starts")
