"""Hostile link values (issue 21): every URL parameter of every page gets values its widget could never produce.

Each page runs with the sidebar (as the entry script runs them), so the link note is where a person sees it. A value
is dropped (the parameter keeps its default) and named in the note; the page still renders, without an exception.
The domains are `state.URL_PARAMS`'s; the expectations below are written out by hand, not read from them.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnvis_engine import METHODS
from cnnvis_ui import choices, result_cache, state, url_codec

ROOT = Path(__file__).resolve().parent.parent
PAGES = {name: str(ROOT / "pages" / f"{name}.py") for name in ("explore", "layers", "compare", "sanity", "stories")}
NOTE = "Parts of the link could not be reproduced here"
UPLOAD = "upload:" + "ab" * 32  # a well-formed reference to an upload this server does not have

HOSTILE = {
    "out of range": "2",
    "inf": "inf",
    "nan": "nan",
    "-1e308": "-1e308",
    "huge int": "9" * 400,
    "negative": "-1",
    "script": "<script>alert(1)</script>",
    "image markup": "![x](http://203.0.113.9/p.png)",
    "10,000 characters": "x" * 10_000,
    "empty": "",
}
# (parameter, hostile value) pairs the widget could have produced after all: "" is "none" or "automatic" for these,
# and class 2 is a real class of the default model.
ALLOWED = {(name, "") for name in ("layer", "class", "kernels", "methods", "settings", "compare_images")} | {
    ("compare_models", ""),
    ("class", "2"),
    ("audit_class", ""),  # the most suspicious class
    ("audit_group", ""),  # no group chosen
    ("audit_group", "2"),  # a group number the Audit page checks against its audit (the class may have 3 groups)
    ("concept_open", ""),  # no sub-concepts open
    ("concept_open", "2"),  # channel 2: the Concepts page checks it against its layer
    ("concept_box", ""),  # the whole picture
    ("concept_compare", ""),  # no second model
    ("stories_robot_direction", ""),  # "": the direction of the view's first obstacle
}
PARAMS = [param.name for param in state.URL_PARAMS.values()]


def _page(path: str) -> None:
    """A page as the entry script runs it: the shared sidebar first (it adopts the link and shows its note)."""
    import runpy

    from cnnvis_ui import sidebar

    sidebar.render()
    runpy.run_path(path, run_name="__main__")


@pytest.fixture(scope="module", autouse=True)
def caches() -> Iterator[None]:
    """One set of caches for the module: every hostile link falls back to the same default view."""
    result_cache.clear_all()
    yield
    result_cache.clear_all()


def open_link(page: str, params: dict[str, str]) -> AppTest:
    at = AppTest.from_function(_page, args=(PAGES[page],), default_timeout=180)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def note_of(at: AppTest) -> str:
    notes = [w.value.replace("\\", "") for w in at.sidebar.warning if NOTE in w.value.replace("\\", "")]
    assert len(notes) <= 1
    return notes[0] if notes else ""


def named(name: str, note: str) -> bool:
    """Whether the note names parameter `name` ("opacity=…", "methods: …", "methods was …"; the model by its own
    sentence)."""
    if name == "model" and "no model called" in note:
        return True
    return re.search(rf"(?<![a-z_]){name}(=| was |: )", note) is not None


def assert_in_domain(at: AppTest) -> None:
    """What the widgets could hold, whatever the link said."""
    s = at.session_state
    assert 0 <= s[state.OPACITY] <= 1
    assert s[state.FM_CHANNELS] in (4, 8, 16, 32, 64)
    assert len(set(s[state.EXTRA_METHODS])) == len(s[state.EXTRA_METHODS]) <= len(choices.explore_extras())
    assert len(s[state.COMPARE_IMAGES] or ()) <= 4 and len(s[state.COMPARE_MODELS] or ()) <= 6
    for method, values in s[state.METHOD_SETTINGS].items():
        for option in METHODS[method].options:
            low, high = option.dashboard_range()
            assert option.name not in values or low <= values[option.name] <= high
    for key in (state.LAYER, state.KERNEL_LAYER, state.IMAGE, state.MODEL, state.WEIGHTS):
        assert s[key] is None or len(s[key]) <= url_codec.MAX_TEXT
    assert s[state.STORY] in ("tanks", "salt", "robot")
    assert s[state.TANK_PICTURE] in ("tank_sunny", "tank_cloudy", "field_sunny", "field_cloudy")
    assert s[state.SALT_PICTURE] in ("salt_1", "salt_2", "salt_3") and s[state.SALT_LAYER] in ("decode1", "bottom")
    assert s[state.ROBOT_PICTURE] in ("robot_obstacles", "robot_box")
    assert s[state.ROBOT_GROUP] in ("all", "direction", "distance", "reported")
    assert s[state.ROBOT_DIRECTION] in (None, "far left", "left", "ahead", "right", "far right")
    assert s[state.ROBOT_DISTANCE] in ("very near", "near", "middle", "far", "very far")
    assert s[state.TANK_SHARED_SCALE] in (True, False)


@pytest.mark.parametrize("page", list(PAGES))
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_every_parameter_with_a_hostile_value_is_dropped_and_said(page: str, kind: str):
    value = HOSTILE[kind]
    at = open_link(page, {name: value for name in PARAMS})
    assert not at.exception
    assert_in_domain(at)
    note = note_of(at)
    dropped = [name for name in PARAMS if (name, value) not in ALLOWED]
    assert note, f"no link note for {kind}"
    missing = [name for name in dropped if not named(name, note)]
    assert not missing, f"{kind}: {missing} not named in the note: {note[:300]}"
    assert len(note) < 20_000  # each value is quoted cut short, never in full
    assert "<script>" not in " ".join(m.value for m in at.markdown)  # shown as text, if at all


@pytest.mark.parametrize("page", list(PAGES))
def test_too_many_items_and_duplicates_are_left_out(page: str):
    offered = choices.explore_extras()
    link = {
        "methods": ",".join(offered * 2),  # every method twice: duplicates, and more than the pills offer
        "compare_images": ",".join(["sample:cat", "sample:cat", "sample:coffee", "sample:rocket"] * 2 + [UPLOAD]),
        "compare_models": ",".join(["efficientnet_lite0:embedded"] * 8),
        "settings": ",".join(f"occlusion.window={n}" for n in range(32, 64)),  # one value, many times over
        "colormap": "jet,viridis",
    }
    at = open_link(page, link)
    assert not at.exception
    assert_in_domain(at)
    s = at.session_state
    assert s[state.COMPARE_MODELS] == ["efficientnet_lite0:embedded"]
    assert s[state.COMPARE_IMAGES] == ["sample:cat", "sample:coffee", "sample:rocket"]  # not another's upload
    note = note_of(at)
    for name in ("methods", "compare_images", "compare_models", "colormap"):
        assert name in note


def test_opacity_2_on_explore_keeps_the_panels_and_says_so():
    at = open_link(
        "explore", {"model": "efficientnet_lite0", "weights": "embedded", "image": "sample:cat", "opacity": "2"}
    )
    assert not at.exception
    assert at.slider(key=state.widget(state.OPACITY)).value == 0.5
    titles = {m.value.strip("*") for m in at.markdown}
    assert {"Grad-CAM", "CAM", "Feature maps"} <= titles
    assert "opacity=2" in note_of(at) or "opacity='2'" in note_of(at)


def test_five_compare_images_on_compare_keep_four_and_say_so():
    picture = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(picture, "PNG")
    digest = result_cache.sha256(picture.getvalue())
    refs = ["sample:cat", "sample:coffee", "sample:astronaut", "sample:rocket", f"upload:{digest}"]
    at = AppTest.from_function(_page, args=(PAGES["compare"],), default_timeout=180)
    at.session_state[state.UPLOADS] = {digest: ("red.png", picture.getvalue())}  # uploaded in this session
    link = {
        "model": "efficientnet_lite0",
        "weights": "embedded",
        "image": "sample:cat",
        "compare_images": ",".join(refs),
    }
    for name, value in link.items():
        at.query_params[name] = value
    at.run()
    assert not at.exception
    assert at.session_state[state.COMPARE_IMAGES] == refs[:4]
    assert at.multiselect(key=state.widget(state.COMPARE_IMAGES)).value == refs[:4]
    assert "compare_images: at most 4 fit" in note_of(at)


def test_a_long_method_list_costs_nothing():
    """The probe's 1,200 names took 131 s; now the parameter is refused by its length before anything is read."""
    started = time.perf_counter()
    at = open_link("explore", {"methods": ",".join(["occlusion", "scorecam", "integrated_gradients"] * 400)})
    assert not at.exception and not at.session_state[state.EXTRA_METHODS]
    assert "methods was" in note_of(at)
    assert time.perf_counter() - started < 60  # the default view alone: seconds on a loaded CPU


