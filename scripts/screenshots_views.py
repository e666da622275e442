"""Screenshots of the view features for docs/, taken in Chromium from a real `streamlit run dashboard.py`:

- docs/screenshot-legend.png: the Grad-CAM panel with its colour bar;
- docs/screenshot-mobile.png: the page at 420 × 900, and the menu its top button opens;
- docs/screenshot-shared-link.png: a view set in one browser (coffee, viridis) and its link opened in a fresh one;
- docs/screenshot-shared-scale.png: the tank story's two Grad-CAMs on an empty sunny field, each on its own scale
  and on one shared scale.

Run from the repository root: `python scripts/screenshots_views.py [legend mobile shared_link shared_scale]`
(all four by default; about a minute each on a busy 2-core machine). It reuses the test suite's
server and browser helpers (tests/conftest.py, tests/test_browser.py).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from conftest import chromium_browser, dashboard_server
from PIL import Image, ImageDraw, ImageFont
from test_browser import choose, settle

from cnnvis_ui import narrow, state

DOCS = ROOT / "docs"
GAP = 24


def shot(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def labelled(parts: list[tuple[str, Image.Image]], *, across: bool = True) -> Image.Image:
    """Pictures side by side (or one above the other), each under its label, on white."""
    label_height = 34
    widths, heights = [p.width for _, p in parts], [p.height for _, p in parts]
    if across:
        size = (sum(widths) + GAP * (len(parts) + 1), max(heights) + label_height + 2 * GAP)
    else:
        size = (max(widths) + 2 * GAP, sum(heights) + (label_height + GAP) * len(parts) + GAP)
    canvas = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x, y = GAP, GAP
    for label, picture in parts:
        draw.text((x, y), label, fill=(38, 39, 48), font=_font(18))
        canvas.paste(picture, (x, y + label_height))
        draw.rectangle(
            [x - 1, y + label_height - 1, x + picture.width, y + label_height + picture.height], outline=(200, 203, 210)
        )
        if across:
            x += picture.width + GAP
        else:
            y += picture.height + label_height + GAP
    return canvas


def legend(browser, url: str) -> None:
    page = browser.new_context(viewport={"width": 1500, "height": 1300}).new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    settle(page, panels=3)
    panel = page.locator(".st-key-panel-gradcam").first
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=DOCS / "screenshot-legend.png")
    page.context.close()


def mobile(browser, url: str) -> None:
    page = browser.new_context(viewport={"width": 420, "height": 900}).new_page()
    page.set_default_timeout(120_000)
    page.goto(url)
    settle(page, panels=3)
    closed = shot(page.screenshot())
    page.locator(f"#{narrow.MENU_BUTTON_ID}").click()
    page.wait_for_function(
        f"document.querySelector('.st-key-{state.widget(state.MODEL)}').getBoundingClientRect().x >= 0"
    )
    page.wait_for_timeout(600)
    opened = shot(page.screenshot())
    page.get_by_test_id("stSidebarCollapseButton").locator("button").first.click()
    page.locator(".st-key-panel-gradcam").first.scroll_into_view_if_needed()
    page.wait_for_timeout(600)
    panels = shot(page.screenshot())
    labelled(
        [("The page at 420 px", closed), ("Its top button opens the menu", opened), ("Panels one per row", panels)]
    ).save(DOCS / "screenshot-mobile.png")
    page.context.close()


def shared_link(browser, url: str) -> None:
    viewport = {"width": 1200, "height": 950}
    sender = browser.new_context(viewport=viewport).new_page()
    sender.set_default_timeout(120_000)
    sender.goto(url)
    settle(sender, panels=3)
    sender.get_by_test_id("stSidebar").get_by_role("button", name="Coffee", exact=True).click()
    settle(sender, panels=3)
    choose(sender, state.widget(state.COLORMAP), "viridis")
    settle(sender, panels=3)
    link = sender.url
    first = shot(sender.screenshot())
    receiver = browser.new_context(viewport=viewport).new_page()  # a fresh browser: no cookies, a new session
    receiver.set_default_timeout(120_000)
    receiver.goto(link)
    settle(receiver, panels=3)
    second = shot(receiver.screenshot())
    half = (first.width // 2, first.height // 2)
    labelled(
        [
            ("Set in one browser: coffee, viridis", first.resize(half, Image.LANCZOS)),
            ("Its link opened in a fresh browser", second.resize(half, Image.LANCZOS)),
        ]
    ).save(DOCS / "screenshot-shared-link.png")
    sender.context.close()
    receiver.context.close()


def shared_scale(browser, url: str) -> None:
    page = browser.new_context(viewport={"width": 1300, "height": 1000}).new_page()
    page.set_default_timeout(180_000)
    page.goto(f"{url}/stories")
    settle(page)
    page.locator(".st-key-_w_stories_tank_picture").get_by_text("An empty field, sunny").click(timeout=30_000)
    settle(page)
    shots = {}
    for on in (True, False):  # on by default in the tank story
        if not on:
            page.get_by_text("Same scale for all maps").click()
            settle(page)
        page.wait_for_function(
            "document.querySelectorAll('.st-key-panel-story-tank-tanks_clean .js-plotly-plot .main-svg image').length"
        )
        left = page.locator(".st-key-panel-story-tank-tanks_shortcut").first
        left.scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        a, b = left.bounding_box(), page.locator(".st-key-panel-story-tank-tanks_clean").first.bounding_box()
        clip = {
            "x": a["x"],
            "y": min(a["y"], b["y"]),
            "width": b["x"] + b["width"] - a["x"],
            "height": max(a["height"], b["height"]),
        }
        shots[on] = shot(page.screenshot(clip=clip))
    labelled(
        [
            ("Each map on its own scale: the fair detector (0.1% “tank”) shows a red spot", shots[False]),
            ("Same scale for both maps (the story's default): its near-zero evidence looks near zero", shots[True]),
        ],
        across=False,
    ).save(DOCS / "screenshot-shared-scale.png")
    page.context.close()


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with (
        dashboard_server(ROOT / "test-artifacts" / "screenshots-views-server.log") as (url, _),
        chromium_browser() as browser,
    ):
        for take in (legend, mobile, shared_link, shared_scale):
            if len(sys.argv) > 1 and take.__name__ not in sys.argv[1:]:
                continue
            take(browser, url)
            print(f"{take.__name__}: done", flush=True)


if __name__ == "__main__":
    main()
