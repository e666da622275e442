"""Page logic through Streamlit's AppTest: shared choices, re-targeting, errors in place, cache hits.

AppTest quirk (see ../shared/NOTES.md): with a folder named `pages/`, a rerun executes the page file without the
entry script, so the sidebar's widgets exist only on the first run. Shared choices therefore live in plain
session-state keys, which these tests set and read directly; widget callbacks still run on reruns.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnvis_engine import EngineError, Explainer
from cnnvis_ui import result_cache, state

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = str(ROOT / "dashboard.py")
EXPLORE, LAYERS, COMPARE, SANITY = (
    str(ROOT / "pages" / f"{name}.py") for name in ("explore", "layers", "compare", "sanity")
)

pytestmark = pytest.mark.usefixtures("fresh_caches")
EXPLORE_PANELS = {"Input image", "Grad-CAM", "Guided Grad-CAM", "CAM", "Saliency (vanilla)", "Feature maps"}


def app(path: str = DASHBOARD, **session: object) -> AppTest:
    at = AppTest.from_file(path, default_timeout=60)
    for key, value in session.items():
        at.session_state[key] = value
    return at.run()


def bold_titles(at: AppTest) -> set[str]:
    return {m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")}


def summary(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "explaining" in m.value)


def uploader(at: AppTest, key: str):
    return next(f for f in at.get("file_uploader") if f.key == key)


def png(size=(64, 48), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def count_explains(monkeypatch):
    """Counts engine calls (Explainer.explain) made by the app."""
    calls = []
    original = Explainer.explain

    def counting(self, image, **kwargs):
        calls.append(kwargs.get("methods"))
        return original(self, image, **kwargs)

    monkeypatch.setattr(Explainer, "explain", counting)
    return calls


def test_default_explore_page_shows_every_panel_for_the_cat():
    at = app()
    assert not at.exception
    assert EXPLORE_PANELS <= bold_titles(at)
    assert "efficientnet_lite0" in summary(at) and "Egyptian cat" in summary(at) and "`bn2`" in summary(at)
    top5 = [at.button(key=f"top5-{rank}") for rank in range(5)]
    assert top5[0].label.startswith("Egyptian cat")
    assert at.selectbox(key=state.widget(state.LAYER)).value == state.AUTO
    assert len(at.get("plotly_chart")) == 6
    assert not at.error and not at.warning


def test_top5_button_retargets_every_panel():
    at = app()
    second = at.button(key="top5-1")
    name = second.label.split(" · ")[0]
    second.click().run()
    assert not at.exception
    assert at.session_state[state.TARGET] == 282
    assert f"{name} (class 282)" in summary(at)
    captions = [c.value for c in at.caption]
    assert sum(f"{name} (class 282)" in c for c in captions) >= 4  # saliency, CAM, Grad-CAM, guided Grad-CAM


def test_page_reads_shared_choices_from_plain_session_keys():
    at = app(EXPLORE, **{state.MODEL: "resnet18", state.WEIGHTS: "random", state.LAYER: "layer3", state.TARGET: 281})
    assert not at.exception
    assert "resnet18 · random weights" in summary(at)
    assert "tabby (class 281)" in summary(at) and "`layer3`" in summary(at)
    assert any(c.value.startswith("layer4 ·") for c in at.caption)  # CAM keeps the global pool's input


def test_cam_not_applicable_says_why():
    at = app(EXPLORE, **{state.MODEL: "alexnet", state.WEIGHTS: "random"})
    assert not at.exception
    reasons = [i.value for i in at.info if i.value.startswith("Not applicable")]
    assert len(reasons) == 1 and "Linear" in reasons[0]
    assert {"Grad-CAM", "Guided Grad-CAM", "Feature maps"} <= bold_titles(at)


def test_weights_that_cannot_be_had_offer_random_weights_explicitly():
    at = app(**{state.MODEL: "resnet50", state.WEIGHTS: "pretrained"})
    assert not at.exception
    warnings = [w.value for w in at.warning]
    assert any("resnet50" in w and "random weights" in w for w in warnings)
    assert [c.key for c in at.get("plotly_chart")] == ["chart-input"]  # nothing drawn from weights we lack
    at.button(key="use-random").click().run()
    assert not at.exception
    assert at.session_state[state.WEIGHTS] == "random"
    assert "resnet50 · random weights" in summary(at)
    assert len(at.get("plotly_chart")) == 6


@pytest.mark.parametrize("page", [EXPLORE, LAYERS, SANITY])
def test_every_page_says_the_same_when_the_model_cannot_be_had(page):
    at = app(page, **{state.MODEL: "resnet50", state.WEIGHTS: "pretrained"})
    assert not at.exception
    warnings = [w.value for w in at.warning if w.value.endswith("Another model can be picked in the sidebar.")]
    assert len(warnings) == 1 and "resnet50" in warnings[0], [w.value for w in at.warning]
    assert warnings[0].lower().count("random weights") == 1, warnings[0]  # the advice is given once


def test_changing_the_model_resets_layer_and_target():
    at = app()
    at.session_state[state.LAYER] = "blocks.5"
    at.session_state[state.TARGET] = 3
    at.selectbox(key=state.widget(state.MODEL)).set_value("resnet18").run()
    assert (at.session_state[state.MODEL], at.session_state[state.WEIGHTS]) == ("resnet18", "pretrained")
    assert at.session_state[state.LAYER] is None and at.session_state[state.TARGET] is None


def test_a_bad_upload_shows_why_and_keeps_the_session(count_explains):
    at = app()
    uploader(at, state.IMAGE_UPLOADER).set_value(("broken.png", b"\x89PNG\r\n\x1a\n not really", "image/png"))
    at.run()
    assert not at.exception
    assert "broken.png was not used" in at.session_state[state.UPLOAD_ERROR]
    assert at.session_state[state.IMAGE] == state.DEFAULT_IMAGE
    assert EXPLORE_PANELS <= bold_titles(at)


def test_a_good_upload_becomes_the_image():
    at = app()
    uploader(at, state.IMAGE_UPLOADER).set_value(("red.png", png(), "image/png"))
    at.run()
    assert not at.exception
    assert at.session_state[state.IMAGE].startswith("upload:")
    assert any(c.value.startswith("red.png · 224×224") for c in at.caption)
    assert not at.session_state[state.UPLOAD_ERROR]


def test_display_settings_only_redraw(count_explains):
    at = app()
    assert count_explains
    count_explains.clear()
    at.selectbox(key=state.widget(state.COLORMAP)).set_value("viridis").run()
    at.slider(key=state.widget(state.OPACITY)).set_value(0.8).run()
    assert not at.exception
    assert at.session_state[state.COLORMAP] == "viridis" and at.session_state[state.OPACITY] == 0.8
    assert count_explains == []  # cache hits: nothing recomputed


def test_saliency_switch_shows_guided_backprop():
    at = app()
    at.get("button_group")[0].set_value("guided_backprop").run()
    assert not at.exception
    assert "Saliency (guided backprop)" in bold_titles(at)


def test_an_engine_error_replaces_only_the_panels_it_concerns():
    at = app(EXPLORE, **{state.TARGET: 5000})  # no such class
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 5 and all("Class 5000 does not exist" in e for e in errors)  # one per method panel
    assert "Input image" in bold_titles(at) and at.dataframe  # ... the rest of the page still draws


def extra_methods(at: AppTest):
    return next(group for group in at.get("button_group") if group.key == state.widget(state.EXTRA_METHODS))


def figure(at: AppTest, key: str) -> dict:
    """A plotly chart's figure as sent to the browser, its typed arrays decoded."""
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    spec = json.loads(chart.proto.spec)
    for trace in spec["data"]:
        for axis in ("x", "y"):
            if isinstance(trace.get(axis), dict):
                trace[axis] = np.frombuffer(base64.b64decode(trace[axis]["bdata"]), trace[axis]["dtype"]).tolist()
    return spec


