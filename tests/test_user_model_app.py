"""The own-model form's preprocessing through Streamlit's AppTest: a custom mean/std typed in the sidebar reaches
the model (kept with it in the session), a bad one is a sentence, and the page goes on."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest
from torch import nn

from cnnvis_ui import model_cache, state

pytestmark = pytest.mark.usefixtures("fresh_caches")

DASHBOARD = str(Path(__file__).resolve().parent.parent / "dashboard.py")


def grayscale_torchscript() -> bytes:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)
        ).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_custom_grayscale_preprocessing_reaches_the_model_and_a_bad_mean_is_a_sentence():
    at = AppTest.from_file(DASHBOARD, default_timeout=90).run()
    next(f for f in at.get("file_uploader") if f.key == state.MODEL_FILE).set_value(
        ("gray.pt", grayscale_torchscript(), "application/octet-stream")
    )
    for key, value in {
        state.PREP_CUSTOM: True,
        state.PREP_HEIGHT: 28,
        state.PREP_WIDTH: 28,
        state.PREP_CHANNELS: 1,
        state.PREP_NORM: "custom",
        state.PREP_MEAN: "0.1307, 0.2",
        state.PREP_STD: "0.3081",
    }.items():
        at.session_state[key] = value
    at.button(key="load-user-model").click().run()
    assert not at.exception
    assert at.session_state[state.USER_MODEL_ERROR] == (
        "The mean must be one number, or three for R, G and B (for example 0.485, 0.456, 0.406)."
    )
    assert at.session_state[state.MODEL] == "efficientnet_lite0"  # the model we had stays

    at.session_state[state.PREP_MEAN] = "0.1307"
    at.button(key="load-user-model").click().run()
    assert not at.exception and not at.session_state[state.USER_MODEL_ERROR]
    user = at.session_state[state.USER_MODEL]
    assert user["preprocessing"] == ((28, 28), 1, ((0.1307,), (0.3081,), 255.0))
    bundle = model_cache.file_explainer(
        user["key"], user["filename"], None, user["data"], None, user["preprocessing"]
    ).bundle
    assert bundle.input_size == (28, 28) and bundle.channels == 1
    assert bundle.normalization.mean == (0.1307,) and bundle.normalization.std == (0.3081,)
    assert model_cache.describe_preprocessing(bundle) == (
        "It is fed 28×28 grayscale pictures (width × height) with mean 0.1307 and std 0.3081."
    )
