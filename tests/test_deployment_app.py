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
from cnnvis_ui import model_cache, result_cache, sidebar, state

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def exposed(monkeypatch: pytest.MonkeyPatch):
    """The server as if started with --server.address 0.0.0.0, and no CNNVIS_ALLOW_TORCHSCRIPT."""
    monkeypatch.delenv("CNNVIS_ALLOW_TORCHSCRIPT", raising=False)
    result_cache.clear_all()
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    yield
    config.set_option("server.address", before)
    result_cache.clear_all()


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


# ----- which models an exposed server loads (issue 21) ------------------------------------------------------------
def test_the_parameter_cap_and_allowlist_read_from_the_environment():
    from cnnvis_ui import uploads

    registered = frozenset({"resnet50", "efficientnet_lite0"})
    assert uploads.max_model_params({}) == uploads.DEFAULT_MAX_PARAMS == 150_000_000
    assert uploads.max_model_params({uploads.MAX_MODEL_PARAMS: "300M"}) == 300_000_000
    assert uploads.max_model_params({uploads.MAX_MODEL_PARAMS: "2_000_000"}) == 2_000_000
    assert uploads.max_model_params({uploads.MAX_MODEL_PARAMS: "0"}) is None
    assert uploads.max_model_params({uploads.MAX_MODEL_PARAMS: "lots"}) == uploads.DEFAULT_MAX_PARAMS
    assert uploads.model_allowlist("127.0.0.1", registered, {}) is None  # a person's own machine: every model
    assert uploads.model_allowlist("0.0.0.0", registered, {}) == registered  # exposed: the registered ones
    assert uploads.model_allowlist("0.0.0.0", registered, {uploads.MODEL_ALLOWLIST: "resnet50, timm:resnet18"}) == {
        "resnet50",
        "timm:resnet18",
    }
    assert uploads.model_allowlist("0.0.0.0", registered, {uploads.MODEL_ALLOWLIST: "*"}) is None
    assert uploads.model_allowlist("127.0.0.1", registered, {uploads.MODEL_ALLOWLIST: "resnet50"}) == {"resnet50"}


def _explore_with(params: dict[str, str]) -> AppTest:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=120)
    for name, value in params.items():
        at.query_params[name] = value
    return at.run()


def test_an_exposed_server_offers_only_allowed_models_and_refuses_a_link_to_another(exposed, monkeypatch):
    monkeypatch.delenv("CNNVIS_MODEL_ALLOWLIST", raising=False)
    at = _explore_with({"model": "timm:resnet18", "weights": "random", "image": "sample:cat"})
    assert not at.exception
    offered = at.selectbox(key=state.widget(state.MODEL)).options
    assert "efficientnet_lite0" in offered and "resnet50" in offered
    assert not [name for name in offered if ":" in name]  # no torchvision: or timm: zoo name
    assert at.session_state[state.MODEL] == model_cache.default_model().name
    notes = [w.value.replace("\\", "") for w in at.sidebar.warning]
    assert any("this server does not offer the model 'timm:resnet18'" in note for note in notes), notes

    monkeypatch.setenv("CNNVIS_MODEL_ALLOWLIST", "efficientnet_lite0,timm:resnet18")
    result_cache.clear_all()
    at = _explore_with({"model": "timm:resnet18", "weights": "random", "image": "sample:cat"})
    assert not at.exception
    assert at.selectbox(key=state.widget(state.MODEL)).options == ["efficientnet_lite0", "timm:resnet18"]
    assert at.session_state[state.MODEL] == "timm:resnet18"
    assert any(m.value.replace("\\", "").startswith("**timm:resnet18") and "explaining" in m.value for m in at.markdown)


def test_a_model_over_the_parameter_cap_is_a_sentence_where_the_panels_would_be(monkeypatch):
    """The probe's link: vit_l_16 with random weights took the server from 1.05 to 2.57 GB. Now it is refused before
    it is built (torchvision declares its parameter count)."""
    import torchvision

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(torchvision.models, "get_model", no_build)
    result_cache.clear_all()
    at = _explore_with({"model": "torchvision:vit_l_16", "weights": "random", "image": "sample:cat"})
    assert not at.exception
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any(
        "torchvision:vit_l_16 has 304 million parameters; this server loads models of up to 150 million" in w
        for w in warnings
    ), warnings
    at = _explore_with({"model": "torchvision:vit_l_16", "weights": "pretrained", "image": "sample:cat"})
    assert any("304 million parameters" in w.value for w in at.warning)
    assert "use-random" not in [button.key for button in at.button]  # random weights would be refused too
    monkeypatch.setenv("CNNVIS_MAX_MODEL_PARAMS", "10M")
    result_cache.clear_all()
    at = _explore_with({"model": "torchvision:resnet18", "weights": "random", "image": "sample:cat"})
    assert any("has 12 million parameters" in w.value for w in at.warning)
    result_cache.clear_all()
