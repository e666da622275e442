"""The view in the URL (`cnnvis_ui.state`'s URL table) through AppTest on a tiny script: no model is loaded.

What a person sees (a link opened in another browser, reload, back/forward) is tested in Chromium in
test_share_browser.py.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from cnnvis_ui import model_cache, state, upload_store

pytestmark = pytest.mark.usefixtures("fresh_caches")


def _script() -> None:
    from cnnvis_ui import state

    state.init()
    state.sync_url()


def _sanity_script() -> None:
    import streamlit as st

    from cnnvis_ui import actions, state

    state.init()
    st.session_state["shown"] = actions.sanity_shown([("sha", "model", None, None, "gradcam", "cascading")])
    state.sync_url()


def run(params: dict[str, str] | None = None, script=_script) -> AppTest:
    at = AppTest.from_function(script, default_timeout=30)
    for name, value in (params or {}).items():
        at.query_params[name] = value
    return at.run()


def params_of(at: AppTest) -> dict[str, str]:
    return {
        name: at.query_params[name][-1] if isinstance(at.query_params[name], list) else at.query_params[name]
        for name in at.query_params
    }


def test_a_first_visit_writes_only_the_model_weights_and_image():
    at = run()
    assert not at.exception
    default = model_cache.default_model()
    assert params_of(at) == {"model": default.name, "weights": default.weights, "image": state.DEFAULT_IMAGE}


def test_a_link_sets_every_choice_it_names_and_the_url_keeps_them():
    link = {
        "model": "efficientnet_lite0",
        "weights": "embedded",
        "image": "sample:coffee",
        "layer": "blocks.5",
        "class": "968",
        "colormap": "viridis",
        "opacity": "0.3",
        "methods": "layercam,scorecam",
        "scores": "1",
        "channels": "32",
        "compare_models": "efficientnet_lite0:embedded,resnet50:random",
        "compare_random": "1",  # random weights are offered only with the switch on
        "sanity_mode": "independent",
    }
    at = run(link)
    assert not at.exception
    s = at.session_state
    assert (s[state.IMAGE], s[state.LAYER], s[state.TARGET], s[state.COLORMAP]) == (
        "sample:coffee",
        "blocks.5",
        968,
        "viridis",
    )
    assert s[state.OPACITY] == 0.3 and s[state.EXTRA_METHODS] == ("layercam", "scorecam") and s[state.FAITHFULNESS]
    assert s[state.FM_CHANNELS] == 32 and s[state.SANITY_MODE] == "independent"
    assert s[state.COMPARE_MODELS] == ["efficientnet_lite0:embedded", "resnet50:random"]
    assert params_of(at) == link  # written back as it came: the canonical form
    assert s[state.LINK_NOTICE] == ""


def test_a_change_is_written_and_a_default_again_leaves_the_url():
    at = run({"model": "efficientnet_lite0", "weights": "embedded", "image": "sample:cat", "colormap": "viridis"})
    at.session_state[state.widget(state.COLORMAP)] = "jet"
    at.session_state[state.COLORMAP] = "jet"
    at.run()
    assert "colormap" not in params_of(at)  # jet is the default: not written


def test_a_page_switch_without_the_query_keeps_the_view():
    """Streamlit runs a newly chosen page without the query string; the session's view stands and is rewritten."""
    at = run({"model": "efficientnet_lite0", "weights": "embedded", "image": "sample:rocket", "layer": "blocks.3"})
    at.query_params.clear()
    at.run()
    assert at.session_state[state.IMAGE] == "sample:rocket" and at.session_state[state.LAYER] == "blocks.3"
    assert params_of(at)["layer"] == "blocks.3"


def test_back_to_an_earlier_url_brings_its_view_back():
    at = run({"model": "efficientnet_lite0", "weights": "embedded", "image": "sample:cat", "colormap": "magma"})
    at.query_params.clear()
    for name, value in {"model": "efficientnet_lite0", "weights": "embedded", "image": "sample:cat"}.items():
        at.query_params[name] = value  # the entry before the colormap changed
    at.run()
    assert at.session_state[state.COLORMAP] == "jet"


def test_what_cannot_be_read_or_had_is_dropped_and_said():
    at = run(
        {
            "model": "no_such_net",
            "weights": "embedded",
            "image": "sample:cat",
            "opacity": "lots",
            "class": "x",
            "scores": "maybe",
        }
    )
    assert not at.exception
    s = at.session_state
    assert s[state.MODEL] == model_cache.default_model().name and s[state.OPACITY] == 0.5 and s[state.TARGET] is None
    notice = s[state.LINK_NOTICE]
    assert "no_such_net" in notice and "opacity='lots'" in notice and "scores='maybe'" in notice


def test_weights_the_model_does_not_offer_become_its_default():
    at = run({"model": "efficientnet_lite0", "weights": "pretrained", "image": "sample:cat"})
    assert at.session_state[state.WEIGHTS] == model_cache.model_spec("efficientnet_lite0").default_weights


def test_a_link_to_a_model_file_of_another_session_asks_for_the_file():
    at = run({"model": "file:0123456789abcdef:None:-", "weights": "file", "image": "sample:cat"})
    assert at.session_state[state.MODEL] == model_cache.default_model().name
    assert "upload it again" in at.session_state[state.LINK_NOTICE]


def test_a_link_that_showed_the_sanity_test_runs_it_once():
    at = run(
        {"model": "efficientnet_lite0", "weights": "embedded", "image": "sample:cat", "sanity_run": "1"},
        script=_sanity_script,
    )
    assert at.session_state["shown"] and len(at.session_state[state.SANITY_RUNS]) == 1
    assert params_of(at)["sanity_run"] == "1"
    at.session_state[state.SANITY_RUNS] = ()  # as if the settings changed: not asked for, so not shown
    at.run()
    assert not at.session_state["shown"] and "sanity_run" not in params_of(at)


def test_the_upload_store_keeps_the_newest_within_its_bounds():
    store = upload_store.UploadStore(max_items=2, max_bytes=10)
    store.put("a", "a.png", b"1234")
    store.put("b", "b.png", b"5678")
    store.put("c", "c.png", b"9")
    assert store.get("a") is None and store.get("b") == ("b.png", b"5678") and store.get("c") == ("c.png", b"9")
    store.put("d", "d.png", b"0123456789")  # over the byte bound with the others: they go, the newest stays
    assert store.get("d") is not None and store.get("b") is None and store.get("c") is None
