"""Maps become pictures: heat maps, overlays and grids are (H, W, 3) uint8, a flat or NaN map draws without NaN,
opacity 0 shows the image unchanged, and bad inputs are refused with plain sentences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_bundle, make_tiny_module

from cnnvis_engine.errors import EngineError
from cnnvis_engine.explainer import Explainer
from cnnvis_engine.render import colormap_names, render_grid, render_heatmap, render_overlay, render_rgb

RAMP = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
IMAGE = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize("colormap", colormap_names())
def test_heatmap_shape_dtype_and_ends(colormap):
    heat = render_heatmap(RAMP, colormap)
    assert heat.shape == (20, 30, 3) and heat.dtype == np.uint8
    assert not np.array_equal(heat[0, 0], heat[-1, -1])  # 0 and 1 get different colours


def test_gray_heatmap_is_the_value_times_255():
    heat = render_heatmap(np.array([[0.0, 0.5, 1.0]], np.float32), "gray")
    assert heat[0, :, 0].tolist() == [0, 127, 255]
    assert (heat[..., 0] == heat[..., 1]).all() and (heat[..., 1] == heat[..., 2]).all()


def test_flat_and_nan_maps_draw_without_nan():
    for values in (np.zeros((5, 5), np.float32), np.full((5, 5), np.nan, np.float32), np.full((5, 5), 7.0)):
        heat = render_heatmap(values)
        assert heat.dtype == np.uint8 and heat.shape == (5, 5, 3)
        assert len(np.unique(heat.reshape(-1, 3), axis=0)) == 1  # one colour everywhere
        over = render_overlay(IMAGE[:5, :5], values, opacity=0.5)
        assert over.dtype == np.uint8 and over.shape == (5, 5, 3)


def test_flat_gradcam_from_the_engine_renders(tiny_image):
    # Grad-CAM for a class whose Linear weights are all negative: w_k < 0 on ReLU outputs, ReLU leaves nothing
    module = make_tiny_module()
    with torch.no_grad():
        module.fc.weight[0] = -module.fc.weight[0].abs() - 0.1
    result = Explainer(make_tiny_bundle(module)).explain(tiny_image, target=0, methods=["gradcam"])["gradcam"]
    assert result.meta["flat"] and not np.isnan(result.map).any() and (result.map == 0).all()
    picture = render_overlay(np.zeros((4, 4, 3), np.uint8), result.map)
    assert picture.shape == (4, 4, 3) and picture.dtype == np.uint8


def test_overlay_opacity_0_is_the_image_and_1_is_the_heatmap():
    assert np.array_equal(render_overlay(IMAGE, RAMP, opacity=0.0), IMAGE)
    assert np.array_equal(render_overlay(IMAGE, RAMP, "turbo", opacity=1.0), render_heatmap(RAMP, "turbo"))
    half = render_overlay(IMAGE, RAMP, opacity=0.5).astype(int)
    expected = (IMAGE.astype(int) + render_heatmap(RAMP).astype(int)) / 2
    assert np.abs(half - expected).max() <= 1
    # opacity outside [0, 1] is clipped, not an error
    assert np.array_equal(render_overlay(IMAGE, RAMP, opacity=-3), IMAGE)


def test_overlay_resizes_a_native_resolution_map_to_the_image():
    small = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    over = render_overlay(IMAGE, small, opacity=0.7)
    assert over.shape == IMAGE.shape and over.dtype == np.uint8


def test_grid_of_maps_has_the_computed_size():
    tiles = np.random.default_rng(1).random((5, 7, 7)).astype(np.float32)
    grid = render_grid(tiles, tile_size=10, gap=2)  # 5 tiles -> 3 columns, 2 rows
    assert grid.shape == (2 * 12 - 2, 3 * 12 - 2, 3) and grid.dtype == np.uint8
    assert (grid[10:12] == 255).all()  # the gap row is white
    assert (grid[12:, 2 * 12 :] == 255).all()  # the missing 6th tile is white
    assert render_grid(tiles, columns=5, tile_size=4, gap=0).shape == (4, 20, 3)


def test_grid_of_rgb_patches_keeps_their_colours():
    patches = np.zeros((2, 3, 3, 3), np.float32)
    patches[0, ..., 0] = 1.0  # red
    patches[1, ..., 2] = 1.0  # blue
    grid = render_grid(patches, columns=2, tile_size=6, gap=1)
    assert grid.shape == (6, 13, 3)
    assert grid[0, 0].tolist() == [255, 0, 0] and grid[0, 7].tolist() == [0, 0, 255]


def test_render_rgb_clips_and_rounds():
    values = np.array([[[-1.0, 0.5, 2.0], [np.nan, 0.2, 1.0]]], np.float32)
    assert render_rgb(values).tolist() == [[[0, 128, 255], [0, 51, 255]]]


def test_refusals_are_sentences():
    for call in (
        lambda: render_heatmap(np.zeros((2, 2, 2))),
        lambda: render_heatmap(RAMP, "rainbow-unicorn"),
        lambda: render_grid(np.zeros((0, 4, 4))),
    ):
        with pytest.raises(EngineError) as info:
            call()
        message = str(info.value)
        assert message[0].isupper() and message.endswith("."), message
