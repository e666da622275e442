"""Controls shared by the pages: colormap, overlay opacity and the saliency mode (they change only how cached
results are drawn, never what is computed), and the Explore page's choice of extra methods and scores.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import streamlit as st

from cnnvis_engine import METHODS
from cnnvis_engine.render import colormap_names

from . import choices, state

SALIENCY_MODES = choices.SALIENCY_MODES
# The panels Explore always shows; every other registered method that draws a map is offered as an extra.
STANDING = choices.STANDING


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
        "Colormap",
        names,
        **state.bound(state.COLORMAP, names),
    )
    if opacity:
        bounds = state.domain(state.OPACITY)  # a link's opacity is held to the same range
        columns[1].slider(
            "Overlay opacity",
            min_value=bounds.low,
            max_value=bounds.high,
            step=0.05,
            **state.bound(state.OPACITY),
            help="How strongly CAM and Grad-CAM cover the photo.",
        )
    if saliency:
        columns[2].segmented_control(
            "Saliency",
            list(SALIENCY_MODES),
            format_func=lambda mode: SALIENCY_MODES.get(mode, mode),
            required=True,
            **state.bound(state.SALIENCY_MODE, list(SALIENCY_MODES)),
            help="Vanilla: |gradient| of the class score. Guided: only positive evidence flows back (crisper edges).",
        )
    return Display(state.get(state.COLORMAP), float(state.get(state.OPACITY)), state.get(state.SALIENCY_MODE))


def offered_extras(refused: Collection[str] = ()) -> list[str]:
    """The registered methods Explore offers beyond its standing panels, quick ones first (registry order; the one
    list links are checked against: `choices.explore_extras`), less those that refuse the model (`refused`: the
    attention methods on a network without attention)."""
    return [m for m in choices.explore_extras() if m not in refused]


def extra_methods(refused: Collection[str] = ()) -> list[str]:
    """Pills for the extra Explore panels (none by default, so the page stays fast), less the methods that refuse
    the model; returns the chosen ones in the order offered."""
    offered = offered_extras(refused)
    state.put(state.EXTRA_METHODS, state.valid_subset(state.EXTRA_METHODS, offered, []))
    st.pills(
        "More methods",
        offered,
        selection_mode="multi",
        format_func=method_label,
        wrap=True,
        **state.bound(state.EXTRA_METHODS),
        help="Each adds a panel below. :material/timer: marks methods that run the network tens to hundreds of "
        "times: they take a few seconds (more on a big model), once per image, layer and class.",
    )
    chosen = set(state.get(state.EXTRA_METHODS))
    return [method for method in offered if method in chosen]


def method_label(method: str) -> str:
    """The method's title; a timer marks one that runs the network many times (`Method.slow`)."""
    return f"{METHODS[method].title} :material/timer:" if METHODS[method].slow else METHODS[method].title


def faithfulness_switch() -> bool:
    st.toggle(
        "Score the maps (deletion, insertion, average drop)",
        **state.bound(state.FAITHFULNESS),
        help="Hides and reveals the picture in the order each map ranks its pixels and watches the class "
        "probability: a faithful map makes it fall fast when its top pixels go and rise fast when they come back. "
        "About a second per map, once.",
    )
    return bool(state.get(state.FAITHFULNESS))


def method_settings(methods: list[str]) -> dict[str, dict[str, float]]:
    """A number box for every option the chosen extra `methods` declare (`Method.options`), seeded with the value
    the dashboard runs it with and bounded by the range the dashboard offers (`Option.dashboard_range`, which holds
    a link's settings too); returns the options to explain each method with. A value the engine refuses (a stride
    larger than the window) comes back as the panel's sentence, not here."""
    changed = state.get(state.METHOD_SETTINGS)
    wanted: dict[str, dict[str, float]] = {}
    tunable = [method for method in methods if METHODS[method].options]
    if not tunable:
        return wanted
    box = st.expander(f"Settings of {', '.join(METHODS[m].title for m in tunable)}", icon=":material/tune:")
    for method in tunable:
        options = METHODS[method].options
        values = METHODS[method].quick_options()
        columns = box.columns(len(options))
        for column, option in zip(columns, options):
            start = changed.get(method, {}).get(option.name, values.get(option.name, option.default))
            if not math.isfinite(start):  # NaN or infinite (set through session state): the default instead
                start = values.get(option.name, option.default)
            low, high = option.dashboard_range()
            start = option.kind(min(max(start, low), high))  # set through session state out of range: clamped
            key = state.setting_widget(method, option.name)
            st.session_state[key] = start
            column.number_input(
                f"{METHODS[method].title}: {option.label}",
                key=key,
                step=1 if option.kind is int else 0.1,
                min_value=None if low == -float("inf") else option.kind(low),
                max_value=None if high == float("inf") else option.kind(high),
                on_change=_commit_setting,
                args=(method, option.name),
                help=f"The engine's default is {option.default:g}.",
            )
            if option.name in changed.get(method, {}):  # the rest keep the dashboard's or the engine's default
                values[option.name] = start
        wanted[method] = values
    return wanted


def _commit_setting(method: str, option: str) -> None:
    settings = {m: dict(values) for m, values in state.get(state.METHOD_SETTINGS).items()}
    settings.setdefault(method, {})[option] = st.session_state[state.setting_widget(method, option)]
    state.put(state.METHOD_SETTINGS, settings)
