"""Panel drawing: a picture as a plotly figure whose hover shows the method's raw values, a PNG download, the
method's one-sentence explanation folded away, and a readable message in place of a panel that cannot be drawn.

What to draw comes from `views` (a `PanelView`, its `Hover` values and `Legend`, made without Streamlit); this
module only draws it, and turns a panel set into the report's downloads.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Sequence
from functools import partial

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from cnnvis_engine import METHODS
from cnnvis_engine.render import ReportPanel, render_heatmap
from cnnvis_engine.report import (
    ReportStamp,
    library_versions,
    render_panel_png,
    render_report_html,
    render_report_png,
)

from .text import plain
from .views import Hover, Legend, PanelView

PANEL_HEIGHT = 280  # px of a panel's figure: about its width in a three-column wide layout
_CLEAR = [[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]]


# ----- figures -------------------------------------------------------------------------------------------
def png_bytes(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def panel_png(view: PanelView) -> bytes:
    """A panel's download: its picture with its title above and its caption below."""
    return render_panel_png(ReportPanel(view.title, view.picture, caption=view.caption))


def jpeg_bytes(picture: np.ndarray) -> bytes:
    """For the screen only (downloads and reports are PNG): 10× faster to encode and 3–7× smaller than PNG for
    these pictures, which keeps a redraw quick; 4:4:4 at quality 92 keeps colour edges and kernel tiles sharp."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(picture)).save(buffer, format="JPEG", quality=92, subsampling=0)
    return buffer.getvalue()


def colorscale(colormap: str, steps: int = 11) -> list[list[object]]:
    """`colormap` as a plotly colour scale, sampled from the engine's own rendering (so the bar matches the map)."""
    ramp = render_heatmap(np.linspace(0, 1, steps, dtype=np.float32)[None, :], colormap)[0]
    return [[i / (steps - 1), f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(ramp.tolist())]


def _legend_trace(legend: Legend) -> go.Heatmap:
    """A colour bar only: the trace's one cell lies outside the axes, so nothing of it is drawn on the picture."""
    return go.Heatmap(
        z=[[0.0, 1.0]],
        x=[-10.0, -9.0],
        y=[-10.0],
        zmin=0,
        zmax=1,
        colorscale=colorscale(legend.colormap),
        hoverinfo="skip",
        showscale=True,
        colorbar={
            "orientation": "h",
            "thickness": 8,
            "len": 1.0,
            "x": 0.5,
            "xanchor": "center",
            "y": -0.01,
            "yanchor": "top",
            "tickvals": [0.02, 0.98],
            "ticktext": [legend.low, legend.high],
            "ticks": "outside",
            "ticklen": 3,
            "showticklabels": False,
            "outlinewidth": 0,  # the labels are annotations: always drawn
        },
    )


def figure(
    picture: np.ndarray, hover: Hover | None = None, height: int = PANEL_HEIGHT, legend: Legend | None = None
) -> go.Figure:
    """The picture (sent as one JPEG) under an invisible heat map that carries the raw values for hover, and the
    colour bar of `legend` under it."""
    h, w = picture.shape[:2]
    uri = "data:image/jpeg;base64," + base64.b64encode(jpeg_bytes(picture)).decode("ascii")
    fig = go.Figure(go.Image(source=uri, hoverinfo="skip"))
    if hover is not None:
        gh, gw = hover.values.shape
        x = hover.x if hover.x is not None else (np.arange(gw) + 0.5) * w / gw - 0.5
        y = hover.y if hover.y is not None else (np.arange(gh) + 0.5) * h / gh - 0.5
        # numpy arrays, not lists: plotly validates them in bulk and sends them as compact typed arrays.
        fig.add_trace(
            go.Heatmap(
                z=np.asarray(hover.values, dtype=np.float32),
                x=np.asarray(x, dtype=np.float32),
                y=np.asarray(y, dtype=np.float32),
                text=hover.text,
                hovertemplate=(
                    f"%{{text}}<br>{hover.label}: %{{z:.4g}}"
                    if hover.text is not None
                    else f"{hover.label}: %{{z:.4g}}"
                )
                + "<extra></extra>",
                colorscale=_CLEAR,
                showscale=False,
                hoverongaps=False,
            )
        )
    if legend is not None:
        fig.add_trace(_legend_trace(legend))
        for x, anchor, text in ((0, "left", legend.low), (1, "right", legend.high)):
            fig.add_annotation(
                x=x,
                y=0,
                xref="paper",
                yref="paper",
                xanchor=anchor,
                yanchor="top",
                yshift=-16,
                text=text,
                showarrow=False,
                font={"size": 11, "color": "#6e707a"},
            )
    fig.update_xaxes(visible=False, range=[-0.5, w - 0.5], constrain="domain", fixedrange=True)
    fig.update_yaxes(visible=False, range=[h - 0.5, -0.5], scaleanchor="x", constrain="domain", fixedrange=True)
    fig.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 0, "b": 52 if legend is not None else 0},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        hovermode="closest",
        dragmode=False,
    )
    return fig


