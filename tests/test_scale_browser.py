""" "Same scale for all maps" in Chromium: on Compare the switch redraws every cell on one scale and says so under
each map, goes into the URL, and a link with it opens the grid on that scale in a fresh browser."""

from __future__ import annotations

import pytest
from conftest import dashboard_server
from test_browser import ARTIFACTS, go_to, settle

from cnnvis_ui import state

pytestmark = pytest.mark.browser
SHARED = "scale shared by the 3 maps"


def captions(page) -> list[str]:
    return page.get_by_test_id("stCaptionContainer").all_inner_texts()


def test_compare_on_one_scale_and_its_link(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    with dashboard_server(ARTIFACTS / "streamlit-server-scale.log") as (url, _):
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(90_000)
        page.goto(url)
        settle(page, panels=3)
        go_to(page, "Compare")
        settle(page, panels=3)
        assert not any(SHARED in c for c in captions(page))  # each map on its own scale by default
        page.locator(f".st-key-{state.widget(state.SHARED_SCALE)} label").first.click()
        settle(page, panels=3)
        page.wait_for_function("location.search.includes('same_scale=1')")
        assert sum(SHARED in c for c in captions(page)) == 3  # every cell says which scale it is on
        link = page.url
        page.screenshot(path=ARTIFACTS / "compare-shared-scale.png")
        fresh = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        fresh.set_default_timeout(90_000)
        fresh.goto(link)
        settle(fresh, panels=3)
        fresh.wait_for_function(f"document.body.innerText.includes('{SHARED}')")
        assert sum(SHARED in c for c in captions(fresh)) == 3
        fresh.context.close()
