"""Pages under the queue of slow jobs (cnnvis_ui/jobs.py), through AppTest, while another session holds the only
place: quick work draws at once, and slow work says how many jobs are ahead where its result will be, then draws.
Every wait is for a state of the gate or a thread's end, never for time to pass."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from streamlit.testing.v1 import AppTest, app_test
from streamlit.testing.v1.local_script_runner import LocalScriptRunner

from cnnvis_ui import jobs

ROOT = Path(__file__).resolve().parent.parent
EXPLORE, SANITY = (str(ROOT / "pages" / f"{name}.py") for name in ("explore", "sanity"))
LONG = 120  # seconds before a wait counts as a hang

pytestmark = pytest.mark.usefixtures("fresh_caches")


class Recorded(LocalScriptRunner):
    """AppTest's script runner, kept so that a test can read what a run has drawn while it is still running."""

    made: ClassVar[list[Recorded]] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        Recorded.made.append(self)

    def drawn(self) -> str:
        return "\n".join(str(message) for message in list(self.forward_msgs()))


@pytest.fixture
def busy_gate(monkeypatch) -> Iterator[tuple[jobs.Gate, threading.Event]]:
    """A one-place gate, held by another session's job until the test sets the event it yields."""
    gate, release, inside = jobs.Gate(limit=1, heartbeat=0.2), threading.Event(), threading.Event()
    monkeypatch.setattr(jobs, "gate", lambda: gate)
    monkeypatch.setattr(app_test, "LocalScriptRunner", Recorded)
    Recorded.made.clear()

    def other_session() -> None:
        with gate.slow("another browser", "another session's gallery"):
            inside.set()
            release.wait(LONG)

    holder = threading.Thread(target=other_session, daemon=True)
    holder.start()
    assert inside.wait(LONG)
    yield gate, release
    release.set()
    holder.join(LONG)


def test_quick_work_draws_while_the_queue_is_full(busy_gate):
    gate, _ = busy_gate
    at = AppTest.from_file(EXPLORE, default_timeout=LONG).run()  # would hang here if quick work queued
    assert not at.exception and not at.error
    titles = {m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")}
    assert {"Grad-CAM", "CAM", "Saliency (vanilla)", "Feature maps"} <= titles
    snapshot = gate.snapshot()
    assert [j.label for j in snapshot.running] == ["another session's gallery"] and not snapshot.queued


def test_the_sanity_test_says_it_waits_where_it_will_be_drawn_then_draws(busy_gate):
    gate, release = busy_gate
    at = AppTest.from_file(SANITY, default_timeout=LONG).run()
    assert not at.exception
    run = threading.Thread(target=lambda: at.button(key="sanity-run").click().run(), daemon=True)
    run.start()
    assert gate.wait_for(lambda s: [(j.label, j.shown) for j in s.queued] == [("the Sanity test", 1)], LONG)
    assert "Waiting for 1 earlier job" in Recorded.made[-1].drawn()  # on the page while the other job runs
    release.set()
    run.join(LONG)
    assert not run.is_alive() and not at.exception and not at.error
    assert [c for image in at.get("image") for c in image.captions if c == "trained model · ρ = 1.00"] == [
        "trained model · ρ = 1.00"
    ] * 2  # both methods' maps, each test having waited its turn
    assert not [info.value for info in at.info if "Waiting for" in info.value]  # the sentence made way for them
    assert gate.snapshot() == jobs.Snapshot((), (), ())