# ----- drawing -------------------------------------------------------------------------------------------
def draw(view: PanelView, *, height: int = PANEL_HEIGHT, file_stem: str = "cnnvis") -> None:
    """One panel in a bordered box: title, picture with hover (or the message why there is none), caption,
    PNG download and the method's folded explanation. The box's CSS class is `st-key-panel-<key>`."""
    with st.container(border=True, key=f"panel-{view.key}"):
        st.markdown(f"**{plain(view.title)}**")  # titles, captions and notes can hold class and file names
        if view.picture is None:
            (st.error if view.level == "error" else st.info)(
                plain(view.note), icon=":material/info:" if view.level != "error" else None
            )
        else:
            st.plotly_chart(
                figure(view.picture, view.hover, height, view.legend),
                key=f"chart-{view.key}",
                config={"displayModeBar": False, "scrollZoom": False, "doubleClick": False},
            )
            if view.caption:
                st.caption(plain(view.caption))
            if view.note:
                st.caption(f":orange[{plain(view.note)}]")
            st.download_button(
                "PNG",
                data=partial(panel_png, view),
                file_name=f"{file_stem}-{view.key}.png",
                mime="image/png",
                key=f"png-{view.key}",
                icon=":material/download:",
                on_click="ignore",
                type="tertiary",
            )
        explain_method(view.method)


def explain_method(method: str | None) -> None:
    """The method's one-sentence summary and its paper, folded away."""
    if method is None or method not in METHODS:
        return
    cls = METHODS[method]
    with st.expander(f"About {cls.title}"):
        paper = f" [Paper]({cls.paper})" if cls.paper else ""
        st.markdown(f"{cls.summary}{paper}")


def draw_grid(
    views: Sequence[PanelView], columns: int = 3, *, height: int = PANEL_HEIGHT, file_stem: str = "cnnvis"
) -> None:
    """Panels in rows of `columns` (each drawn by `draw`, with `height` and `file_stem`)."""
    for start in range(0, len(views), columns):
        cells = st.columns(columns, gap="medium")
        for cell, view in zip(cells, views[start : start + columns]):
            with cell:
                draw(view, height=height, file_stem=file_stem)


def message(title: str, text: str, *, key: str, level: str = "error") -> None:
    """A panel's place filled with a readable message (an engine error, a missing model)."""
    draw(PanelView(key=key, title=title, note=text, level=level))


def model_unavailable(error: str) -> None:
    """The warning a page shows instead of its work when the chosen model cannot be had (`Context.model_error`).
    The engine's sentence already says what to do about the model itself (e.g. "or choose random weights")."""
    st.warning(f"{plain(error)} Another model can be picked in the sidebar.", icon=":material/cloud_off:")


# ----- report --------------------------------------------------------------------------------------------
def report_panels(views: Sequence[PanelView]) -> list[ReportPanel]:
    return [ReportPanel(v.title, v.picture, caption=v.caption, note=v.note if v.picture is None else "") for v in views]


def _stamped(stamp: ReportStamp) -> ReportStamp:
    """The stamp with the library versions, looked up only when a report is made."""
    return dataclasses.replace(stamp, versions=stamp.versions or library_versions())


def _report_png(views: Sequence[PanelView], stamp: ReportStamp) -> bytes:
    return render_report_png(report_panels(views), _stamped(stamp))


def _report_html(views: Sequence[PanelView], stamp: ReportStamp) -> bytes:
    return render_report_html(report_panels(views), _stamped(stamp)).encode("utf-8")


def report_buttons(views: Sequence[PanelView], stamp: ReportStamp, *, file_stem: str) -> None:
    """Two downloads of the current panel set, built only when clicked."""
    with st.container(horizontal=True, key="report-buttons"):
        st.download_button(
            "Report as PNG",
            data=partial(_report_png, list(views), stamp),
            file_name=f"{file_stem}-report.png",
            mime="image/png",
            key="report-png",
            icon=":material/image:",
            on_click="ignore",
        )
        st.download_button(
            "Report as HTML",
            data=partial(_report_html, list(views), stamp),
            file_name=f"{file_stem}-report.html",
            mime="text/html",
            key="report-html",
            icon=":material/description:",
            on_click="ignore",
        )


def app_icon(size: int = 64) -> Image.Image:
    """The favicon, drawn here so that the browser fetches nothing from the internet: a heat-map blob."""
    y, x = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    blob = np.exp(-((x + 0.08) ** 2 + (y + 0.05) ** 2) / 0.045)
    return Image.fromarray(render_heatmap(blob.astype(np.float32), "jet"))