def test_an_extra_method_adds_its_panel_and_only_it_is_computed(count_explains):
    at = app()
    assert extra_methods(at).value == []  # none by default: the page stays fast
    count_explains.clear()
    extra_methods(at).set_value(["gradcam++", "eigencam"]).run()
    assert not at.exception and not at.error
    assert at.session_state[state.EXTRA_METHODS] == ["gradcam++", "eigencam"]
    assert {"Grad-CAM++", "Eigen-CAM"} <= bold_titles(at) and EXPLORE_PANELS <= bold_titles(at)
    assert len(at.get("plotly_chart")) == 8
    assert {"About Grad-CAM++", "About Eigen-CAM"} <= {e.label for e in at.expander}  # summary and paper link
    assert "bn2 · the same for every class" in [c.value for c in at.caption]  # Eigen-CAM has no target
    assert sorted(count_explains) == [["eigencam"], ["gradcam++"]]  # the classic panels came from the cache
    at.switch_page("pages/layers.py").run()
    assert at.title[0].value == "Inside the layers" and "Grad-CAM++" not in bold_titles(at)
    at.switch_page("pages/explore.py").run()
    assert {"Grad-CAM++", "Eigen-CAM"} <= bold_titles(at)  # the choice is remembered


def test_faithfulness_scores_each_map_and_plots_labelled_curves(monkeypatch):
    calls = []
    original = result_cache.evaluate_map
    monkeypatch.setattr(result_cache, "evaluate_map", lambda *a, **k: calls.append(1) or original(*a, **k))
    at = app()
    assert not calls and "faithfulness-chart" not in [c.key for c in at.get("plotly_chart")]  # opt-in
    at.toggle(key=state.widget(state.FAITHFULNESS)).set_value(True).run()
    assert not at.exception and not at.error
    assert len(calls) == 3  # Grad-CAM, CAM and saliency
    scored = [c.value for c in at.caption if "deletion AUC" in c.value]
    assert len(scored) == 3 and all("insertion AUC" in c and "average drop" in c for c in scored)
    spec = figure(at, "faithfulness-chart")
    assert spec["layout"]["xaxis"]["title"]["text"] == "fraction of pixels removed"
    assert spec["layout"]["xaxis2"]["title"]["text"] == "fraction of pixels inserted"
    assert spec["layout"]["yaxis"]["title"]["text"] == "class probability"
    assert len(spec["data"]) == 6  # a deletion and an insertion curve per map
    deletion = spec["data"][0]["y"]
    assert len(deletion) == result_cache.FAITHFULNESS_STEPS + 1 and deletion[0] > 0.5 and deletion[-1] < deletion[0]
    table = at.dataframe[-1].value
    assert list(table["Map"]) == ["Grad-CAM", "CAM", "Saliency (vanilla)"]
    assert ((table["Deletion AUC (lower is better)"] > 0) & (table["Insertion AUC (higher is better)"] < 1)).all()
    at.toggle(key=state.widget(state.FAITHFULNESS)).set_value(False).run()
    at.toggle(key=state.widget(state.FAITHFULNESS)).set_value(True).run()
    assert len(calls) == 3  # cached


