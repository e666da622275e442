"""Sanity: does a map depend on what the network learned? Adebayo et al.'s model-parameter randomisation test on
the sidebar's model, image, layer and class, for one method and optionally a second to compare with."""

import streamlit as st

from cnnvis_engine import METHODS, EngineError
from cnnvis_ui import actions, caveats, charts, choices, context, panels, scale, share, state, views
from cnnvis_ui.text import plain

MODES = choices.SANITY_MODES
PAPER = "https://arxiv.org/abs/1810.03292"
COLUMNS = 8


def title(method: str) -> str:
    return "— none —" if method == state.NO_METHOD else METHODS[method].title


def choose() -> tuple[list[str], str]:
    """The methods to test (the chosen one, then the one to compare with, if any) and the mode."""
    method_column, second_column, mode_column = st.columns([2, 2, 3])
    offered = choices.sanity_methods()  # maps cheap enough to redo per layer
    method_column.selectbox(
        "Method",
        offered,
        **state.bound(state.SANITY_METHOD, offered),
        format_func=title,
    )
    seconds = [state.NO_METHOD, *offered]
    second_column.selectbox(
        "Compare with",
        seconds,
        **state.bound(state.SANITY_SECOND, seconds),
        format_func=title,
        help="Grad-CAM against guided backprop shows the paper's finding: one changes, the other hardly does.",
    )
    mode_column.segmented_control(
        "Randomise",
        list(MODES),
        format_func=MODES.get,
        required=True,
        **state.bound(state.SANITY_MODE, list(MODES)),
        help="Cascading: each step adds one more layer to the random ones, from the output down. One layer at a "
        "time: each step randomises a single layer and keeps all the others as trained.",
    )
    method, second = state.get(state.SANITY_METHOD), state.get(state.SANITY_SECOND)
    return [method, *([second] if second not in (state.NO_METHOD, method) else [])], state.get(state.SANITY_MODE)


def run(ctx: context.Context, method: str, mode: str, same_scale: bool = False) -> tuple | None:
    """One method's test (cached) and the grid of its maps; None, with the reason in the panel's place, when
    the method cannot be tested here."""
    key = f"sanity-{views.css_key(method)}"
    try:
        explanation = ctx.explain([method])
        steps = ctx.randomisation(method, mode)
    except EngineError as error:
        panels.message(METHODS[method].title, str(error), key=key)
        return None
    caveats.remember(ctx.sanity_run(method, mode), steps)  # for Explore's faithfulness table
    with st.container(border=True, key=key):
        at_layer = f" at layer `{explanation.layer}`" if explanation.layer else ""
        st.markdown(f"**{plain(METHODS[method].title)}** for **{plain(explanation.target.label)}**{at_layer}")
        colormap, opacity = state.get(state.COLORMAP), state.get(state.OPACITY)
        shared = scale.step_pictures(steps, method, explanation.image, colormap, opacity) if same_scale else None
        if same_scale:
            st.caption(
                f"One colour scale for these {len(steps)} maps: 1 = the strongest of them."
                if shared
                else "These maps cannot be put on one scale; each keeps its own."
            )
        for start in range(0, len(steps), COLUMNS):
            for index, (cell, step) in enumerate(zip(st.columns(COLUMNS), steps[start : start + COLUMNS]), start):
                picture = (
                    shared[index]
                    if shared
                    else views.step_picture(explanation.image, step.map, method, colormap, opacity)
                )
                cell.image(picture, caption=f"{step.label} · ρ = {step.spearman:.2f}", width="stretch")
    return steps


def render() -> None:
    ctx = context.current()
    st.title("Sanity check: does the map depend on what the network learned?")
    st.markdown(
        "A map is meant to show what the network learned to look for. This test replaces the learned weights with "
        "random ones, layer by layer from the output down, and draws the map again each time. If the map hardly "
        "changes, it was showing the picture's edges rather than the network's reasoning: "
        f"[Adebayo et al. (2018)]({PAPER}) found this for guided backprop, while Grad-CAM passes."
    )
    if not ctx.ready:
        panels.model_unavailable(ctx.model_error)
        return
    if ctx.model.weights == "random":
        st.info(
            "This test needs trained weights: these are random, so there is nothing learned to destroy and the "
            "result says little. You can still run it.",
            icon=":material/warning:",
        )
    methods, mode = choose()
    same_scale = scale.toggle()
    runs = [ctx.sanity_run(method, mode) for method in methods]
    actions.sanity_shown(runs)
    asked = set(state.get(state.SANITY_RUNS))
    st.button(
        "Run the test",
        key="sanity-run",
        type="primary",
        icon=":material/play_arrow:",
        disabled=asked.issuperset(runs),
        on_click=actions.request_runs,
        args=(runs,),
        help="Each method's maps are computed once per model, image, layer, class and mode, then kept.",
    )
    chart = st.container()
    results = {
        METHODS[method].title: steps
        for method, key in zip(methods, runs)
        if key in asked and (steps := run(ctx, method, mode, same_scale)) is not None
    }
    if results:
        with chart:
            st.plotly_chart(charts.spearman_figure(results, mode), key="sanity-chart", config={"displayModeBar": False})
            st.caption(
                "Spearman rank correlation: 1 = the map ranks the pixels exactly as the trained network's map does, "
                "0 = no relation. A map that explains what the network learned falls as its layers are randomised; "
                "ρ under each small map below is that map's value."
            )


share.ensure_entry()
render()
