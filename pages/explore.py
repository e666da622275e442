"""Explore: one image through one model, every method side by side; a top-5 click re-targets every panel."""

import streamlit as st

from cnnvis_engine import EngineError
from cnnvis_ui import context, controls, entry, panels, views
from cnnvis_ui.text import plain

LAYOUT = (("input", "gradcam", "guided_gradcam"), ("cam", "saliency", "feature_maps"))


def predictions_table(ctx: context.Context) -> None:
    try:
        predictions = ctx.predictions()
    except EngineError as error:
        st.error(plain(str(error)))
        return
    st.dataframe(
        {
            "Class": [p.name for p in predictions],
            "Probability": [p.probability for p in predictions],
            "Index": [p.index for p in predictions],
        },
        column_config={
            "Probability": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0),
            "Index": st.column_config.NumberColumn(width="small"),
        },
        hide_index=True,
        width="stretch",
        key="predictions",
    )


@st.fragment
def panels_area(ctx: context.Context) -> None:
    """Everything below the title. A fragment: changing colormap, opacity or the saliency mode reruns only this
    part, and the colormap and opacity only redraw cached results."""
    left, right = st.columns([3, 2], gap="large")
    with left:
        summary = st.empty()
        display = controls.display_settings()
        report_slot = st.container()
    with right:
        predictions_table(ctx)
    methods = ("feature_maps", display.saliency, "cam", "gradcam", "guided_gradcam")
    method_views, explanation = views.explained_views(ctx, methods, display.colormap, display.opacity)
    if explanation is not None:
        summary.markdown(
            f"**{plain(ctx.model.label)}** — explaining **{plain(explanation.target.label)}** "
            f"at layer `{explanation.layer}`"
        )
        image_view = views.input_view(explanation.image, ctx.image.title, ctx.notes)
    else:
        summary.markdown(f"**{plain(ctx.model.label)}**")
        image_view = views.original_view(ctx.image)
    by_key = {view.key: view for view in [image_view, *method_views]}
    ordered = [by_key[key] for row in LAYOUT for key in row if key in by_key]
    with report_slot:
        settings = {
            "Colormap": display.colormap,
            "Overlay opacity": f"{display.opacity:.2f}",
            "Saliency": controls.SALIENCY_MODES[display.saliency],
            "Feature maps": "top 16 channels by mean activation, each on its own scale",
        }
        panels.report_buttons(
            ordered, views.report_stamp(ctx, explanation, settings), file_stem=f"cnnvis-{ctx.model.name}"
        )
    panels.draw_grid(ordered, columns=3, file_stem=f"cnnvis-{ctx.model.name}")


def render() -> None:
    ctx = context.current()
    st.title("What is the network looking at?")
    if not ctx.ready:
        st.warning(f"{plain(ctx.model_error)} Choose random weights or another model in the sidebar.",
                   icon=":material/cloud_off:")
        panels.draw_grid([views.original_view(ctx.image)])
        return
    panels_area(ctx)


entry.ensure_entry()
render()
