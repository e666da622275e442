"""Compare and Sanity offer your models like any other (AppTest, page files run directly; see test_app.py's note):
the model uploaded in this session and a model served by `cnnvis serve` / `cnnvis.show` (`offer_model`)."""

from __future__ import annotations

import io

import pytest
import torch
from streamlit.testing.v1 import AppTest
from test_app import COMPARE, SANITY, TinyNet, step_captions
from torch import nn

from cnnvis_engine.models import offer_model, withdraw_model, wrap_module
from cnnvis_ui import state

pytestmark = pytest.mark.usefixtures("fresh_caches")


@pytest.fixture
def served():
    torch.manual_seed(1)
    module = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3)
    )
    spec = offer_model(wrap_module(module, name="ServedNet", labels=["a", "b", "c"], input_size=(32, 32)))
    yield spec
    withdraw_model(spec.name)


def uploaded_tiny_model() -> dict:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(TinyNet().eval()), buffer)
    return {"key": "tiny-key", "filename": "tiny.pt", "architecture": None, "data": buffer.getvalue(), "labels": None}


def test_compare_offers_the_served_and_the_uploaded_model(served):
    at = AppTest.from_file(COMPARE, default_timeout=120)
    at.session_state[state.USER_MODEL] = uploaded_tiny_model()
    at.run()
    assert not at.exception
    models = at.multiselect(key=state.widget(state.COMPARE_MODELS))
    assert models.options[0] == "ServedNet · your model as you gave it"  # served: first, and chosen by default
    assert models.value == ["servednet:yours"]
    assert models.options[-1] == "Your model: tiny.pt · weights from your file"


def test_compare_draws_rows_for_the_served_and_the_uploaded_model(served):
    """Chosen through the plain key before the first run: AppTest's set_value formats the options outside a script
    run, where the upload is not in session state, so it cannot pick the uploaded model's option."""
    at = AppTest.from_file(COMPARE, default_timeout=120)
    at.session_state[state.USER_MODEL] = uploaded_tiny_model()
    at.session_state[state.COMPARE_MODELS] = ["servednet:yours", f"{state.USER_MODEL_CHOICE}:file"]
    at.session_state[state.COMPARE_METHOD] = "saliency"  # the upload is TorchScript: no layers for Grad-CAM
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 6  # two models × three images
    rows = [m.value for m in at.markdown]
    assert any(r.startswith("**ServedNet**") for r in rows)
    assert any(r.startswith("**Your model") and "tiny.pt" in r for r in rows)


@pytest.mark.parametrize("which", ["served", "uploaded"])
def test_sanity_runs_on_the_served_and_the_uploaded_model(served, which):
    at = AppTest.from_file(SANITY, default_timeout=90)
    if which == "served":
        at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = served.name, "yours"
    else:
        at.session_state[state.USER_MODEL] = uploaded_tiny_model()
        at.session_state[state.MODEL], at.session_state[state.WEIGHTS] = state.USER_MODEL_CHOICE, "file"
    at.session_state[state.SANITY_SECOND] = state.NO_METHOD
    at.session_state[state.SANITY_METHOD] = "saliency"  # the upload is TorchScript: no layers for Grad-CAM
    at.run()
    assert not at.exception and not at.warning
    at.button(key="sanity-run").click().run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1  # the Spearman chart over the randomised layers
    captions = step_captions(at)
    assert captions[0] == "trained model · ρ = 1.00"
    if which == "served":  # then one map per randomised layer: the linear head, then the convolution too
        assert len(captions) == 3