def test_engine_errors_in_extra_panels_and_scores_show_in_place(monkeypatch):
    def failing(*args, **kwargs):
        raise EngineError("The scores could not be computed.")

    monkeypatch.setattr(result_cache, "evaluate_map", failing)
    at = app(EXPLORE, **{state.EXTRA_METHODS: ["layercam"], state.FAITHFULNESS: True})
    assert not at.exception
    assert "Layer-CAM" in bold_titles(at) and len(at.get("plotly_chart")) == 7  # no curves to draw
    errors = [e.value for e in at.error]
    assert len(errors) == 4 and all("could not be scored: The scores could not be computed." in e for e in errors)
    at.session_state[state.TARGET] = 5000  # no such class: every method panel says so, the page still draws
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 6 and all("Class 5000 does not exist" in e for e in errors)
    assert {"Input image", "Layer-CAM"} <= bold_titles(at) and at.dataframe


def test_layers_page_feature_maps_kernels_and_trained_vs_random():
    at = app(LAYERS)
    assert not at.exception
    assert {"Feature maps", "Kernels", "Trained", "Untrained (random)"} <= bold_titles(at)
    at.select_slider(key=state.widget(state.FM_CHANNELS)).set_value(4).run()
    assert any("4 of 1280 channels" in c.value for c in at.caption)
    assert any("conv_stem · 32 kernels of 3×3, RGB patches" in c.value for c in at.caption)


def test_layers_page_explains_why_pretrained_kernels_are_missing():
    at = app(LAYERS, **{state.MODEL: "resnet18", state.WEIGHTS: "random"})
    assert not at.exception
    assert any("resnet18" in i.value and "random weights" in i.value for i in at.info)
    assert "Untrained (random)" in bold_titles(at)


def test_compare_offers_only_loadable_weights_and_random_on_request():
    at = app(COMPARE)
    assert not at.exception
    models = at.multiselect(key=state.widget(state.COMPARE_MODELS))
    assert models.options[0] == "efficientnet_lite0 · built-in ImageNet weights"
    assert not any("pretrained" in option or "random" in option for option in models.options)  # offline here
    assert models.value == ["efficientnet_lite0:embedded"]  # the sidebar's model
    assert len(at.get("plotly_chart")) == 3  # one model × three images
    at.toggle(key=state.widget(state.COMPARE_RANDOM)).set_value(True).run()
    models = at.multiselect(key=state.widget(state.COMPARE_MODELS))
    assert "resnet18 · random weights" in models.options and "resnet18 · pretrained weights" not in models.options
    models.set_value(["efficientnet_lite0:embedded", "resnet18:random"]).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 6
    assert any(m.value.startswith("**resnet18**") for m in at.markdown)


