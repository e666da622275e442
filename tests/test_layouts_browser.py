"""What a person sees for a vision transformer: the layer list names token layouts and the Grad-CAM panel is captioned
with the patch grid (timm:vit_tiny_patch16_224, random weights, the cat). Saves docs/screenshot-vit.png."""

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
        page.goto(f"{url}/?model=timm:vit_tiny_patch16_224&weights=random&image=sample:cat")
        settle(page, panels=3)
        page.get_by_text(f"blocks.11.norm1 ({TOKENS})").first.wait_for()  # the Grad-CAM panel's caption
        page.get_by_text("are not maps and are not offered").wait_for()
        layer_box = page.get_by_label("Layer for feature maps and Grad-CAM")
        assert TOKENS in layer_box.input_value() or TOKENS in page.locator("[data-testid='stSidebar']").inner_text()
        page.screenshot(path=ROOT / "docs" / "screenshot-vit.png")
        layer_box.click()
        options = page.locator("[role='option']")
        options.first.wait_for()
        listed = options.all_inner_texts()
        assert any(TOKENS in option for option in listed), listed[:5]
        assert not any("k_norm" in option for option in listed)  # per-head tensors are not offered
        page.screenshot(path=ARTIFACTS / "vit-layer-list.png")
        context.close()
