"""Explore: one image through one model, every method side by side (more on request, each map scored for
faithfulness on request); a top-5 click re-targets every panel."""

from contextlib import nullcontext

import streamlit as st

from cnnvis_engine import METHODS, EngineError, Explanation
from cnnvis_engine.faithfulness import Faithfulness
from cnnvis_ui import caveats, charts, context, controls, curves, panels, share, views
from cnnvis_ui.text import plain

LAYOUT = (("input", "gradcam", "guided_gradcam"), ("cam", "saliency", "feature_maps"))
SCORED = ("gradcam", "cam", "saliency", "guided_backprop")  # classic maps scored for faithfulness, when shown


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


def extra_panels(
    ctx: context.Context, extras: list[str], display: controls.Display, settings: dict[str, dict[str, float]]
) -> tuple[list[views.PanelView], dict[str, Explanation]]:
    """The chosen extra methods' panels with their `settings`, one cached engine call each (so adding one computes
    only that one), and the explanation each came from."""
    found, sources = [], {}
    for method in extras:
        waiting = f"{METHODS[method].title} runs the network many times over: a few seconds…"
        with st.spinner(waiting, show_time=True) if METHODS[method].slow else nullcontext():
            method_views, explanation = ctx.explained_views(
                [method], display.colormap, display.opacity, options=options_of(method, settings)
            )
        found += method_views
        if explanation is not None:
            sources[method] = explanation
    return found, sources


def options_of(method: str, settings: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {method: settings[method]} if settings.get(method) else {}


def scores_for(
    ctx: context.Context, sources: dict[str, Explanation], settings: dict[str, dict[str, float]]
) -> tuple[dict[str, Faithfulness], dict[str, str]]:
    """Faithfulness of every scorable map (cached per image, model, layer, class and method), and the errors."""
    scores, problems = {}, {}
    with st.spinner("Scoring the maps: hiding and revealing pixels…", show_time=True):
        for method, explanation in sources.items():
            if not views.scorable(explanation, method):
                continue
            try:
                scores[method] = ctx.faithfulness(explanation, method, options_of(method, settings))
            except EngineError as error:
                problems[method] = str(error)
    return scores, problems


def faithfulness_section(
    scores: dict[str, Faithfulness],
    problems: dict[str, str],
    titles: dict[str, str],
    ctx: context.Context | None = None,
) -> None:
    """The curves of every scored map in one figure, their numbers in a table, and what could not be scored."""
    st.subheader("How faithful are these maps?")
    st.caption(
        "Deletion hides the picture's pixels in the order the map ranks them, most important first (hidden = the "
        "mean colour); insertion reveals them in that order on a blurred copy. After each 4% we ask the network "
        "again. A faithful map makes the class probability fall fast on deletion (small area under the curve) and "
        "rise fast on insertion (large area). Average drop: how much the probability falls when the picture is "
        "dimmed by the map itself (small is good)."
    )
    for method, text in problems.items():
        st.error(f"{plain(titles[method])} could not be scored: {plain(text)}")
    if not scores:
        return
    st.plotly_chart(
        charts.faithfulness_figure({titles[m]: score for m, score in scores.items()}),
        key="faithfulness-chart",
        config={"displayModeBar": False},
    )
    st.dataframe(
        {
            "Map": [titles[m] for m in scores],
            "Deletion AUC (lower is better)": [s.deletion.auc for s in scores.values()],
            "Insertion AUC (higher is better)": [s.insertion.auc for s in scores.values()],
            "Average drop (lower is better)": [s.average_drop for s in scores.values()],
            **({"Sanity test": caveats.column(ctx, list(scores))} if ctx is not None else {}),
        },
        column_config={
            "Average drop (lower is better)": st.column_config.NumberColumn(format="percent"),
            "Sanity test": st.column_config.TextColumn(help=caveats.HELP),
        },
        hide_index=True,
        key="faithfulness-table",
    )
    st.markdown(plain(views.faithfulness_verdict(scores, titles)))
    for sentence in caveats.sentences(ctx, list(scores), titles) if ctx is not None else ():
        st.markdown(plain(sentence))


@st.fragment
def panels_area(ctx: context.Context) -> None:
    """Everything below the title. A fragment: changing colormap, opacity, the saliency mode or the extra methods
    reruns only this part, and the colormap and opacity only redraw cached results."""
    left, right = st.columns([3, 2], gap="large")
    with left:
        summary = st.empty()
        display = controls.display_settings()
        extras = controls.extra_methods(ctx.refused_methods())
        settings = controls.method_settings(extras)
        scoring = controls.faithfulness_switch()
        report_slot = st.container()
    with right:
        predictions_table(ctx)
    methods = ("feature_maps", display.saliency, "cam", "gradcam", "guided_gradcam")
    method_views, explanation = ctx.explained_views(methods, display.colormap, display.opacity)
    if explanation is not None:
        at_layer = f" at layer `{explanation.layer}`" if explanation.layer else ""  # None: the method needs none
        summary.markdown(f"**{plain(ctx.model.label)}** — explaining **{plain(explanation.target.label)}**{at_layer}")
        image_view = views.input_view(explanation.image, ctx.image.title, ctx.notes)
    else:
        summary.markdown(f"**{plain(ctx.model.label)}**")
        image_view = views.original_view(ctx.image.decoded, ctx.image.title)
    by_key = {view.key: view for view in [image_view, *method_views]}
    same = views.coincide_note(explanation)
    if same and "cam" in by_key:
        by_key["cam"] = views.relabel(by_key["cam"], note=same)
    classic = [by_key[key] for row in LAYOUT for key in row if key in by_key]
    stem = f"cnnvis-{ctx.model.name}"
    grid = st.container()
    if not scoring:  # nothing slow in the classic panels: drawn now, while the extra ones wait their turn below
        with grid:
            panels.draw_grid(classic, columns=3, file_stem=stem)
    added, sources = extra_panels(ctx, extras, display, settings)
    ordered = classic + added
    if scoring:
        sources = {**{m: explanation for m in SCORED if m in methods}, **sources}
        scores, problems = scores_for(ctx, sources, settings)
        ordered = [views.with_scores(v, scores[v.method]) if v.method in scores else v for v in ordered]
    with report_slot:
        settings = {
            "Colormap": display.colormap,
            "Overlay opacity": f"{display.opacity:.2f}",
            "Saliency": controls.SALIENCY_MODES[display.saliency],
            "Feature maps": "top 16 channels by mean activation, each on its own scale",
            **views.predictions_row(ctx.known_predictions()),
        }
        if scoring:
            settings.update(views.scores_rows(scores, {v.method: v.title for v in ordered if v.method}))
        plotted = curves.report_views(scores, {v.method: v.title for v in ordered if v.method}) if scoring else []
        panels.report_buttons(ordered + plotted, ctx.report_stamp(explanation, settings), file_stem=stem)
    with grid:  # scored panels carry their scores, so with scoring on the classic ones are drawn with them
        panels.draw_grid(ordered if scoring else added, columns=3, file_stem=stem)
    if scoring:
        faithfulness_section(scores, problems, {v.method: v.title for v in ordered if v.method}, ctx)


def render() -> None:
    ctx = context.current()
    st.title("What is the network looking at?")
    if not ctx.ready:
        panels.model_unavailable(ctx.model_error)
        panels.draw_grid([views.original_view(ctx.image.decoded, ctx.image.title)])
        return
    panels_area(ctx)


share.ensure_entry()
render()