@pytest.fixture
def count_tests(monkeypatch):
    """The methods the page ran the randomisation test for (engine calls, not cache hits)."""
    calls = []
    original = result_cache.randomisation_test

    def counting(bundle, image, method, **kwargs):
        calls.append(method)
        return original(bundle, image, method, **kwargs)

    monkeypatch.setattr(result_cache, "randomisation_test", counting)
    return calls


def lines(at: AppTest) -> dict[str, list[float]]:
    """The Sanity chart's lines: Spearman correlation per step, by method title."""
    return {trace["name"]: trace["y"] for trace in figure(at, "sanity-chart")["data"]}


def step_captions(at: AppTest) -> list[str]:
    """The captions of the Sanity page's small maps (not the sidebar's sample pictures)."""
    return [caption for image in at.get("image") for caption in image.captions if "ρ = " in caption]


def test_sanity_page_runs_the_test_and_draws_the_chart_and_maps_once(count_tests):
    at = app().switch_page("pages/sanity.py").run()
    assert not at.exception and at.title[0].value.startswith("Sanity check")
    assert not at.get("plotly_chart") and not step_captions(at)  # nothing runs by itself
    assert at.selectbox(key=state.widget(state.SANITY_METHOD)).value == "gradcam"
    at.button(key="sanity-run").click().run()
    assert not at.exception and not at.error
    assert count_tests == ["gradcam", "guided_backprop"]
    found = lines(at)
    assert list(found) == ["Grad-CAM", "Guided backprop"]
    steps = len(found["Grad-CAM"])
    assert steps > 10 and all(values[0] == 1.0 for values in found.values())
    # the paper's finding on the trained default: Grad-CAM changes with the top layers, guided backprop hardly does
    assert found["Grad-CAM"][3] < 0.5 < found["Guided backprop"][3]
    captions = step_captions(at)
    assert len(captions) == 2 * steps
    assert captions[0] == "trained model · ρ = 1.00"
    assert captions[2].endswith(f" and above · ρ = {found['Grad-CAM'][2]:.2f}")  # cascading: layers pile up
    assert at.button(key="sanity-run").disabled  # nothing left to run for these choices
    at.switch_page("pages/explore.py").run()
    assert at.title[0].value == "What is the network looking at?"
    at.switch_page("pages/sanity.py").run()
    assert not at.exception and len(step_captions(at)) == 2 * steps
    assert count_tests == ["gradcam", "guided_backprop"]  # the way back costs nothing


def test_sanity_page_shows_an_engine_error_in_place_and_keeps_working():
    at = app(SANITY, **{state.TARGET: 5000})  # no such class
    at.button(key="sanity-run").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 2 and all("Class 5000 does not exist" in e for e in errors)  # one per method
    assert not at.get("plotly_chart")
    # new choices (a real class, one method, one layer at a time): the button offers to run them, and they run
    at.session_state[state.TARGET] = None
    at.session_state[state.SANITY_SECOND] = state.NO_METHOD
    at.session_state[state.SANITY_METHOD] = "layercam"
    at.run()
    at.get("button_group")[0].set_value("independent").run()
    assert not at.button(key="sanity-run").disabled
    at.button(key="sanity-run").click().run()
    assert not at.exception and not at.error
    assert list(lines(at)) == ["Layer-CAM"]
    chart = figure(at, "sanity-chart")
    assert chart["layout"]["xaxis"]["title"]["text"] == "the one layer randomised"
    captions = step_captions(at)
    assert len(captions) > 10 and not any(" and above" in caption for caption in captions)


def test_sanity_page_says_the_test_needs_trained_weights():
    at = app(SANITY, **{state.MODEL: "resnet18", state.WEIGHTS: "random"})
    assert not at.exception
    assert any("needs trained weights" in info.value for info in at.info)
    assert not at.button(key="sanity-run").disabled  # still allowed


class TinyNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_own_state_dict_with_labels_becomes_the_model():
    from cnnvis_engine import load_model

    buffer = io.BytesIO()
    torch.save(load_model("regnet_y_400mf", "random").module.state_dict(), buffer)
    labels = "".join(f"**thing** {i}\n" for i in range(1000)).encode()  # Markdown must show as typed
    at = app()
    uploader(at, state.MODEL_FILE).set_value(("regnet.pth", buffer.getvalue(), "application/octet-stream"))
    uploader(at, state.LABELS_FILE).set_value(("labels.txt", labels, "text/plain"))
    at.selectbox(key=state.MODEL_ARCHITECTURE).set_value("regnet_y_400mf")
    at.button(key="load-user-model").click().run()
    assert not at.exception and not at.session_state[state.USER_MODEL_ERROR]
    assert at.session_state[state.MODEL] == state.USER_MODEL_CHOICE
    assert "regnet.pth · weights from your file" in summary(at) and "\\*\\*thing\\*\\* " in summary(at)
    assert len(at.get("plotly_chart")) == 6


