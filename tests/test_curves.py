"""Faithfulness curves told apart (`cnnvis_ui.curves`, `charts.faithfulness_figure`) and plotted in the report."""

from __future__ import annotations

import numpy as np

from cnnvis_engine.faithfulness import Curve, Faithfulness
from cnnvis_engine.report import ReportStamp, render_report_html, render_report_png
from cnnvis_ui import charts, curves, panels

FRACTIONS = np.linspace(0, 1, 26)


def score(fall: float, rise: float) -> Faithfulness:
    deletion = np.exp(-fall * FRACTIONS) * 0.9
    insertion = 0.9 * (1 - np.exp(-rise * FRACTIONS))
    return Faithfulness(
        deletion=Curve(FRACTIONS, deletion, float(np.trapezoid(deletion, FRACTIONS))),
        insertion=Curve(FRACTIONS, insertion, float(np.trapezoid(insertion, FRACTIONS))),
        average_drop=0.2,
        increase=False,
        score=0.9,
        masked_score=0.7,
    )


SCORES = {"CAM": score(6, 8), "Grad-CAM": score(6, 8), "Saliency (vanilla)": score(2, 3)}


def test_identical_curves_are_found_and_only_those():
    assert curves.coinciding(SCORES) == {"Grad-CAM": "CAM"}
    assert curves.coinciding({"A": score(6, 8), "B": score(6.5, 8)}) == {}


def test_each_map_has_its_own_dash_and_marker_and_a_repeated_curve_says_so():
    fig = charts.faithfulness_figure(SCORES)
    deletion = [trace for trace in fig.data if trace.showlegend]
    assert len(deletion) == 3
    assert len({trace.line.dash for trace in fig.data}) == 3  # one dash style per map, on both sides
    assert len({trace.marker.symbol for trace in deletion}) == 3
    names = {trace.legendgroup: trace.name for trace in deletion}
    assert names["Grad-CAM"].endswith("(the same curves as CAM: drawn on top of them)")
    assert "same curves" not in names["CAM"] and "same curves" not in names["Saliency (vanilla)"]


def test_the_report_plots_the_deletion_and_insertion_curves():
    found = curves.report_views(
        {"cam": SCORES["CAM"], "gradcam": SCORES["Grad-CAM"], "saliency": SCORES["Saliency (vanilla)"]},
        {"cam": "CAM", "gradcam": "Grad-CAM", "saliency": "Saliency (vanilla)"},
    )
    assert [v.title for v in found] == ["Faithfulness: deletion curves", "Faithfulness: insertion curves"]
    for view in found:
        picture = view.picture
        assert picture.ndim == 3 and picture.dtype == np.uint8 and picture.std() > 10
        for colour in curves.COLOURS[:3]:  # every map's line is drawn in its colour
            rgb = np.array(curves._rgb(colour))
            assert (np.abs(picture.astype(int) - rgb).sum(axis=2) < 30).sum() > 50, colour
    assert curves.report_views({}, {}) == []
    stamp = ReportStamp(model="m", weights="w", layer="l", target="t")
    html = render_report_html(panels.report_panels(found), stamp)
    assert html.count('<img alt="Faithfulness: ') == 2
    assert render_report_png(panels.report_panels(found), stamp)[:8] == b"\x89PNG\r\n\x1a\n"
