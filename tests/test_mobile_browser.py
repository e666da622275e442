"""The page at phone width (420 × 900) in Chromium: the choices in the folded sidebar are one tap away through the
page's own button, a choice made there changes the panels, and the panels stack one per row at full width."""

from __future__ import annotations

import pytest
from conftest import dashboard_server
from test_browser import ARTIFACTS, settle, summary

from cnnvis_ui import share as narrow
from cnnvis_ui import state

pytestmark = pytest.mark.browser
PHONE = {"width": 420, "height": 900}


def test_at_420_px_the_choices_are_one_tap_away_and_the_panels_stack(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    with dashboard_server(ARTIFACTS / "streamlit-server-mobile.log") as (url, _):
        context = browser.new_context(viewport=PHONE)
        page = context.new_page()
        page.set_default_timeout(90_000)
        page.goto(url)
        settle(page, panels=3)
        button = page.locator(f"#{narrow.MENU_BUTTON_ID}")
        box = button.bounding_box()
        assert button.is_visible() and box["y"] + box["height"] < PHONE["height"] / 3  # at the top, no scrolling
        sidebar = page.get_by_test_id("stSidebar")
        assert sidebar.get_attribute("data-collapsed") == "true"  # Streamlit folds the sidebar away at this width
        button.click()
        page.wait_for_function("document.querySelector(\"[data-testid='stSidebar']\").dataset.collapsed === 'false'")
        model = page.locator(f".st-key-{state.widget(state.MODEL)}")
        model.wait_for(state="visible")
        page.wait_for_function(  # slid onto the screen (the sidebar opens with an animation)
            f"document.querySelector('.st-key-{state.widget(state.MODEL)}').getBoundingClientRect().x >= 0",
            timeout=5000,
        )
        for key in ("sample-coffee", state.widget(state.LAYER), state.widget(state.TARGET)):
            found = page.locator(f".st-key-{key}").first
            found.scroll_into_view_if_needed()
            assert found.is_visible(), key
        page.screenshot(path=ARTIFACTS / "mobile-menu.png")
        sidebar.get_by_role("button", name="Coffee", exact=True).click()
        settle(page, panels=3)
        assert "espresso" in summary(page)
        panels = [page.locator(f".st-key-panel-{key}").bounding_box() for key in ("input", "gradcam", "cam")]
        assert all(p["width"] > 0.85 * PHONE["width"] for p in panels)  # one per row, the page's width
        assert panels[0]["y"] + panels[0]["height"] <= panels[1]["y"] and panels[1]["y"] < panels[2]["y"]
        page.screenshot(path=ARTIFACTS / "mobile-page.png")
        context.close()
        wide = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        wide.goto(url)
        settle(wide)
        assert not wide.locator(f"#{narrow.MENU_BUTTON_ID}").is_visible()  # desk width: the sidebar is open anyway
        wide.context.close()
