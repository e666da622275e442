"""Shareable views in real Chromium: a non-default view's link opened in a fresh browser context shows the same
panels (the Grad-CAM PNG byte for byte), and reload, back and forward keep the view.

One server for the module; each fresh browser context is a fresh Streamlit session, as a colleague's browser is.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from conftest import dashboard_server
from test_browser import ARTIFACTS, choose, go_to, settle, summary

pytestmark = pytest.mark.browser
VIEWPORT = {"width": 1500, "height": 1300}


@pytest.fixture(scope="module")
def server():
    with dashboard_server(ARTIFACTS / "streamlit-server-share.log") as (url, _):
        yield url


def fresh_page(browser, url: str):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(90_000)
    page.goto(url)
    settle(page)
    return context, page


def panel_png(page, key: str) -> bytes:
    button = page.locator(f".st-key-png-{key} button").first
    button.scroll_into_view_if_needed()
    with page.expect_download() as info:
        button.click()
    return Path(info.value.path()).read_bytes()


def query(page) -> dict[str, str]:
    return {name: values[-1] for name, values in parse_qs(urlparse(page.url).query).items()}


def test_an_explore_view_survives_a_fresh_browser_reload_and_history(browser, server):
    context, page = fresh_page(browser, server)
    settle(page, panels=6)
    page.get_by_test_id("stSidebar").get_by_role("button", name="Coffee", exact=True).click()
    settle(page, panels=6)
    choose(page, "_w_target", "cup (968)")
    choose(page, "_w_layer", "blocks.5 ·")
    choose(page, "_w_colormap", "viridis")
    settle(page, panels=6)
    view = summary(page)
    assert "cup" in view and "blocks.5" in view
    params = query(page)
    assert params["image"] == "sample:coffee" and params["layer"] == "blocks.5" and params["class"] == "968"
    assert params["colormap"] == "viridis" and params["model"] == "efficientnet_lite0"
    link, original = page.url, panel_png(page, "gradcam")
    page.screenshot(path=ARTIFACTS / "share-sender.png")

    other_context, other = fresh_page(browser, link)  # a colleague's browser: another session
    settle(other, panels=6)
    assert summary(other) == view
    assert other.locator(".st-key-_w_colormap input").input_value() == "viridis"
    coffee = other.get_by_test_id("stSidebar").get_by_role("button", name="Coffee", exact=True)
    assert coffee.get_attribute("kind") == "primary"
    assert panel_png(other, "gradcam") == original, "the shared link's Grad-CAM PNG differs"
    other.screenshot(path=ARTIFACTS / "share-receiver.png")
    other_context.close()

    page.reload()
    settle(page, panels=6)
    assert summary(page) == view and page.url == link

    choose(page, "_w_colormap", "magma")  # one more step in the history
    settle(page, panels=6)
    assert query(page)["colormap"] == "magma"
    page.go_back()
    settle(page, panels=6)
    assert query(page)["colormap"] == "viridis"
    assert page.locator(".st-key-_w_colormap input").input_value() == "viridis"
    assert panel_png(page, "gradcam") == original
    page.go_forward()
    settle(page, panels=6)
    assert page.locator(".st-key-_w_colormap input").input_value() == "magma"

    go_to(page, "Layers")  # the view rides along to another page, and back
    assert query(page)["layer"] == "blocks.5"
    page.go_back()
    settle(page, panels=6)
    assert summary(page) == view
    context.close()


def test_each_page_s_settings_travel_in_its_link(browser, server):
    context, page = fresh_page(browser, f"{server}/layers")
    page.get_by_text("Inside the layers").wait_for()
    page.locator(".st-key-_w_fm_channels").get_by_role("slider").focus()
    page.keyboard.press("ArrowRight")  # 16 -> 32 channels
    settle(page)
    assert query(page)["channels"] == "32"
    layers_link = page.url

    go_to(page, "Compare")
    choose(page, "_w_compare_method", "Saliency")
    assert query(page)["compare_method"] == "saliency"
    compare_link = page.url

    go_to(page, "Sanity")
    choose(page, "_w_sanity_second", "none")
    assert query(page)["sanity_second"] == "__none__"
    sanity_link = page.url

    go_to(page, "Stories")
    page.locator(".st-key-_w_stories_story").get_by_role("radio", name="Finding salt", exact=True).click()
    settle(page)
    assert query(page)["stories_story"] == "salt"  # by its key, as every page's choices (state.URL_PARAMS)
    stories_link = page.url
    context.close()

    for link, check in (
        (
            layers_link,
            lambda p: p.locator(".st-key-_w_fm_channels").get_by_role("slider").get_attribute("aria-valuetext") == "32",
        ),
        (compare_link, lambda p: p.locator(".st-key-_w_compare_method input").input_value() == "Saliency"),
        (sanity_link, lambda p: p.locator(".st-key-_w_sanity_second input").input_value() == "— none —"),
        (
            stories_link,
            lambda p: (
                p.locator(".st-key-_w_stories_story")
                .get_by_role("radio", name="Finding salt", exact=True)
                .get_attribute("aria-checked")
                == "true"
            ),
        ),
    ):
        context, page = fresh_page(browser, link)
        page.locator("[data-testid='stMainBlockContainer'] h1").first.wait_for()
        page.wait_for_timeout(500)
        assert check(page), link
        context.close()


def test_a_link_to_an_upload_the_server_no_longer_has_asks_for_it_again(browser, server):
    missing = "upload:" + "0" * 64
    context, page = fresh_page(browser, f"{server}/?image={missing}&model=efficientnet_lite0&weights=embedded")
    message = page.get_by_test_id("stSidebar").get_by_text("no longer has it")
    message.first.wait_for()
    assert "upload it again" in message.first.inner_text()
    assert query(page)["image"] == "sample:cat"  # the page still works, on the default picture
    context.close()


def test_the_copy_link_button_copies_the_address(browser, server):
    context = browser.new_context(viewport=VIEWPORT)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.goto(f"{server}/?colormap=viridis")
    settle(page)
    page.locator("#cnnvis-copy-link").click()
    page.get_by_text("Link copied").wait_for()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.url and "colormap=viridis" in copied
    context.close()


def test_the_page_says_where_the_choices_are_at_desk_and_phone_widths(browser, server):
    for viewport, shown, hidden in (
        ({"width": 1600, "height": 1000}, ".cnnvis-where .wide", ".cnnvis-where .narrow"),
        ({"width": 420, "height": 900}, ".cnnvis-where .narrow", ".cnnvis-where .wide"),
    ):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.set_default_timeout(90_000)
        page.goto(server)
        settle(page)
        assert page.locator(shown).first.is_visible() and not page.locator(hidden).first.is_visible()
        assert "upload" in page.locator(shown).first.inner_text()
        page.screenshot(path=ARTIFACTS / f"where-{viewport['width']}.png")
        context.close()
