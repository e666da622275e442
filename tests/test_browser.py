"""What a person sees: a real `streamlit run dashboard.py` driven by Playwright in Debian's Chromium.

One server serves the whole module (so its caches warm up once); every test opens a fresh browser context,
which is a fresh Streamlit session. Screenshots of every checked panel go to test-artifacts/.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, dashboard_server
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"
EXPLORE_PANELS = ("input", "gradcam", "guided_gradcam", "cam", "saliency", "feature_maps")


@pytest.fixture(scope="module")
def server():
    """`streamlit run dashboard.py` on a free port, healthy before the first test, stopped after the last."""
    with dashboard_server(ARTIFACTS / "streamlit-server.log") as (url, _):
        yield url


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    external = []
    page.on(
        "request",
        lambda r: (
            external.append(r.url)
            if not r.url.startswith(("http://127.0.0.1", "data:", "blob:", "ws://127.0.0.1"))
            else None
        ),
    )
    page.goto(server)
    settle(page, panels=6)
    yield page
    page.screenshot(path=ARTIFACTS / f"{request.node.name}-final.png", full_page=True)
    context.close()
    assert not external, f"the page fetched from the internet: {external[:3]}"


# ----- helpers -------------------------------------------------------------------------------------------
def settle(page, panels: int = 0) -> None:
    """Wait for the rerun an interaction started (if any) to finish and for `panels` plotly figures to draw."""
    try:
        page.wait_for_selector(RUNNING, timeout=1500)
    except PlaywrightTimeout:  # the rerun was quicker than we could see it, or none was started
        pass
    page.wait_for_selector(IDLE, timeout=90_000)
    if panels:
        page.wait_for_function(
            f"document.querySelectorAll('.js-plotly-plot .main-svg image').length >= {panels}", timeout=60_000
        )
    page.wait_for_timeout(400)  # plotly lays out the images it just got


def panel_picture(page, key: str, name: str) -> np.ndarray:
    """Screenshot of one panel's figure as an RGB array (also saved as an artefact)."""
    figure = page.locator(f".st-key-panel-{key} .js-plotly-plot").first
    figure.scroll_into_view_if_needed()
    png = figure.screenshot(path=ARTIFACTS / f"{name}-{key}.png")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def summary(page) -> str:
    return page.locator("[data-testid='stMarkdownContainer']", has_text="explaining").first.inner_text()


def choose(page, widget_key: str, text: str) -> None:
    """Pick the option of the selectbox `widget_key` that matches `text` (typed into its search box)."""
    box = page.locator(f".st-key-{widget_key} input").first
    box.scroll_into_view_if_needed()
    box.click()
    box.fill(text)
    page.get_by_role("option").filter(has_text=text).first.click()
    settle(page)


def upload(page, path: Path) -> None:
    page.locator(".st-key-_w_image_uploader").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(path))
    settle(page)


