"""The report builder: a panel set -> a labelled PNG that decodes and an HTML page that works offline."""

from __future__ import annotations

import base64
import io
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from PIL import Image

from cnnvis_engine import EngineError
from cnnvis_engine.report import ReportPanel, ReportStamp, library_versions, render_report_html, render_report_png


@pytest.fixture
def panels() -> list[ReportPanel]:
    rng = np.random.default_rng(0)
    return [
        ReportPanel("Input image", rng.integers(0, 256, (224, 224, 3), dtype=np.uint8), caption="cat.jpg"),
        ReportPanel("Kernels", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), caption="conv1 · 3×3"),
        ReportPanel("CAM", None, note="CAM needs global average pooling right before the last Linear layer."),
        ReportPanel("Grad-CAM", np.full((224, 224, 3), 200, np.uint8), caption="layer4 · <b>tabby</b> & co"),
    ]


@pytest.fixture
def stamp() -> ReportStamp:
    return ReportStamp(
        model="resnet18",
        weights="random initialisation (torch.manual_seed(0))",
        layer="layer4",
        target="tabby (class 281)",
        image="Chelsea the cat",
        settings={"Colormap": "jet", "Overlay opacity": "0.50"},
        versions={"python": "3.11", "torch": "2.x"},
        created=datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
    )


def test_png_decodes_with_a_cell_per_panel(panels, stamp):
    png = render_report_png(panels, stamp, columns=2, tile=200)
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.width == 2 * 24 + 2 * 200 + 20
    pixels = np.asarray(image)
    assert pixels.std() > 10  # not blank
    # The uniform Grad-CAM picture (value 200) is pasted somewhere, scaled to a 200×200 block.
    assert ((pixels == 200).all(axis=2)).sum() >= 200 * 200 * 0.95


def test_png_grows_with_long_notes_instead_of_cutting_them(panels, stamp):
    short = Image.open(io.BytesIO(render_report_png(panels, stamp, columns=4)))
    long_note = [*panels[:2], ReportPanel("CAM", None, note="why " * 400), panels[3]]
    tall = Image.open(io.BytesIO(render_report_png(long_note, stamp, columns=4)))
    assert tall.height > short.height


def test_html_is_self_contained_and_escaped(panels, stamp):
    page = render_report_html(panels, stamp)
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 3  # the not-applicable panel shows its note instead
    for uri in uris:
        Image.open(io.BytesIO(base64.b64decode(uri))).load()
    assert "&lt;b&gt;tabby&lt;/b&gt; &amp; co" in page and "<b>tabby</b>" not in page
    assert "CAM needs global average pooling" in page


def test_stamp_carries_model_weights_layer_target_settings_versions_and_date(stamp):
    rows = dict(stamp.rows())
    assert rows["Model"] == "resnet18"
    assert rows["Weights"].startswith("random")
    assert rows["Layer"] == "layer4" and rows["Target"] == "tabby (class 281)"
    assert rows["Colormap"] == "jet" and rows["Overlay opacity"] == "0.50"
    assert "torch 2.x" in rows["Versions"]
    assert rows["Date"].startswith("2025-01-02 03:04")
    page = render_report_html([ReportPanel("x", np.zeros((8, 8, 3), np.uint8))], stamp)
    for value in rows.values():
        assert value.replace("&", "&amp;") in page


def test_library_versions_lists_python_and_installed_packages():
    versions = library_versions()
    assert versions["python"].count(".") == 2
    assert "numpy" in versions and "pillow" in versions
    assert "surely-not-installed-package" not in library_versions(["surely-not-installed-package"])


def test_refuses_empty_sets_and_wrong_shapes(stamp):
    with pytest.raises(EngineError):
        render_report_png([], stamp)
    with pytest.raises(EngineError):
        render_report_html([], stamp)
    with pytest.raises(EngineError, match="shape"):
        render_report_png([ReportPanel("bad", np.zeros((4, 4, 7), np.uint8))], stamp)


def test_grayscale_and_float_pictures_are_converted(stamp):
    panels = [ReportPanel("gray", np.full((16, 16), 128, np.uint8)), ReportPanel("float", np.full((16, 16, 3), 300.0))]
    image = Image.open(io.BytesIO(render_report_png(panels, stamp)))
    assert image.size[0] > 0


def test_a_panel_png_carries_its_title_and_caption_above_and_below_the_unscaled_picture():
    import io

    import numpy as np
    from PIL import Image

    from cnnvis_engine.report import ReportPanel, render_panel_png

    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
    panel = ReportPanel("Grad-CAM", picture, caption="blocks.5 · cup (class 968)")
    png = render_panel_png(panel)
    assert png == render_panel_png(panel)  # the same panel, the same bytes (a shared link's PNG matches)
    saved = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert saved.shape[1] == 224 + 24 and saved.shape[0] > 224 + 40
    rows = [y for y in range(saved.shape[0]) if np.array_equal(saved[y, 12:236], picture[0])]
    assert rows, "the picture is in the PNG at its own size"
    top = rows[0]
    assert (saved[:top] < 100).any() and (saved[top + 224 :] < 160).any()  # dark title text above, caption below
