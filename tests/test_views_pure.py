"""`cnnvis_ui.views` is pure view data (issue 25): engine results in, `PanelView`s out, without Streamlit — it
imports with Streamlit blocked, and its panels are checked on real engine results of the tiny model."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from conftest import ROOT, make_tiny_module

from cnnvis_engine import EngineError, Explainer, Explanation, Prediction
from cnnvis_engine.images import DecodedImage
from cnnvis_engine.models import ModelBundle
from cnnvis_ui import views

_BLOCKED_IMPORT = textwrap.dedent(
    """
    import importlib
    import sys

    class NoStreamlit:
        def find_spec(self, name, path=None, target=None):
            if name == "streamlit" or name.startswith("streamlit."):
                raise ImportError(f"streamlit is blocked here ({name})")
            return None

    sys.meta_path.insert(0, NoStreamlit())
    for module in ("cnnvis_ui.views", "cnnvis_ui.curves", "cnnvis_ui.charts", "cnnvis_ui.concepts_view"):
        importlib.import_module(module)
    assert not [name for name in sys.modules if name.split(".")[0] == "streamlit"]
    print("imported without streamlit")
    try:  # the negative case: a module that draws does need it, so the blocker is seen to work
        import cnnvis_ui.panels
    except ImportError as error:
        print(error)
    """
)


def test_the_view_modules_import_with_streamlit_blocked() -> None:
    """One subprocess (importing torch is the slow part): views, curves and charts import with `streamlit`
    blocked, and `panels`, which draws, fails there (the blocker works)."""
    done = subprocess.run(
        [sys.executable, "-c", _BLOCKED_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["imported without streamlit", "streamlit is blocked here (streamlit)"]


@pytest.fixture
def gradcam(tiny_bundle: ModelBundle, tiny_image: DecodedImage) -> Explanation:
    return Explainer(tiny_bundle).explain(tiny_image, methods=["gradcam"], layer="relu")


def _hand_gradcam(bundle: ModelBundle, image: DecodedImage, target: int) -> np.ndarray:
    """Grad-CAM of the tiny model by hand: A = relu(conv(x)); the score is fc(mean of A), so its gradient at every
    cell of channel k is fc.weight[target, k] / 16 and Grad-CAM = relu(sum_k fc.weight[target, k] / 16 * A_k)."""
    x, _, _ = bundle.batch([image])
    module = bundle.module
    with torch.no_grad():
        activation = torch.relu(module.conv(x))[0]  # (2, 4, 4)
        weights = module.fc.weight[target] / activation[0].numel()
        return torch.relu(torch.einsum("k,khw->hw", weights, activation)).numpy()


def test_a_gradcam_result_becomes_a_panel_with_its_values_legend_and_caption(
    gradcam: Explanation, tiny_bundle: ModelBundle, tiny_image: DecodedImage
) -> None:
    (view,) = views.method_views(gradcam, "viridis", 0.4)
    expected = _hand_gradcam(tiny_bundle, tiny_image, gradcam.target.index)
    assert view.key == "gradcam" and view.method == "gradcam" and view.title == "Grad-CAM"
    assert view.picture is not None and view.picture.shape == (4, 4, 3) and view.picture.dtype == np.uint8
    assert view.hover is not None and view.hover.label == "Grad-CAM"
    np.testing.assert_allclose(view.hover.values, expected, rtol=1e-4, atol=1e-6)  # the raw map, cell by cell
    assert view.hover.text[1, 2] == "row 1, col 2 of 4×4"
    assert view.legend == views.Legend("viridis", "0: no evidence", "1: strongest in this map")
    assert view.caption == f"relu · {gradcam.target.label}"
    assert view.note == "" and view.level == "info"


def test_display_settings_change_only_the_picture(gradcam: Explanation) -> None:
    (jet,) = views.method_views(gradcam, "jet", 0.4)
    (magma,) = views.method_views(gradcam, "magma", 0.9)
    assert not np.array_equal(jet.picture, magma.picture)
    np.testing.assert_array_equal(jet.hover.values, magma.hover.values)
    assert magma.legend is not None and magma.legend.colormap == "magma"


def test_a_flat_map_says_so_instead_of_a_uniform_picture(tiny_image: DecodedImage) -> None:
    """A model whose last weights are zero gives Grad-CAM 0 everywhere: the panel says it is flat."""
    bundle = ModelBundle(
        name="tiny-flat",
        module=_zero_classifier(),
        class_names=("zero", "one", "two"),
        input_size=(4, 4),
        weights_source="random",
    )
    explanation = Explainer(bundle).explain(tiny_image, methods=["gradcam"], layer="relu")
    (view,) = views.method_views(explanation, "jet", 0.5)
    assert view.picture is None and view.hover is None
    assert view.note.startswith("Flat map (") and "the same value (0) everywhere" in view.note


def _zero_classifier() -> torch.nn.Module:

    module = make_tiny_module()
    with torch.no_grad():
        module.fc.weight.zero_()
    return module


def test_hover_grids_are_pooled_to_the_limit_and_cover_the_tiles() -> None:
    fine = np.arange(256 * 128, dtype=np.float32).reshape(256, 128)
    hover = views.map_hover(fine, "activation", limit=64)
    assert hover.values.shape == (64, 32) and hover.label.startswith("mean of 4×4 pixels")
    assert hover.values[0, 0] == pytest.approx(fine[:4, :4].mean())
    tiles = views.tile_hover(np.ones((5, 8, 8), np.float32), [0, 3], columns=2, tile=20, gap=2, label="activation")
    assert tiles.values.shape == (8, 16) and set(tiles.text[0]) == {"channel 0", "channel 3"}
    assert tiles.x is not None and tiles.x[0] == pytest.approx(20 / 16 - 0.5)


def test_an_engine_error_becomes_the_panel_of_its_method() -> None:
    view = views.error_view("guided_backprop", str(EngineError("The model failed on this image.")))
    assert (view.key, view.title, view.level) == ("saliency", "Saliency", "error")  # saliency's panel, both modes
    assert view.note == "The model failed on this image." and view.picture is None


def test_report_rows_and_stamp_come_from_plain_values(gradcam: Explanation) -> None:
    predictions = (Prediction(2, "two", 0.9012), Prediction(0, "zero", 0.0004))
    assert views.predictions_row(predictions) == {"Top predictions": "two 90% · zero <0.1%"}
    assert views.predictions_row(()) == {}
    stamp = views.report_stamp("tiny", "random", "a picture", gradcam, {"Colormap": "jet"})
    assert (stamp.model, stamp.weights, stamp.image, stamp.layer) == ("tiny", "random", "a picture", "relu")
    assert stamp.target == gradcam.target.label and stamp.settings == {"Colormap": "jet"}
    assert stamp.title == "cnnvis — tiny on a picture"
    assert views.report_stamp("tiny", "random", "", None, {}).title == "cnnvis — tiny on an image"


def test_the_original_picture_is_shown_with_its_size(tiny_image: DecodedImage) -> None:
    view = views.original_view(tiny_image, "eight pixels")
    assert view.picture is not None and view.picture.shape == (8, 8, 3)
    assert view.caption == "eight pixels · 8×8"
