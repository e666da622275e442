"""The Audit page in Chromium: run on a small folder, box-select points on the layout, see the grid of pictures
with their maps, export the flagged pictures as CSV."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, dashboard_server
from PIL import Image
from test_browser import choose, settle

from cnnvis_engine.demos.tank_scenes import TANK_CLASSES, tank_dataset

pytestmark = pytest.mark.browser
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def audit_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-root")
    scenes = tank_dataset(80, 31, light="clean")  # the biased detector splits each class by the weather
    for i, (image, label) in enumerate(zip(scenes.images, scenes.labels)):
        folder = root / "small-set" / TANK_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    (root / "tank-photos").mkdir()  # the page draws its demo set only where none is marked complete
    (root / "tank-photos" / ".complete").write_text("")
    return root


@pytest.fixture(scope="module")
def server(audit_root):
    old = os.environ.get("CNNVIS_AUDIT_ROOT")
    os.environ["CNNVIS_AUDIT_ROOT"] = str(audit_root)
    try:
        with dashboard_server(ARTIFACTS / "audit-server.log") as (url, _):
            yield url
    finally:
        if old is None:
            os.environ.pop("CNNVIS_AUDIT_ROOT", None)
        else:
            os.environ["CNNVIS_AUDIT_ROOT"] = old


def test_audit_page_runs_selects_and_exports(browser, server):
    context = browser.new_context(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    try:
        page.goto(f"{server}/audit")  # straight to the page: the Explore page's default model is not needed
        settle(page)
        choose(page, "_w_model", "tanks_shortcut")
        choose(page, "_w_audit_folder", "small-set")
        page.locator(".st-key-audit-run button").click()
        settle(page)
        page.get_by_text("80 pictures of small-set: 2 flagged groups").wait_for()
        page.wait_for_selector(".js-plotly-plot .scatterlayer .point")
        page.screenshot(path=ARTIFACTS / "audit-page.png", full_page=True)
        assert page.locator("[class*='st-key-audit-card-']").count() >= 2  # cluster cards of the class shown
        first = page.locator("[class*='st-key-audit-card-']").first.inner_text()
        assert "Flagged" in first and "pictures the network" in first and "it is right on all" in first  # why, in words

        plot = page.locator(".js-plotly-plot .nsewdrag").first  # box selection: drag across the whole plot
        box = plot.bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + 5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
        page.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] - 5, steps=8)
        page.mouse.up()
        settle(page)
        grid = page.locator(".st-key-audit-grid")
        grid.wait_for()
        assert "selected" in grid.inner_text()
        assert grid.locator("img").count() >= 2
        page.screenshot(path=ARTIFACTS / "audit-selection.png", full_page=True)

        with page.expect_download() as download:
            page.locator(".st-key-audit-export button").click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
        assert rows and {"path", "class", "cluster", "suspicion", "sentence"} <= set(rows[0])
        assert all(r["path"].endswith(".png") for r in rows)
    finally:
        context.close()


def folder_options(page) -> list[str]:
    """The texts of the Audit page's folder choices (the select box opened, read, closed)."""
    box = page.locator(".st-key-_w_audit_folder input").first
    box.click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return options


def test_a_zip_uploaded_in_one_session_is_never_offered_in_another(browser, server, tmp_path):
    zip_path = tmp_path / "my-photos.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for i, label in enumerate(TANK_CLASSES):
            buffer = io.BytesIO()
            Image.new("RGB", (32, 32), (40 * i, 90, 30)).save(buffer, format="PNG")
            archive.writestr(f"{label}/{i}.png", buffer.getvalue())
    contexts = [browser.new_context(viewport={"width": 1500, "height": 1300}) for _ in range(2)]
    try:
        a, b = (context.new_page() for context in contexts)
        for page in (a, b):
            page.set_default_timeout(90_000)
            page.goto(f"{server}/audit")
            settle(page)
        a.get_by_text("Upload a small set as a zip").click()
        a.locator(".st-key-_w_audit_zip").get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(zip_path))
        settle(a)
        a.wait_for_function(  # the upload is the chosen folder, shown by its own name
            """() => { const box = document.querySelector('.st-key-_w_audit_folder');
                return [box.textContent, ...[...box.querySelectorAll('input')].map(i => i.value + ' ' + i.placeholder),
                        ...[...box.querySelectorAll('[aria-label], [title]')].map(e => e.ariaLabel + ' ' + e.title)]
                    .some(t => (t || '').includes('my-photos.zip (your upload)')); }"""
        )
        a.screenshot(path=ARTIFACTS / "audit-zip-upload.png", full_page=True)
        b.reload()
        settle(b)
        offered = folder_options(b)
        assert offered and not any("my-photos" in o or o.startswith("uploads/") for o in offered), offered
        assert "my-photos.zip (your upload)" in folder_options(a)
    finally:
        for context in contexts:
            context.close()


def test_a_shared_audit_link_reopens_the_same_group(browser, server):
    """Run an audit, choose a class and a group, copy the page's address, open it in a fresh browser context (no
    cookies, no session): the same group's pictures are shown."""
    contexts = [browser.new_context(viewport={"width": 1500, "height": 1300}) for _ in range(2)]
    try:
        page = contexts[0].new_page()
        page.set_default_timeout(90_000)
        page.goto(f"{server}/audit")
        settle(page)
        choose(page, "_w_model", "tanks_shortcut")
        choose(page, "_w_audit_folder", "small-set")
        page.locator(".st-key-audit-run button").click()
        settle(page)
        page.get_by_text("80 pictures of small-set: 2 flagged groups").wait_for()
        page.locator(".st-key-_w_audit_class button").last.click()  # the class shown second
        settle(page)
        page.locator(".st-key-_w_audit_group button").last.click()  # its last group
        settle(page)
        shown = page.locator(".st-key-audit-group")
        shown.wait_for()
        text = shown.inner_text()
        assert "pictures in group" in text and shown.locator("img").count() >= 1
        link = page.url
        assert "audit_run=1" in link and "audit_group=" in link and "audit_class=" in link
        opened = contexts[1].new_page()
        opened.set_default_timeout(90_000)
        opened.goto(link)
        settle(opened)
        again = opened.locator(".st-key-audit-group")
        again.wait_for()
        opened.wait_for_selector(".js-plotly-plot .scatterlayer .point")
        assert again.inner_text() == text
        opened.screenshot(path=ARTIFACTS / "audit-link-reopened.png", full_page=True)
    finally:
        for context in contexts:
            context.close()
