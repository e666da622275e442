"""The sidebar's layer list: pass-through layers hidden unless asked for, readable kinds, substring search."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnnvis_ui import state

pytestmark = pytest.mark.usefixtures("fresh_caches")

DASHBOARD = str(Path(__file__).resolve().parent.parent / "dashboard.py")


def layer_box(at: AppTest):
    return next(box for box in at.selectbox if box.key == state.widget(state.LAYER))


def test_pass_through_layers_are_hidden_until_asked_for():
    at = AppTest.from_file(DASHBOARD, default_timeout=120).run()
    assert not at.exception
    options = layer_box(at).options
    assert not any("pass-through" in option for option in options)
    assert len(options) == 1 + 261 - 106  # "Automatic" + efficientnet_lite0's spatial layers without its Identities
    assert any(option.startswith("bn2 · batch norm + activation · 1280×7×7") for option in options)
    assert any("155 layers give maps (106 pass-through ones hidden)" in c.value for c in at.caption)

    at = AppTest.from_file(DASHBOARD, default_timeout=120)
    at.query_params.update(
        {"model": "efficientnet_lite0", "weights": "embedded", "image": "sample:cat", "all_layers": "1"}
    )
    at.run()
    assert len(layer_box(at).options) == 1 + 261


def test_a_vit_lists_token_layouts_and_names_the_layers_that_are_not_maps():
    at = AppTest.from_file(DASHBOARD, default_timeout=180)
    at.query_params.update({"model": "timm:vit_tiny_patch16_224", "weights": "random", "image": "sample:cat"})
    at.run()
    assert not at.exception
    options = layer_box(at).options
    assert any(
        o.startswith("blocks.11.norm1 · layer norm · 197×192 · tokens · 14×14 patches + 1 class token") for o in options
    )
    assert not any("k_norm" in option or "q_norm" in option for option in options)  # per-head: not offered
    assert "blocks.11.norm1" in options[0]  # "Automatic": the last block's first norm
    refused = next(c for c in at.caption if "are not maps" in c.value)
    assert "`blocks.0.attn.k_norm`" in refused.proto.help and "per attention head" in refused.proto.help
