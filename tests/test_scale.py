"""The shared colour scale (`cnnvis_ui.scale`): the values behind each method's map recovered from its raw output,
a weaker map drawn weaker on the shared scale, the Sanity steps on one scale, and the switch kept in the URL."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch
from conftest import synthetic_image
from streamlit.testing.v1 import AppTest
from torch import nn

from cnnvis_engine import METHODS as REGISTRY
from cnnvis_engine import Explainer, ModelBundle, decode_image
from cnnvis_engine.render import render_rgb
from cnnvis_engine.sanity import randomisation_test
from cnnvis_ui import scale, state, views
from cnnvis_ui.panels import PanelView
from cnnvis_ui.text import plain

METHODS = (
    "gradcam",
    "cam",
    "saliency",
    "guided_backprop",
    "guided_gradcam",
    "eigencam",
    "integrated_gradients",
    "smoothgrad",
    "occlusion",
    "layercam",
    "gradcam++",
)


@pytest.fixture(scope="module")
def explanation():
    """A small seeded net whose layer maps (8×8) are upsampled to its 32×32 input, as a real net's are."""
    torch.manual_seed(0)
    module = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 4, 3, stride=4, padding=1),
            relu=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(4, 3),
        )
    ).eval()
    bundle = ModelBundle(
        name="small", module=module, class_names=("a", "b", "c"), input_size=(32, 32), weights_source="random"
    )
    image = decode_image(synthetic_image(3, (40, 40)))
    options = {
        "integrated_gradients": {"steps": 8},
        "smoothgrad": {"samples": 4},
        "occlusion": {"window": 8, "stride": 4},
    }
    return bundle, image, Explainer(bundle).explain(image, layer="relu", methods=list(METHODS), options=options)


@pytest.mark.parametrize("method", METHODS)
def test_the_values_behind_every_map_are_recovered_from_its_raw_output(explanation, method):
    result = explanation[2][method]
    assert result.applicable, result.reason
    values = scale.magnitude(result.raw, result.map)
    assert values is not None and values.shape == result.map.shape
    low, high = values.min(), values.max()
    assert np.abs((values - low) / (high - low) - result.map).max() < 0.02


def test_a_channel_grid_or_a_flat_map_keeps_its_own_scale(explanation):
    assert scale.magnitude(np.ones((2, 4, 4)), np.zeros((2, 32, 32))) is None
    assert scale.magnitude(np.ones((4, 4)), np.zeros((32, 32))) is None


def weaker(result, factor: float):
    """The same map with its raw values `factor` times as strong (its own-scale `map` is the same)."""
    return dataclasses.replace(result, raw=result.raw * factor)


@pytest.mark.parametrize("method", ["gradcam", "saliency", "occlusion"])
def test_on_the_shared_scale_the_weaker_map_looks_weaker(explanation, method):
    strong = explanation[2][method]
    weak = weaker(strong, 0.25)
    shared = scale.SharedScale.over(scale.triples([strong, weak]))
    assert shared.counts == {method: 2}
    strong_values, weak_values = (
        shared.values(method, strong.raw, strong.map),
        shared.values(method, weak.raw, weak.map),
    )
    assert strong_values.max() == pytest.approx(1.0)
    assert weak_values.max() < 1  # alone each would be stretched to 1
    behind = scale.magnitude(strong.raw, strong.map)
    np.testing.assert_allclose(weak_values, np.clip(behind / 4 / shared.ceilings[method], 0, 1), atol=1e-5)
    if REGISTRY[method].drawing == "overlay":  # not a sparse map stretched to its 99th percentile
        assert weak_values.max() == pytest.approx(0.25, abs=1e-3)


def test_a_panel_on_the_shared_scale_is_redrawn_and_says_so(explanation):
    ex = explanation[2]
    strong = ex["gradcam"]
    weak = weaker(strong, 0.1)
    shared = scale.SharedScale.over(scale.triples([strong, weak]), "jet", 0.5)
    own = views.method_views(ex, "jet", 0.5)[list(ex).index("gradcam")]
    drawn = shared.view(own, weak, ex.image)
    assert not np.array_equal(drawn.picture, own.picture)
    assert drawn.caption.endswith("scale shared by the 2 maps: 1 = the strongest of them")
    assert drawn.legend.high == "1: the strongest of the 2 maps"
    # the strongest map looks as it does alone
    assert np.abs(shared.view(own, strong, ex.image).picture.astype(int) - own.picture.astype(int)).max() <= 2
    note = PanelView(key="gradcam", title="Grad-CAM", note="flat")
    assert shared.view(note, weak, ex.image) is note


