"""The Stories page as a person sees it: a real `streamlit run dashboard.py` in Debian's Chromium, each story
walked step by step, with screenshots in test-artifacts/ (stories-*.png)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CNNVIS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
RUNNING = "[data-testid='stApp'][data-test-script-state='running']"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    log = open(ARTIFACTS / "stories-server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port), "--server.headless", "true"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start; see {log.name}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server, request):
    context = browser.new_context(viewport={"width": 1500, "height": 1300})
    page = context.new_page()
    page.set_default_timeout(300_000)
    page.goto(server)
    settle(page)
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Stories").click()
    settle(page)
    page.get_by_text("Stories: why look inside a network?").wait_for()
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
    except Exception:  # the rerun was quicker than we could see it, or none was started
        pass
    page.wait_for_selector(IDLE, timeout=300_000)
    if figures:
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {figures}", timeout=60_000)
    page.wait_for_timeout(500)


def click(page, container_key: str, label: str) -> None:
    """Click the segmented-control option `label` inside `.st-key-<container_key>`."""
    page.locator(f".st-key-{container_key}").get_by_role("radio", name=label, exact=True).click()
    settle(page)


def panel(page, key: str, name: str) -> np.ndarray:
    """Screenshot of a story panel's picture (saved as an artefact) as an RGB array."""
    figure = page.locator(f".st-key-panel-story-{key} .js-plotly-plot").first
    figure.scroll_into_view_if_needed()
    png = figure.screenshot(path=ARTIFACTS / f"stories-{name}-{key}.png")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def text_of(page, key: str) -> str:
    return page.locator(f".st-key-panel-story-{key}").inner_text()


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
