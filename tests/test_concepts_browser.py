"""The Concepts page in Chromium: a real `streamlit run dashboard.py` on the default model with the sample photos as
the reference set: eight concept cards, each with its map, what its channel looks for and its reference crops; and
the screenshot the README shows (docs/screenshot-concepts.png)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import ROOT, chromium_browser, dashboard_server
from PIL import Image

pytestmark = pytest.mark.browser

SCREENSHOT = ROOT / "docs" / "screenshot-concepts.png"
ARTIFACTS = ROOT / "test-artifacts"
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
# Each card: its map, what its channel looks for, and 3 reference crops.
DRAWN = """() => [1, 2, 3, 4, 5, 6, 7, 8].every(
    rank => document.querySelectorAll(`.st-key-concept-card-${rank} img`).length >= 5)"""


def test_the_concepts_page_shows_eight_cards_with_maps_and_crops_and_keeps_a_screenshot():
    ARTIFACTS.mkdir(exist_ok=True)
    with dashboard_server(ARTIFACTS / "concepts-server.log") as (url, _), chromium_browser() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 2500})
        page.set_default_timeout(300_000)
        page.goto(url)
        page.wait_for_selector(IDLE)
        page.get_by_test_id("stSidebarNav").get_by_role("link", name="Concepts").click()
        page.get_by_text("Which features make it this class?").wait_for()
        page.wait_for_function(DRAWN)
        page.wait_for_selector(IDLE)
        page.wait_for_timeout(1000)  # images decode
        cards = page.locator("[class*='st-key-concept-card-']:not([class*='-open'])")
        assert cards.count() == 8
        first = page.locator(".st-key-concept-card-1")
        assert "carries" in first.inner_text() and "Egyptian cat" in first.inner_text()
        assert "cat" in first.inner_text()  # the sample photos' names under the crops
        assert page.get_by_text("Speaks against 'Egyptian cat' here").count() == 1
        SCREENSHOT.parent.mkdir(exist_ok=True)
        png = page.screenshot(path=SCREENSHOT)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
        assert pixels.std() > 30, "the screenshot looks blank"
