"""The Sanity page in Chromium: a real `streamlit run dashboard.py`, the test run from its button, and the
screenshot the README shows (docs/screenshot-sanity.png)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import ROOT, chromium_browser, dashboard_server
from PIL import Image

pytestmark = pytest.mark.browser

SCREENSHOT = ROOT / "docs" / "screenshot-sanity.png"
ARTIFACTS = ROOT / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
DRAWN = """() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= 2
    && document.querySelectorAll('.st-key-sanity-gradcam img').length >= 20
    && document.querySelectorAll('.st-key-sanity-guided_backprop img').length >= 20"""


def test_the_sanity_page_in_chromium_runs_the_test_and_keeps_a_screenshot():
    ARTIFACTS.mkdir(exist_ok=True)
    with dashboard_server(ARTIFACTS / "sanity-server.log") as (url, _), chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.wait_for_selector(IDLE)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Sanity").click()
        page.get_by_text("Sanity check: does the map depend").wait_for()
        page.get_by_role("button", name="Run the test").click()
        page.wait_for_function(DRAWN)
        page.wait_for_selector(IDLE)
        page.wait_for_timeout(800)  # images decode, plotly lays out
        assert page.get_by_role("button", name="Run the test").is_disabled()
        assert page.locator(".st-key-sanity-gradcam").get_by_text("trained model · ρ = 1.00").count() == 1
        SCREENSHOT.parent.mkdir(exist_ok=True)
        png = page.screenshot(path=SCREENSHOT)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
        assert pixels.std() > 30, "the screenshot looks blank"
        chart = page.locator(".js-plotly-plot").first.screenshot(path=ARTIFACTS / "sanity-chart.png")
        assert np.asarray(Image.open(io.BytesIO(chart)).convert("L"), dtype=np.float32).std() > 10
