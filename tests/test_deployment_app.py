"""Deployment mode in the dashboard (AppTest): a server exposed beyond loopback refuses TorchScript uploads with a
sentence, says so in the "Use your own model" form, and still takes a state_dict."""

from __future__ import annotations

from pathlib import Path

import pytest
from hardening_cases import SmallNet, torch_saved, torchscript
from streamlit import config
from streamlit.testing.v1 import AppTest

from cnnvis_engine.models import load_model
from cnnvis_engine.models.user_files import TORCHSCRIPT_OFF
from cnnvis_ui import compute, sidebar, state

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def exposed(monkeypatch: pytest.MonkeyPatch):
    """The server as if started with --server.address 0.0.0.0, and no CNNVIS_ALLOW_TORCHSCRIPT."""
    monkeypatch.delenv("CNNVIS_ALLOW_TORCHSCRIPT", raising=False)
    compute.clear_all()
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", before)
    compute.clear_all()


def uploader(at: AppTest, key: str):
    return next(f for f in at.get("file_uploader") if f.key == key)


def test_an_exposed_server_refuses_torchscript_says_so_and_takes_a_state_dict(exposed):
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60).run()
    assert sidebar.TORCHSCRIPT_OFF_NOTE in [caption.value for caption in at.sidebar.caption]
    uploader(at, state.MODEL_FILE).set_value(("mine.pt", torchscript(SmallNet()), "application/octet-stream"))
    at.button(key="load-user-model").click().run()
    assert not at.exception
    assert at.session_state[state.USER_MODEL_ERROR] == TORCHSCRIPT_OFF
    assert TORCHSCRIPT_OFF in next(error.value for error in at.sidebar.error).replace("\\", "")
    assert at.session_state[state.MODEL] != state.USER_MODEL_CHOICE

    weights = torch_saved(load_model("regnet_y_400mf", "random").module.state_dict())
    uploader(at, state.MODEL_FILE).set_value(("regnet.pth", weights, "application/octet-stream"))
    at.selectbox(key=state.MODEL_ARCHITECTURE).set_value("regnet_y_400mf")
    at.button(key="load-user-model").click().run()
    assert not at.exception and not at.session_state[state.USER_MODEL_ERROR]
    assert at.session_state[state.MODEL] == state.USER_MODEL_CHOICE
