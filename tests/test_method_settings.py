"""A method's declared options are Explore's controls for it: seeded with the dashboard's quick values, passed to the
engine when changed, and kept in the view's link."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnvis_ui import state

DASHBOARD = str(Path(__file__).resolve().parent.parent / "dashboard.py")

pytestmark = pytest.mark.usefixtures("fresh_caches")


def test_a_methods_declared_options_are_explore_controls_and_part_of_the_link():
    """Integrated Gradients declares `steps` (the dashboard runs 20) and `baseline`: Explore draws a number box for
    each, a change recomputes the panel with it, says so in the caption, and goes into the page's URL."""
    at = AppTest.from_file(DASHBOARD, default_timeout=120)
    at.session_state[state.EXTRA_METHODS] = ["integrated_gradients"]
    at.run()
    steps = at.number_input(key=state.setting_widget("integrated_gradients", "steps"))
    assert (
        steps.value == 20 and at.number_input(key=state.setting_widget("integrated_gradients", "baseline")).value == 0
    )
    assert any("over 20 steps" in c.value for c in at.caption)
    steps.set_value(8).run()
    assert not at.exception and not at.error
    assert any("over 8 steps" in c.value for c in at.caption)
    assert at.session_state[state.METHOD_SETTINGS] == {"integrated_gradients": {"steps": 8}}
    assert at.query_params["settings"] == "integrated_gradients.steps=8"


def test_a_setting_the_engine_refuses_is_said_in_its_panel_and_the_page_goes_on():
    at = AppTest.from_file(DASHBOARD, default_timeout=120)
    at.session_state[state.EXTRA_METHODS] = ["occlusion"]
    at.session_state[state.METHOD_SETTINGS] = {"occlusion": {"window": 32, "stride": 48}}  # stride > window
    at.run()
    assert not at.exception
    assert any("at least as large as the stride" in e.value for e in at.error)
    assert "Grad-CAM" in {m.value.strip("*") for m in at.markdown}  # the rest of the page still draws


def test_a_setting_that_is_not_a_finite_number_never_reaches_the_page():
    """From a link, `nan` or `inf` is refused like any unreadable value (the link's settings are left out, with a
    note); in session state, a NaN falls back to the dashboard's value."""
    for text in ("integrated_gradients.steps=nan", "integrated_gradients.steps=inf", "occlusion.window=x"):
        with pytest.raises(ValueError):
            state.URL_PARAMS[state.METHOD_SETTINGS].codec.decode(text)
    at = AppTest.from_file(DASHBOARD, default_timeout=120)
    at.session_state[state.EXTRA_METHODS] = ["integrated_gradients"]
    at.session_state[state.METHOD_SETTINGS] = {"integrated_gradients": {"steps": float("nan")}}
    at.run()
    assert not at.exception
    assert at.number_input(key=state.setting_widget("integrated_gradients", "steps")).value == 20
