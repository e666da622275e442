"""The sidebar's own-model upload paths in real Chromium: an ONNX model with a labels file and chosen
preprocessing (its convolutions listed by node name, Grad-CAM drawn), an ONNX file with an operation the
converter lacks (a sentence; the dashboard goes on), and a resnet18 state_dict fine-tuned to three classes, fed
96×96 pictures chosen in the sidebar."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
import torchvision
from conftest import ROOT, dashboard_server
from PIL import Image
from test_browser import choose, settle
from torch import nn

from tests.onnx_cases import CLASSES, export, small_cnn, unsupported_op

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def server():
    with dashboard_server(ARTIFACTS / "onnx-browser-server.log") as (url, _):
        yield url


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(server)
    settle(page, panels=6)
    yield page
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-final.png", full_page=True)
    assert page.locator("[data-testid='stException']").count() == 0
    context.close()


def sidebar(page):
    return page.get_by_test_id("stSidebar")


def open_form(page) -> None:
    if not page.locator(".st-key-_w_model_file").is_visible():
        sidebar(page).get_by_text("Use your own model").click()
        settle(page)


def upload(page, key: str, path) -> None:
    page.locator(f".st-key-{key}").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    settle(page)


def load(page) -> None:
    sidebar(page).get_by_role("button", name="Load my model").click()
    settle(page)


def options(page, widget_key: str) -> list[str]:
    box = page.locator(f".st-key-{widget_key} input").first
    box.scroll_into_view_if_needed()
    box.click()
    texts = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return texts


def panel_pixels(page, key: str, name: str) -> np.ndarray:
    figure = page.locator(f".st-key-panel-{key} .js-plotly-plot").first
    figure.scroll_into_view_if_needed()
    png = figure.screenshot(path=ARTIFACTS / f"{name}-{key}.png")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def alerts(page) -> str:
    return " | ".join(sidebar(page).get_by_test_id("stAlertContainer").all_inner_texts())


def test_an_onnx_model_with_labels_and_its_preprocessing_shows_its_layers(page, tmp_path):
    model = tmp_path / "shapes.onnx"
    model.write_bytes(export(small_cnn(), (1, 3, 40, 48)))
    labels = tmp_path / "shapes.txt"
    labels.write_text("{" + ", ".join(f"{i}: {name!r}" for i, name in enumerate(CLASSES)) + "}")  # a dict literal
    open_form(page)
    text = sidebar(page).inner_text()
    assert "get every panel" in text and "TorchScript hides its layers" in text and "cnnvis serve" in text
    upload(page, "_w_model_file", model)
    assert "The file's input: 3 × 40 × 48" in sidebar(page).inner_text()
    upload(page, "_w_labels_file", labels)
    sidebar(page).get_by_text("Set the input size and normalisation").click()
    settle(page)
    assert page.locator(".st-key-_w_prep_height input").input_value() == "40"  # the file's size, as default
    assert page.locator(".st-key-_w_prep_width input").input_value() == "48"
    choose(page, "_w_prep_norm", "Plain 0–1 scaling")
    load(page)
    settle(page, panels=6)
    assert not alerts(page)
    caption = sidebar(page).inner_text()
    assert "Your ONNX model shapes.onnx" in caption
    assert "It is fed 48×40 RGB pictures (width × height) scaled to 0–1" in caption
    layers = options(page, "_w_layer")
    assert any("features/features/6/Conv" in option for option in layers), layers
    assert any("features/features/0/Conv" in option for option in layers), layers
    choose(page, "_w_layer", "features/features/6/Conv")
    settle(page, panels=6)
    summary = page.locator("[data-testid='stMarkdownContainer']", has_text="explaining").first.inner_text()
    assert "features/features/6/Conv" in summary and any(name in summary for name in CLASSES), summary
    pixels = panel_pixels(page, "gradcam", "onnx")
    assert pixels.shape[0] > 150 and pixels.std() > 12
    page.screenshot(path=ARTIFACTS / "onnx-model-explained.png", full_page=True)

    odd = tmp_path / "odd.onnx"
    odd.write_bytes(unsupported_op())
    open_form(page)  # the form folds away once a model has loaded
    upload(page, "_w_model_file", odd)
    load(page)
    assert "odd.onnx uses operations the ONNX-to-PyTorch converter (onnx2torch) cannot handle: Hardmax" in alerts(page)
    settle(page, panels=6)  # still the ONNX model from before, every panel drawn
    assert "Your ONNX model shapes.onnx" in sidebar(page).inner_text()


def test_a_fine_tuned_resnet18_state_dict_loads_with_its_json_labels(page, tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = torchvision.models.resnet18()
        model.fc = nn.Linear(512, 3)
    weights = tmp_path / "pets.pth"
    torch.save(model.state_dict(), weights)
    labels = tmp_path / "pets.json"
    labels.write_text(json.dumps({"0": "cat", "1": "dog", "2": "bird"}))
    open_form(page)
    upload(page, "_w_model_file", weights)
    choose(page, "_w_model_architecture", "resnet18")
    upload(page, "_w_labels_file", labels)
    sidebar(page).get_by_text("Set the input size and normalisation").click()  # 96×96: a fine-tuned small input
    settle(page)
    for side in ("height", "width"):
        field = page.locator(f".st-key-_w_prep_{side} input")
        field.fill("96")
        field.press("Enter")
        settle(page)
    load(page)
    settle(page, panels=6)
    assert not alerts(page)
    caption = sidebar(page).inner_text()
    assert "resized from 1,000 to 3 outputs" in caption
    assert "96×96 RGB pictures (width × height) with ImageNet mean and std" in caption
    assert "96×96 model input" in page.locator(".st-key-panel-input").inner_text()
    buttons = [page.locator(f".st-key-top5-{rank} button").inner_text() for rank in range(3)]
    assert sorted(button.split(" · ")[0] for button in buttons) == ["bird", "cat", "dog"], buttons