def test_guided_pictures_share_their_grey_scale(explanation):
    ex = explanation[2]
    strong = ex["guided_backprop"]
    weak = weaker(strong, 0.2)
    shared = scale.SharedScale.over(scale.triples([strong, weak]))
    own = next(v for v in views.method_views(ex, "jet", 0.5) if v.method == "guided_backprop")
    weak_view = dataclasses.replace(own, picture=render_rgb(weak.rgb))
    drawn = shared.view(weak_view, weak, ex.image)
    # grey = 0 stays grey; the weak gradients stay close to grey instead of spanning the full range
    spread = np.abs(drawn.picture.astype(int) - 128).mean()
    assert spread < 0.5 * np.abs(weak_view.picture.astype(int) - 128).mean()
    assert "scale shared by the 2 maps" in drawn.caption


def test_the_sanity_steps_carry_their_raw_maps_and_go_on_one_scale(explanation):
    bundle, image, _ = explanation
    steps = randomisation_test(bundle, image, "gradcam", layer="relu")
    assert all(step.raw is not None for step in steps)
    pictures = scale.step_pictures(steps, "gradcam", np.asarray(image.image.resize((32, 32))), "jet", 0.5)
    assert pictures is not None and len(pictures) == len(steps)
    shared = scale.SharedScale.over(("gradcam", s.raw, s.map) for s in steps)
    tops = [shared.values("gradcam", s.raw, s.map) for s in steps]
    tops = [t.max() for t in tops if t is not None]
    assert max(tops) == pytest.approx(1.0) and min(tops) < 1


def _script() -> None:
    from cnnvis_ui import scale, state

    state.init()
    scale.toggle()
    state.sync_url()


def test_the_switch_round_trips_in_the_url():
    at = AppTest.from_function(_script, default_timeout=30).run()
    assert not at.exception
    switch = at.toggle(key=state.widget(state.SHARED_SCALE))
    assert switch.value is False and "same_scale" not in at.query_params
    switch.set_value(True).run()
    assert at.session_state[state.SHARED_SCALE] is True
    assert at.query_params["same_scale"] in ("1", ["1"])
    link = AppTest.from_function(_script, default_timeout=30)
    for name in at.query_params:
        value = at.query_params[name]
        link.query_params[name] = value[-1] if isinstance(value, list) else value
    link.run()
    assert link.toggle(key=state.widget(state.SHARED_SCALE)).value is True


PAGES = state.__file__.rsplit("/", 2)[0] + "/pages"


@pytest.mark.usefixtures("fresh_caches", "one_torch_thread")
def test_compare_puts_its_maps_on_one_scale_when_asked():
    at = AppTest.from_file(f"{PAGES}/compare.py", default_timeout=120).run()
    assert not at.exception
    assert not [c for c in at.caption if "scale shared" in c.value]
    at.toggle(key=state.widget(state.SHARED_SCALE)).set_value(True).run()
    assert not at.exception
    said = plain("scale shared by the 3 maps: 1 = the strongest of them")
    shared = [c.value for c in at.caption if said in c.value]
    assert len(shared) == 3  # one model × three images
    assert at.query_params["same_scale"] in ("1", ["1"])


@pytest.mark.usefixtures("fresh_caches", "one_torch_thread")
def test_the_tank_story_shares_one_scale_by_default():
    at = AppTest.from_file(f"{PAGES}/stories.py", default_timeout=180).run()
    assert not at.exception
    assert len([c for c in at.caption if "scale shared by the 2 maps" in c.value]) == 2
    at.toggle(key=state.widget(state.TANK_SHARED_SCALE)).set_value(False).run()
    assert not at.exception and not [c for c in at.caption if "scale shared" in c.value]
