"""Colour bars under the map panels: what 0 and 1 mean, in the map's own colours (cnnvis_ui/panels.py)."""

from __future__ import annotations

import numpy as np

from cnnvis_engine.render import render_heatmap
from cnnvis_ui import panels, views
from cnnvis_ui.panels import Legend


def test_a_legend_adds_a_colour_bar_that_draws_nothing_on_the_picture():
    picture = np.zeros((20, 30, 3), np.uint8)
    fig = panels.figure(picture, legend=Legend("viridis", "0: no evidence", "1: strongest in this map"))
    bars = [trace for trace in fig.data if getattr(trace, "showscale", False)]
    assert len(bars) == 1
    bar = bars[0]
    assert [a.text for a in fig.layout.annotations] == ["0: no evidence", "1: strongest in this map"]
    assert max(bar.x) < -0.5  # outside the picture's axis range: only the bar shows
    assert not any(getattr(trace, "showscale", False) for trace in panels.figure(picture).data)


def test_the_colour_scale_is_the_engine_s_colormap():
    scale = panels.colorscale("jet", steps=3)
    ends = render_heatmap(np.array([[0.0, 0.5, 1.0]], np.float32), "jet")[0]
    assert [position for position, _ in scale] == [0.0, 0.5, 1.0]
    assert scale[0][1] == "rgb({},{},{})".format(*ends[0]) and scale[2][1] == "rgb({},{},{})".format(*ends[2])


def test_every_map_panel_of_the_default_view_has_a_legend(zoo, cat):
    from cnnvis_engine import Explainer

    explanation = Explainer(zoo("efficientnet_lite0")).explain(
        cat, methods=["gradcam", "cam", "saliency", "feature_maps", "guided_gradcam"]
    )
    by_key = {view.key: view for view in views.method_views(explanation, "magma", 0.5)}
    for key in ("gradcam", "cam", "saliency", "feature_maps"):
        assert by_key[key].legend is not None and by_key[key].legend.colormap == "magma", key
    assert by_key["saliency"].legend.high == views.SATURATED_END  # stretched to its 99th percentile: says so
    assert by_key["guided_gradcam"].legend is None  # an RGB picture, grey = 0: no colour scale to explain
