"""The Stories page's logic through AppTest: each story draws its panels from `story_data`'s cached answers, keyed
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
    assert {"chart-story-concepts-tanks_shortcut", "chart-story-concepts-tanks_clean"} <= drawn["tanks"]
    assert {"chart-story-salt-input", "chart-story-salt-mask", "chart-story-salt-cam"} <= drawn["salt"], drawn["salt"]
    assert {"chart-story-robot-input", "chart-story-robot_shadow-cam"} <= drawn["robot"], drawn["robot"]


def test_the_salt_figure_on_new_sections_follows_the_chosen_layer():
    from cnnvis_ui import story_data

    at = AppTest.from_file(STORIES_PAGE, default_timeout=240)
    at.session_state[state.STORY] = "salt"
    said = {}
    for layer in ("decode1", "bottom"):
        at.session_state[state.SALT_LAYER] = layer
        at.run()
        assert not at.exception, at.exception
        said[layer] = [c.value for c in at.caption if "on new sections at this layer" in c.value]
        assert len(said[layer]) == 1, [c.value for c in at.caption]
        assert said[layer][0].endswith(f"{story_data.salt_cam_share(layer):.0%} on new sections at this layer")
    assert story_data.salt_cam_share("decode1") != story_data.salt_cam_share("bottom")  # so the figure really moved


def _with_sidebar(path: str) -> None:
    """A page as the entry script runs it: the shared sidebar first (it adopts the link)."""
    import runpy

    from cnnvis_ui import sidebar

    sidebar.render()
    runpy.run_path(path, run_name="__main__")


def test_a_link_naming_a_tank_photo_selects_that_photo():
    """Issue #25's report: a `stories_tank_picture` link did not select the photo (Streamlit's own URL binding read
    and wrote the option's label). Now the Stories page's choices are in `state.URL_PARAMS` like every page's."""
    at = AppTest.from_function(_with_sidebar, args=(STORIES_PAGE,), default_timeout=240)
    at.query_params["stories_tank_picture"] = "tank_cloudy"
    at.run()
    assert not at.exception, at.exception
    assert at.session_state[state.TANK_PICTURE] == "tank_cloudy"
    assert at.segmented_control(key=state.widget(state.TANK_PICTURE)).value == "tank_cloudy"
    shown = " ".join(m.value for m in [*at.markdown, *at.caption])
    assert "no evidence of a tank" in shown  # the biased detector on the cloudy tank photo, as a person sees it
    assert at.query_params["stories_tank_picture"] in ("tank_cloudy", ["tank_cloudy"])  # the link keeps the key
    at.segmented_control(key=state.widget(state.TANK_PICTURE)).set_value("tank_sunny").run()
    assert not at.exception
    assert "stories_tank_picture" not in at.query_params  # the default photo: left out of the link
    assert "no evidence of a tank" not in " ".join(m.value for m in [*at.markdown, *at.caption])
