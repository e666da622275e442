"""An uploaded ONNX model, explained in its worker, in real Chromium: beyond Explore's panels
(test_onnx_browser.py), the faithfulness scores, the Sanity page's randomisation test and the Layers page's channel
gallery — the calls that now run whole in the worker — draw as for any other model."""

from __future__ import annotations

import pytest
from conftest import ROOT, dashboard_server
from test_browser import settle
from test_onnx_browser import alerts, load, open_form, sidebar, upload

from tests.onnx_cases import CLASSES, export, small_cnn

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def server():
    with dashboard_server(ARTIFACTS / "onnx-contained-browser-server.log") as (url, _):
        yield url


def test_an_onnx_upload_draws_its_scores_its_sanity_test_and_its_channel_gallery(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(server)
    settle(page, panels=6)
    model = tmp_path / "shapes.onnx"
    model.write_bytes(export(small_cnn(), (1, 3, 40, 48)))
    labels = tmp_path / "shapes.txt"
    labels.write_text("\n".join(CLASSES))
    open_form(page)
    upload(page, "_w_model_file", model)
    upload(page, "_w_labels_file", labels)
    load(page)
    settle(page, panels=6)
    assert not alerts(page) and "Your ONNX model shapes.onnx" in sidebar(page).inner_text()

    page.get_by_text("Score the maps (deletion, insertion, average drop)").click()
    settle(page, panels=6)
    page.locator(".st-key-faithfulness-chart .js-plotly-plot").first.wait_for()
    assert page.get_by_text("Deletion AUC (lower is better)").count() >= 1  # the table under the chart
    page.screenshot(path=ARTIFACTS / "onnx-contained-scores.png", full_page=True)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Sanity").click()
    page.get_by_text("Sanity check: does the map depend").wait_for()
    page.get_by_role("button", name="Run the test").click()
    page.wait_for_function("document.querySelectorAll('.st-key-sanity-gradcam img').length >= 5")
    settle(page)
    assert page.locator(".st-key-sanity-gradcam").get_by_text("trained model · ρ = 1.00").count() == 1
    page.screenshot(path=ARTIFACTS / "onnx-contained-sanity.png", full_page=True)

    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Layers").click()
    page.get_by_text("Inside the layers").wait_for()
    settle(page)
    page.get_by_text("Show what these channels look for").click()
    settle(page)
    page.locator(".st-key-panel-layer-gallery .js-plotly-plot").first.wait_for()
    assert "channels" in page.locator(".st-key-panel-layer-gallery").inner_text()
    page.screenshot(path=ARTIFACTS / "onnx-contained-gallery.png", full_page=True)
    assert page.get_by_test_id("stException").count() == 0
    assert "Your ONNX model shapes.onnx" in sidebar(page).inner_text()  # still the upload, on every page
    context.close()
