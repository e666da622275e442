"""The Layers page's channel gallery as a person sees it: a real `streamlit run dashboard.py` in Debian's Chromium.
Screenshots go to test-artifacts/ (layers-gallery*.png)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import ROOT, dashboard_server
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"
GALLERY = ".st-key-panel-layer-gallery"


@pytest.fixture(scope="module")
def server():
    with dashboard_server(ARTIFACTS / "layers-gallery-server.log", "--server.fileWatcherType", "none") as (url, _):
        yield url


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(f"{server}/layers")
    settle(page)
    page.get_by_text("Inside the layers").wait_for()
    yield page
    context.close()


def settle(page) -> None:
    try:
        page.wait_for_selector(RUNNING, timeout=1500)
    except PlaywrightTimeout:  # the rerun was quicker than we could see it, or none was started
        pass
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_timeout(400)


def test_the_gallery_shows_a_picture_for_each_channel(page):
    box = page.locator(".st-key-_w_layer input").first
    box.click()
    box.fill("blocks.5 ·")
    page.get_by_role("option").filter(has_text="blocks.5 ·").first.click()
    settle(page)
    assert page.locator(GALLERY).count() == 0  # opt-in: nothing rendered before it is asked for
    page.get_by_text("Show what these channels look for").click()
    settle(page)
    figure = page.locator(f"{GALLERY} .js-plotly-plot").first
    figure.wait_for()
    figure.scroll_into_view_if_needed()
    page.wait_for_timeout(800)  # plotly lays out the image it just got
    picture = np.asarray(Image.open(io.BytesIO(figure.screenshot())).convert("RGB"), dtype=np.float32)
    text = page.locator(GALLERY).inner_text()
    assert "blocks.5 · channels" in text and "Stayed grey" not in text
    # 2 rows of 4 tiles on white: cut the figure into that grid and expect a patterned picture in every cell
    rows = np.flatnonzero(picture.min(axis=(1, 2)) < 250)
    cols = np.flatnonzero(picture.min(axis=(0, 2)) < 250)
    grid = picture[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = grid.shape[0] // 2, grid.shape[1] // 4
    cells = [grid[r * height : (r + 1) * height, c * width : (c + 1) * width] for r in range(2) for c in range(4)]
    assert all(cell.std() > 15 for cell in cells), [round(float(cell.std()), 1) for cell in cells]
    page.evaluate(
        "document.querySelector('[data-testid=stMain]').scrollTop = "
        "document.querySelector('.st-key-panel-layer-maps').offsetTop + 520"
    )
    page.wait_for_timeout(800)
    page.screenshot(path=ARTIFACTS / "layers-gallery.png")

    page.get_by_text("One colour scale for all channels").click()  # a rerun: the same channels, from the cache
    settle(page)
    assert page.get_by_test_id("stException").count() == 0  # the cached progress bar replays cleanly
    assert page.locator(f"{GALLERY} .js-plotly-plot").count() == 1
    assert "blocks.5 · channels" in page.locator(GALLERY).inner_text()
