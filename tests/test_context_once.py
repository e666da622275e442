"""One `Context` per script run (issue 25): the sidebar builds it, the page receives that one, and the top-5
predictions are looked up once for the sidebar's buttons, the page's table and the report's row."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnvis_engine import Prediction
from cnnvis_ui import context, result_cache

DASHBOARD = str(Path(__file__).resolve().parent.parent / "dashboard.py")
pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the Contexts built and the predictions looked up (through the cache or not)."""
    counts = {"build": 0, "predictions": 0}
    build, predictions = context.build, result_cache.predictions

    def counting_build() -> context.Context:
        counts["build"] += 1
        return build()

    def counting_predictions(*args: object, **kwargs: object) -> tuple[Prediction, ...]:
        counts["predictions"] += 1
        return predictions(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(context, "build", counting_build)
    monkeypatch.setattr(result_cache, "predictions", counting_predictions)
    return counts


def test_one_explore_run_builds_one_context_and_looks_up_the_predictions_once(counted: dict[str, int]) -> None:
    at = AppTest.from_file(DASHBOARD, default_timeout=120).run()
    assert not at.exception
    assert at.button(key="top5-0").label.startswith("Egyptian cat")  # the sidebar's buttons
    (table,) = [frame.value for frame in at.dataframe if "Class" in frame.value.columns]  # the page's table
    assert table["Class"][0] == "Egyptian cat"
    assert counted == {"build": 1, "predictions": 1}
    assert "_context_this_run" not in at.session_state  # handed over for this run only
