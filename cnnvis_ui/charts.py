"""Line charts of the checks on explanations: deletion/insertion curves of the Explore maps and the Spearman
correlation of the randomisation test, as plotly figures (labelled axes, one colour per method)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from cnnvis_engine.faithfulness import Faithfulness
from cnnvis_engine.sanity import RandomisationStep

from . import curves

COLOURS = qualitative.D3
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")  # identical curves still tell apart
_LAYOUT: dict[str, Any] = {  # plotly layout settings, nested
    "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.28, "x": 0},
    "hovermode": "x unified",
}


def faithfulness_figure(scores: Mapping[str, Faithfulness], height: int = 380) -> go.Figure:
    """Deletion (left) and insertion (right) curves, one line per map, titled by their method; `scores` maps a
    title to its scores. The legend carries each map's AUCs."""
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.08,
        subplot_titles=(
            "Deletion: most important pixels removed first (low area = good)",
            "Insertion: most important pixels put back first (high area = good)",
        ),
    )
    same = curves.coinciding(scores)  # a curve that repeats an earlier one says so, and shows its own markers
    for index, (title, score) in enumerate(scores.items()):
        colour = COLOURS[index % len(COLOURS)]
        name = curves.legend_name(title, score, same)
        for column, curve in enumerate((score.deletion, score.insertion), start=1):
            fig.add_trace(
                go.Scatter(
                    x=curve.fractions,
                    y=curve.scores,
                    mode="lines+markers",
                    name=name,
                    legendgroup=title,
                    showlegend=column == 1,
                    line={"color": colour, "width": 3 if index == 0 else 2, "dash": DASHES[index % len(DASHES)]},
                    marker={"symbol": curves.SYMBOLS[index % len(curves.SYMBOLS)], "size": 7, "maxdisplayed": 9},
                    hovertemplate=f"{title}: %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=column,
            )
    fig.update_xaxes(title_text="fraction of pixels removed", tickformat=".0%", range=[0, 1], row=1, col=1)
    fig.update_xaxes(title_text="fraction of pixels inserted", tickformat=".0%", range=[0, 1], row=1, col=2)
    fig.update_yaxes(title_text="class probability", rangemode="tozero")
    fig.update_layout(height=height, **_LAYOUT)
    fig.update_annotations(font_size=13)
    return fig


def spearman_figure(runs: Mapping[str, Sequence[RandomisationStep]], mode: str, height: int = 420) -> go.Figure:
    """Spearman rank correlation with the trained model's map after each step, one line per method (`runs` maps a
    title to its steps). The x axis names the layer randomised at each step, from the output down."""
    fig = go.Figure()
    for index, (title, steps) in enumerate(runs.items()):
        fig.add_trace(
            go.Scatter(
                x=[step.layer or "trained" for step in steps],
                y=[step.spearman for step in steps],
                name=title,
                mode="lines+markers",
                line={"color": COLOURS[index % len(COLOURS)], "width": 2},
                customdata=[step.label for step in steps],
                hovertemplate=f"{title}: %{{y:.2f}} (%{{customdata}})<extra></extra>",
            )
        )
    fig.add_hline(y=0, line={"color": "grey", "width": 1, "dash": "dot"})
    layers = "layers randomised, from the output down" if mode == "cascading" else "the one layer randomised"
    fig.update_xaxes(title_text=layers, tickangle=-45, type="category")
    fig.update_yaxes(title_text="Spearman rank correlation with the trained map", range=[-1.05, 1.05])
    fig.update_layout(height=height, **{**_LAYOUT, "legend": {**_LAYOUT["legend"], "y": 1.12, "yanchor": "bottom"}})
    return fig
