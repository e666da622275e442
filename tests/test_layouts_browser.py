"""What a person sees for a vision transformer: the layer list names token layouts and the Grad-CAM panel is captioned
with the patch grid, and "More methods" offers attention rollout, drawn on the grid (timm:vit_tiny_patch16_224,
random weights, the cat). Saves docs/screenshot-vit.png; the options
themselves are checked by tests/test_layer_list.py."""

from __future__ import annotations

import pytest
from conftest import ROOT, chromium_browser, dashboard_server
from test_browser import ARTIFACTS, settle

pytestmark = pytest.mark.browser

TOKENS = "tokens · 14×14 patches + 1 class token"


def test_a_vit_shows_token_layouts_and_a_grad_cam_on_its_patch_grid():
    with dashboard_server(ARTIFACTS / "streamlit-vit.log") as (url, _), chromium_browser() as browser:
        context = browser.new_context(viewport={"width": 1500, "height": 1300})
        page = context.new_page()
        page.set_default_timeout(120_000)
        # class 936: with these random weights Grad-CAM at blocks.11.norm1 is all negative (flat) for the top class
        page.goto(f"{url}/?model=timm:vit_tiny_patch16_224&weights=random&image=sample:cat&class=936")
        settle(page, panels=4)
        for shown in (f"blocks.11.norm1 ({TOKENS}) · head cabbage", "are not maps and are not offered"):
            page.wait_for_function("text => document.body.innerText.includes(text)", arg=shown)  # Grad-CAM's caption
        layer_box = page.get_by_role("combobox", name="Layer for feature maps and Grad-CAM")
        assert layer_box.input_value().startswith(f"Automatic: blocks.11.norm1 · layer norm · 197×192 · {TOKENS}")
        page.get_by_text("are not maps and are not offered").scroll_into_view_if_needed()  # the sidebar's layer list
        page.screenshot(path=ROOT / "docs" / "screenshot-vit.png")
        # Attention rollout is offered under "More methods" for a model with attention, and draws on the grid.
        rollout = page.get_by_role("button", name="Attention rollout", exact=True)
        rollout.scroll_into_view_if_needed()
        rollout.click()
        panel = page.locator(".st-key-panel-attention_rollout")
        panel.locator(".js-plotly-plot .main-svg image").first.wait_for()
        # the caption streams in after the picture: wait for it (a missing caption still fails, at the timeout)
        panel.get_by_text("14×14 patches").first.wait_for()
        assert "attention blocks over 14×14 patches" in panel.inner_text()
        page.locator(".st-key-panel-attention_rollout").screenshot(path=ARTIFACTS / "vit-rollout-panel.png")
        context.close()