def test_settings_beyond_the_number_boxes_are_dropped():
    link = "integrated_gradients.steps=1024,smoothgrad.samples=256,occlusion.window=16,occlusion.baseline=-1e308"
    link += ",occlusion.stride=24,smoothgrad_cam.samples=2.5,nosuch.x=1,occlusion.nosuch=1"
    at = open_link("explore", {"settings": link})
    assert not at.exception
    assert at.session_state[state.METHOD_SETTINGS] == {"occlusion": {"stride": 24}}
    note = note_of(at)
    for part in (
        "steps=1024 is outside 1–20",
        "samples=256",
        "window=16",
        "baseline=-1e+308",
        "'nosuch'",
        "2.5 is not",
    ):
        assert part in note, part


def test_a_layer_or_class_the_model_lacks_becomes_automatic_with_the_note():
    at = open_link(
        "layers",
        {
            "model": "efficientnet_lite0",
            "weights": "embedded",
            "image": "sample:cat",
            "layer": "no.such.layer",
            "kernels": "blocks.5",  # a layer, not a convolution
            "class": "5000",
        },
    )
    assert not at.exception
    s = at.session_state
    assert s[state.LAYER] is None and s[state.KERNEL_LAYER] is None and s[state.TARGET] is None
    note = note_of(at)
    assert "layer='no.such.layer'" in note and "kernels='blocks.5'" in note and "class=5000" in note
