"""The Stories page's logic through AppTest: each story draws its panels from `compute`'s cached answers, keyed
by `state`'s widget keys (the walk a person takes is tests/test_stories_browser.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnvis_ui import state

STORIES_PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "stories.py")
pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_each_story_draws_its_panels():
    at = AppTest.from_file(STORIES_PAGE, default_timeout=240).run()
    drawn = {}
    for story in ("tanks", "salt", "robot"):
        at.session_state[state.STORY] = story
        at.run()
        assert not at.exception, (story, at.exception)
        drawn[story] = {chart.key for chart in at.get("plotly_chart")}
    assert {"chart-story-tank-tanks_shortcut", "chart-story-tank-tanks_clean"} <= drawn["tanks"], drawn["tanks"]
    assert {"chart-story-salt-input", "chart-story-salt-mask", "chart-story-salt-cam"} <= drawn["salt"], drawn["salt"]
    assert {"chart-story-robot-input", "chart-story-robot_shadow-cam"} <= drawn["robot"], drawn["robot"]