def go_to(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    settle(page)


# ----- tests ---------------------------------------------------------------------------------------------
def test_a_deep_link_on_a_fresh_server_still_runs_the_entry_script(browser, server):
    """First in this module on purpose: the first request of a fresh server is /layers (see share.ensure_entry)."""
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.goto(f"{server}/layers")
    settle(page, panels=3)
    nav = page.get_by_test_id("stSidebarNav").inner_text()
    assert "Explore" in nav and "dashboard" not in nav  # our navigation, not the pages/ folder's
    assert page.get_by_test_id("stSidebar").get_by_text("Class to explain").count() == 1  # the shared sidebar
    page.get_by_text("Inside the layers").wait_for()
    page.screenshot(path=ARTIFACTS / "deep-link-layers.png")
    context.close()


def test_upload_choose_layer_and_class_then_every_panel_renders(page, tmp_path):
    photo = tmp_path / "my-coffee.png"
    Image.open(ROOT / "assets" / "samples" / "coffee.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(photo)
    upload(page, photo)
    settle(page, panels=6)
    assert page.locator(".st-key-panel-input").get_by_text("my-coffee.png").count() == 1
    choose(page, "_w_layer", "blocks.4 ·")
    choose(page, "_w_target", "tabby")
    settle(page, panels=6)
    text = summary(page)
    assert "tabby (class 281)" in text and "blocks.4" in text
    for key in EXPLORE_PANELS:
        pixels = panel_picture(page, key, "upload")
        assert pixels.shape[0] > 150 and pixels.shape[1] > 150, key
        assert pixels.std() > 12, f"{key} panel looks blank (std {pixels.std():.1f})"


def test_a_top5_button_retargets_grad_cam(page):
    before = panel_picture(page, "gradcam", "top1")
    second = page.locator(".st-key-top5-1 button")
    name = second.inner_text().split(" · ")[0]
    second.click()
    settle(page, panels=6)
    assert f"explaining {name}" in summary(page)
    after = panel_picture(page, "gradcam", "top2")
    assert before.shape == after.shape
    assert np.abs(before - after).mean() > 3, "Grad-CAM did not change with the class"


def test_choices_survive_switching_pages(page):
    page.locator(".st-key-top5-2 button").click()
    settle(page, panels=6)
    choose(page, "_w_layer", "blocks.5 ·")
    chosen = summary(page)
    go_to(page, "Layers")
    page.get_by_text("Inside the layers").wait_for()
    assert page.locator(".st-key-_w_layer input").input_value().startswith("blocks.5 ·")
    assert "blocks.5" in page.locator(".st-key-panel-layer-maps").inner_text()
    go_to(page, "Compare")
    page.get_by_text("Compare models").wait_for()
    go_to(page, "Explore")
    settle(page, panels=6)
    assert summary(page) == chosen
    assert page.locator(".st-key-top5-2 button[kind='primary']").count() == 1


def test_report_png_and_html_download(page):
    with page.expect_download() as info:
        page.get_by_role("button", name="Report as PNG").click()
    png = Path(info.value.path()).read_bytes()
    report = Image.open(io.BytesIO(png))
    report.load()
    report.save(ARTIFACTS / "report.png")
    assert report.format == "PNG" and report.width >= 900 and report.height >= 700
    assert np.asarray(report.convert("L"), dtype=np.float32).std() > 20
    with page.expect_download() as info:
        page.get_by_role("button", name="Report as HTML").click()
    html = Path(info.value.path()).read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 6 and "efficientnet_lite0" in html and "Egyptian cat" in html


def test_a_corrupt_upload_shows_why_and_the_page_keeps_working(page, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this JPEG stops right here")
    upload(page, broken)
    message = page.get_by_test_id("stSidebar").get_by_text("broken.jpg was not used")
    message.wait_for()
    assert "damaged" in message.inner_text()
    assert "Chelsea the cat" in page.locator(".st-key-panel-input").inner_text()
    page.locator(".st-key-top5-1 button").click()  # the session still answers
    settle(page, panels=6)
    assert panel_picture(page, "gradcam", "after-corrupt").std() > 12


def test_unavailable_weights_offer_random_weights_explicitly(page):
    choose(page, "_w_model", "resnet50")
    warning = page.get_by_test_id("stSidebar").get_by_text("could not be downloaded")
    warning.wait_for()
    assert page.locator(".st-key-panel-gradcam").count() == 0  # nothing drawn from weights we do not have
    page.get_by_role("button", name="Use random weights for resnet50").click()
    settle(page, panels=6)
    assert "resnet50 · random weights" in summary(page)
    assert panel_picture(page, "gradcam", "resnet50-random").std() > 12


def test_hovering_a_map_shows_its_raw_values(page):
    for key, label in (("gradcam", "Grad-CAM: "), ("feature_maps", "activation: "), ("saliency", "|gradient|: ")):
        figure = page.locator(f".st-key-panel-{key} .js-plotly-plot .nsewdrag").first
        figure.scroll_into_view_if_needed()
        box = figure.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4)
        page.wait_for_function(
            "label => Array.from(document.querySelectorAll('.hoverlayer')).some(e => e.textContent.includes(label))",
            arg=label,
            timeout=10_000,
        )
        page.mouse.move(0, 0)
