"""Display controls shared by the pages: colormap, overlay opacity and the saliency mode.

They change only how cached results are drawn, never what is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from cnnvis_engine.render import colormap_names

from . import state

SALIENCY_MODES = {"saliency": "Vanilla", "guided_backprop": "Guided"}


@dataclass(frozen=True)
class Display:
    colormap: str
    opacity: float
    saliency: str  # "saliency" or "guided_backprop"


def display_settings(*, saliency: bool = True, opacity: bool = True) -> Display:
    """Draw the controls in one row and return their values."""
    columns = st.columns(3)
    names = colormap_names()
    columns[0].selectbox(
        "Colormap", names, key=state.seed(state.COLORMAP, names), on_change=state.commit, args=(state.COLORMAP,)
    )
    if opacity:
        columns[1].slider(
            "Overlay opacity", min_value=0.0, max_value=1.0, step=0.05, key=state.seed(state.OPACITY),
            on_change=state.commit, args=(state.OPACITY,), help="How strongly CAM and Grad-CAM cover the photo.",
        )
    if saliency:
        columns[2].segmented_control(
            "Saliency",
            list(SALIENCY_MODES),
            format_func=SALIENCY_MODES.get,
            required=True,
            key=state.seed(state.SALIENCY_MODE, list(SALIENCY_MODES)),
            on_change=state.commit,
            args=(state.SALIENCY_MODE,),
            help="Vanilla: |gradient| of the class score. Guided: only positive evidence flows back (crisper edges).",
        )
    return Display(state.get(state.COLORMAP), float(state.get(state.OPACITY)), state.get(state.SALIENCY_MODE))