def test_own_torchscript_model_loads_and_never_breaks_the_page():
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(TinyNet().eval()), buffer)
    at = app()
    uploader(at, state.MODEL_FILE).set_value(("tiny.pt", buffer.getvalue(), "application/octet-stream"))
    at.button(key="load-user-model").click().run()
    assert not at.exception
    assert at.session_state[state.MODEL] == state.USER_MODEL_CHOICE and not at.session_state[state.USER_MODEL_ERROR]
    assert "Input image" in bold_titles(at)
    assert not at.error  # a TorchScript model is explained, not refused
    # Saliency draws; the methods that need layers or ReLUs hidden inside TorchScript say why, in their place.
    assert len(at.get("plotly_chart")) >= 2
    notes = " ".join(info.value for info in at.info)
    assert "Not applicable" in notes and "TorchScript" in notes
    assert len(at.get("plotly_chart")) + len(at.info) >= 6


def test_a_pickled_model_is_refused_with_the_way_out():
    buffer = io.BytesIO()
    torch.save(TinyNet(), buffer)
    at = app()
    uploader(at, state.MODEL_FILE).set_value(("whole.pt", buffer.getvalue(), "application/octet-stream"))
    at.button(key="load-user-model").click().run()
    assert not at.exception
    assert "torch.jit.script" in at.session_state[state.USER_MODEL_ERROR]
    assert at.session_state[state.MODEL] == "efficientnet_lite0"


def test_state_survives_a_page_switch():
    at = app()
    at.button(key="top5-2").click().run()
    target = at.session_state[state.TARGET]
    at.switch_page("pages/layers.py").run()
    assert not at.exception
    at.switch_page("pages/explore.py").run()
    assert at.session_state[state.TARGET] == target
    assert f"(class {target})" in summary(at)


def test_hover_grids_stay_small_and_cover_the_picture():
    from cnnvis_ui.views import map_hover, tile_hover

    hover = map_hover(np.random.default_rng(0).random((224, 224)).astype(np.float32), "x")
    assert hover.values.shape == (56, 56) and hover.label.startswith("mean of 4×4 pixels")
    coarse = map_hover(np.arange(49, dtype=np.float32).reshape(7, 7), "CAM")
    assert coarse.text[2, 3] == "row 2, col 3 of 7×7" and coarse.values[2, 3] == 17
    tiles = tile_hover(np.ones((64, 112, 112), np.float32), list(range(64)), 8, 64, 2, "activation")
    assert tiles.values.size <= 4096 and tiles.x.max() < 8 * 66 and tiles.text[0, 0] == "channel 0"


def test_an_onnx_model_and_its_data_file_upload_together(tmp_path):
    """torch.onnx.export's default writes model.onnx + model.onnx.data: both go in the one model uploader."""
    import warnings

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TinyNet().eval(), (torch.zeros(1, 3, 224, 224),), str(tmp_path / "tiny.onnx"))
    model, data = (tmp_path / "tiny.onnx").read_bytes(), (tmp_path / "tiny.onnx.data").read_bytes()
    at = app()
    uploader(at, state.MODEL_FILE).set_value(("tiny.onnx", model, "application/octet-stream"))
    at.button(key="load-user-model").click().run()
    assert "Upload the model's .onnx file together with the .onnx.data file" in at.session_state[state.USER_MODEL_ERROR]
    uploader(at, state.MODEL_FILE).set_value([("tiny.onnx.data", data, "application/octet-stream")])
    at.button(key="load-user-model").click().run()
    assert at.session_state[state.USER_MODEL_ERROR].startswith("Upload a model file (.onnx, .pt, .pth or .ts)")
    uploader(at, state.MODEL_FILE).set_value(  # an older upload stays in the list: the newest model counts
        [("old.pt", b"x", "application/octet-stream")]
        + [("tiny.onnx.data", data, "application/octet-stream"), ("tiny.onnx", model, "application/octet-stream")]
    )
    at.button(key="load-user-model").click().run()
    assert not at.exception and not at.session_state[state.USER_MODEL_ERROR], at.session_state[state.USER_MODEL_ERROR]
    assert at.session_state[state.MODEL] == state.USER_MODEL_CHOICE
    assert "tiny.onnx · weights from your file" in summary(at)
