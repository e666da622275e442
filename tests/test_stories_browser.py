"""The Stories page as a person sees it: a real `streamlit run dashboard.py` in Debian's Chromium, each story
walked step by step, with screenshots in test-artifacts/ (stories-*.png)."""

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
TITLE = "Stories: why look inside a network?"
SIDEBAR_NOTE = "Each story brings its own small models and pictures"


@pytest.fixture(scope="module")
def server():
    """No file watcher: an edit to the checkout during the run would make the server re-import some modules, and
    objects cached before that then fail isinstance checks against the re-imported classes."""
    with dashboard_server(ARTIFACTS / "stories-server.log", "--server.fileWatcherType", "none") as (url, _):
        yield url


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(300_000)
    page.goto(f"{server}/stories")
    settle(page)
    page.get_by_text(TITLE).wait_for()
    yield page
    snapshot(page, f"{request.node.name}-final")
    context.close()


def snapshot(page, name: str) -> None:
    """The whole page (Streamlit scrolls inside its main block, so grow the viewport to fit it first)."""
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1500, "height": min(int(height) + 80, 7000)})
    page.wait_for_timeout(800)
    page.screenshot(path=ARTIFACTS / f"stories-{name}.png")
    page.set_viewport_size({"width": 1500, "height": 1300})


def settle(page, figures: int = 0) -> None:
    try:
        page.wait_for_selector(RUNNING, timeout=1500)
    except PlaywrightTimeout:  # the rerun was quicker than we could see it, or none was started
        pass
    page.wait_for_selector(IDLE, timeout=300_000)
    if figures:
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {figures}", timeout=60_000)
    page.wait_for_timeout(500)


def click(page, key: str, label: str) -> None:
    """Click the option `label` of the segmented control bound to plain key `key` (its widget key is `_w_<key>`)."""
    page.locator(f".st-key-_w_{key}").get_by_role("radio", name=label, exact=True).click()
    settle(page)


def panel(page, key: str, name: str) -> np.ndarray:
    """Screenshot of a story panel's picture (saved as an artefact) as an RGB array."""
    figure = page.locator(f".st-key-panel-story-{key} .js-plotly-plot").first
    figure.scroll_into_view_if_needed()
    png = figure.screenshot(path=ARTIFACTS / f"stories-{name}-{key}.png")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def text_of(page, key: str) -> str:
    return page.locator(f".st-key-panel-story-{key}").inner_text()


def test_a_deep_link_on_a_fresh_server_opens_the_stories(page):
    """First in this module on purpose: the `page` fixture's /stories is the fresh server's first request (see
    share.ensure_entry), and it waits for the Stories title."""
    nav = page.get_by_test_id("stSidebarNav").inner_text()
    assert "Explore" in nav and "dashboard" not in nav  # our navigation, not the pages/ folder's
    page.screenshot(path=ARTIFACTS / "stories-deep-link.png")


def test_the_sidebar_shows_no_model_image_layer_or_class_pickers(page):
    sidebar = page.get_by_test_id("stSidebar")
    assert SIDEBAR_NOTE in sidebar.inner_text()
    for picker in ("Network", "Class to explain", "Layer for feature maps and Grad-CAM", "Or upload your own"):
        assert sidebar.get_by_text(picker).count() == 0, picker
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Explore").click()
    settle(page)
    sidebar.get_by_text("Class to explain").wait_for()  # the other pages keep the shared pickers
    assert SIDEBAR_NOTE not in sidebar.inner_text()


def test_tanks_story(page):
    settle(page, figures=6)
    body = page.get_by_test_id("stMain").inner_text()
    assert "Both detectors ace photos" in body and "one of them collapses" in body
    for key in ("tank_sunny", "tank_cloudy", "field_sunny", "field_cloudy"):
        assert panel(page, key, "tanks").std() > 12, key
    assert page.get_by_test_id("stDataFrame").count() == 1
    clean = panel(page, "tank-tanks_clean", "tanks-sunny")
    shortcut = panel(page, "tank-tanks_shortcut", "tanks-sunny")
    assert clean.std() > 12 and shortcut.std() > 12
    assert "inside the tank's box" in text_of(page, "tank-tanks_clean")
    snapshot(page, "tanks")
    click(page, "stories_tank_picture", "A tank, cloudy")
    settle(page, figures=6)
    assert "no evidence of a tank" in text_of(page, "tank-tanks_shortcut")
    assert panel(page, "tank-tanks_clean", "tanks-cloudy").std() > 12
    snapshot(page, "tanks-cloudy")


def test_salt_story(page):
    click(page, "stories_story", "Finding salt")
    settle(page, figures=3)
    for key in ("salt-input", "salt-mask", "salt-cam"):
        assert panel(page, key, "salt").std() > 12, key
    assert "IoU" in text_of(page, "salt-mask") and "inside the predicted salt" in text_of(page, "salt-cam")
    click(page, "stories_salt_picture", "Seismic section 2")
    click(page, "stories_salt_layer", "bottleneck (16×16)")
    settle(page, figures=3)
    assert panel(page, "salt-cam", "salt-2-bottom").std() > 12
    snapshot(page, "salt")


def test_robot_story(page):
    click(page, "stories_story", "A robot's blind spots")
    settle(page, figures=8)
    assert panel(page, "robot-input", "robot").std() > 12
    assert panel(page, "robot-gradcam", "robot-all").std() > 12
    assert panel(page, "robot-layercam", "robot-all").std() > 12
    click(page, "stories_robot_group", "One direction")
    settle(page, figures=8)
    assert "everything right" in text_of(page, "robot-gradcam")  # the first true obstacle's direction
    assert panel(page, "robot-layercam", "robot-right").std() > 8
    for key in ("robot_floor_coloured", "robot_shadow", "robot_shadow-cam", "robot_floor_coloured-cam"):
        assert panel(page, key, "robot").std() > 8, key
    body = page.get_by_test_id("stMain").inner_text()
    assert "coloured like the floor" in body and "Where it fails" in body
    snapshot(page, "robot")
