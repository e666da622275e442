"""The Layers page's feature-visualisation gallery through AppTest: off until asked for, then one picture with a
tile per channel of the feature maps above, computed once per model, layer, channels and settings, and an
engine error shown in its place.

The gallery runs the real optimisation on the embedded default model (1–4 s a run with one torch thread).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnnvis_engine import MethodError
from cnnvis_ui import result_cache, state

pytestmark = pytest.mark.usefixtures("one_torch_thread", "fresh_caches")

LAYERS = str(Path(__file__).resolve().parent.parent / "pages" / "layers.py")
SHOW = "Show what these channels look for"
TILE, GAP, COLUMNS = 128, 2, 4  # pages/layers.py's gallery grid


@pytest.fixture
def renders(monkeypatch):
    """Every gallery the engine renders: (layer, channels, results)."""
    calls = []
    original = result_cache.render_channels

    def recording(bundle, layer, channels, **kwargs):
        results = original(bundle, layer, channels, **kwargs)
        calls.append((layer, tuple(channels), results))
        return results

    monkeypatch.setattr(result_cache, "render_channels", recording)
    return calls


def layers_page(**session: object) -> AppTest:
    at = AppTest.from_file(LAYERS, default_timeout=120)
    for key, value in session.items():
        at.session_state[key] = value
    return at.run()


def show_gallery(at: AppTest) -> AppTest:
    next(t for t in at.toggle if t.label == SHOW).set_value(True)
    return at.run()


def bold_titles(at: AppTest) -> set[str]:
    return {m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")}


def gallery_picture(at: AppTest) -> np.ndarray:
    """The picture the gallery's plotly figure carries (its JPEG data URI), as an RGB array."""
    chart = next(c for c in at.get("plotly_chart") if "layer-gallery" in c.proto.id)
    uri = json.loads(chart.proto.spec)["data"][0]["source"]
    data = base64.b64decode(uri.removeprefix("data:image/jpeg;base64,"))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)


def tiles(picture: np.ndarray, count: int) -> list[np.ndarray]:
    return [
        picture[r * (TILE + GAP) : r * (TILE + GAP) + TILE, c * (TILE + GAP) : c * (TILE + GAP) + TILE]
        for r, c in (divmod(i, COLUMNS) for i in range(count))
    ]


def test_the_gallery_is_off_until_asked_for(renders):
    at = layers_page()
    assert not at.exception
    assert any(t.label == SHOW for t in at.toggle)
    assert "What these channels look for" not in bold_titles(at) and not renders


def test_the_gallery_draws_one_tile_per_channel_of_the_feature_maps(renders):
    at = show_gallery(layers_page())
    assert not at.exception
    assert "What these channels look for" in bold_titles(at)
    [(layer, channels, results)] = renders
    assert layer == "bn2" and len(channels) == 8  # the feature maps' layer, their first 8 channels
    assert any(f"bn2 · channels {', '.join(map(str, channels))}, left to right" in c.value for c in at.caption)
    picture = gallery_picture(at)
    assert picture.shape == (2 * TILE + GAP, COLUMNS * TILE + (COLUMNS - 1) * GAP, 3)
    grey = [c for c, r in zip(channels, results) if not r.history.any()]
    for channel, tile, result in zip(channels, tiles(picture, 8), results):
        assert (tile.std() < 3) == (channel in grey), channel  # a grey tile is exactly a channel with no gradient
        assert abs(tile.mean() - result.image.mean()) < 4, channel  # the tile shows that channel's image
    assert len(grey) < 8
    if grey:  # at bn2 (behind ReLU6) some of these channels give no response on the grey start
        note = next(c.value for c in at.caption if "Stayed grey" in c.value)
        assert all(str(c) in note for c in grey)

    at.run()  # a rerun (e.g. another colormap) draws the kept gallery: no new optimisation
    assert len(renders) == 1 and "What these channels look for" in bold_titles(at)


def test_the_gallery_follows_the_layer_and_the_channel_count(renders):
    at = show_gallery(layers_page(**{state.LAYER: "blocks.5", state.FM_CHANNELS: 4}))
    assert not at.exception
    [(layer, channels, _results)] = renders
    assert layer == "blocks.5" and len(channels) == 4
    picture = gallery_picture(at)
    assert picture.shape == (TILE, 4 * TILE + 3 * GAP, 3)
    assert all(tile.std() > 10 for tile in tiles(picture, 4))  # no ReLU at a block's end: every channel drawn
    assert not any("Stayed grey" in c.value for c in at.caption)


def test_an_engine_error_shows_a_message_in_the_gallery_s_place(monkeypatch):
    def failing(bundle, layer, channels, **kwargs):
        raise MethodError("Feature visualisation needs at least 8×8 pixels.")

    monkeypatch.setattr(result_cache, "render_channels", failing)
    at = show_gallery(layers_page())
    assert not at.exception
    assert "What these channels look for" in bold_titles(at)
    assert any("needs at least 8×8 pixels" in e.value for e in at.error)
    assert not any("layer-gallery" in c.proto.id for c in at.get("plotly_chart"))
    assert {"Feature maps", "Kernels"} <= bold_titles(at)  # the rest of the page still draws
