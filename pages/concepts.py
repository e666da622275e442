"""Concepts: which learned features the class rests on. Eight cards, one per channel (or group of channels) of a layer:
how much of the class's score it carries, where in the picture, what it looks for and which reference photos make it
fire; what speaks against the class apart; a card opens its sub-concepts one layer down; a box asks "why here?"; a
second model side by side."""

import streamlit as st

from cnnvis_engine import EngineError
from cnnvis_engine.report import ReportStamp
from cnnvis_ui import choices, concepts_compute, concepts_view, context, controls, panels, share, state
from cnnvis_ui.concepts_view import ConceptCard
from cnnvis_ui.text import plain

COLUMNS = 4
INTRO = (
    "A network's layers hold **channels**: each one has learned to respond to some pattern (striped fur, an ear, a "
    "round rim). For the class below, every channel of the layer adds to the score or takes away from it. The cards "
    "show the channels that carry most of it: how much, **where** in the picture (the coloured map), **what the "
    "channel looks for** (a picture made to excite it) and the **sample photos** that excite it most."
)


def controls_row(ctx: context.Context) -> tuple[str, bool]:
    """Channels or groups, and the reference photos switch."""
    units, reference = st.columns([2, 3])
    offered = list(choices.CONCEPT_UNIT_CHOICES)
    units.segmented_control(
        "Concepts are",
        offered,
        **state.bound(state.CONCEPT_UNITS, offered),
        format_func=choices.CONCEPT_UNIT_CHOICES.get,
        help="A channel often answers several patterns; groups of channels that fire together (Deep Feature "
        "Factorization) are often one idea each.",
    )
    reference.toggle(
        "Show the sample photos each channel fires on",
        **state.bound(state.CONCEPT_REFERENCE),
        help="The sample photos go through the network once; each card then shows the parts of them that excite "
        "its channel most.",
    )
    return state.get(state.CONCEPT_UNITS) or "channels", bool(state.get(state.CONCEPT_REFERENCE))


def _box_changed() -> None:
    x0, x1 = st.session_state["_w_concept_x"]
    y0, y1 = st.session_state["_w_concept_y"]
    box = (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None
    state.put(state.CONCEPT_BOX, concepts_view.box_text(box))
    state.put(state.CONCEPT_OPEN, None)


def box_controls() -> concepts_view.Box | None:
    """Two range sliders for the box (a drawable canvas would need a new dependency), in percent of the picture."""
    box = concepts_view.parse_box(state.get(state.CONCEPT_BOX)) or (0, 0, 100, 100)
    st.session_state["_w_concept_x"] = (box[0], box[2])
    st.session_state["_w_concept_y"] = (box[1], box[3])
    with st.expander("Why here? Ask about one part of the picture", expanded=box != (0, 0, 100, 100)):
        st.slider("From left to right (%)", 0, 100, key="_w_concept_x", on_change=_box_changed)
        st.slider("From top to bottom (%)", 0, 100, key="_w_concept_y", on_change=_box_changed)
        st.caption("The cards then rank what the network takes from inside the box only.")
    return None if box == (0, 0, 100, 100) else box


def _open(channel: int | None) -> None:
    state.put(state.CONCEPT_OPEN, channel)


def draw_card(card: ConceptCard, key: str, can_open: bool) -> None:
    with st.container(border=True, key=key):
        st.markdown(f"**{card.rank}. {card.title}** — {plain(card.words)}")
        st.image(card.map_picture, caption="where it is in this picture", width="stretch")
        if card.feature is not None:
            st.image(card.feature, caption=f"what channel {card.channel} looks for", width=96)
        if card.crops:
            st.image(list(card.crops), caption=list(card.crop_names), width=54)
            st.caption("the sample photos that excite it most")
        if can_open:
            st.button(
                "What it draws on ↓",
                key=f"{key}-open",
                on_click=_open,
                args=(card.channel,),
                help=f"The channels one layer down that channel {card.channel} is built from.",
            )


def draw_cards(cards: list[ConceptCard], prefix: str, can_open: bool) -> None:
    for start in range(0, len(cards), COLUMNS):
        columns = st.columns(COLUMNS)
        for column, card in zip(columns, cards[start : start + COLUMNS]):
            with column:
                draw_card(card, f"{prefix}-{card.rank}", can_open)


def decorated_cards(
    ctx: context.Context, result: concepts_compute.ConceptResult, reference: bool, colormap: str, opacity: float
) -> tuple[list[ConceptCard], str]:
    """The cards with what their channels look for and, if asked, their reference crops; and why crops are missing."""
    bare = concepts_view.concept_cards(result, colormap, opacity)
    channels = [card.channel for card in bare]
    features, crops, missing = {}, {}, ""
    try:
        features = concepts_compute.features(ctx.model.key, result.layer, channels, ctx.explainer)
    except EngineError as error:
        missing = f"What the channels look for could not be drawn: {error}"
    if reference:
        crops, reason = concepts_compute.crops_or_reason(ctx.model.key, result.layer, channels, ctx.explainer)
        missing = " ".join(filter(None, [missing, f"No sample photos on the cards: {reason}" if reason else ""]))
    return concepts_view.concept_cards(result, colormap, opacity, features, crops), missing


def sub_concepts_section(ctx: context.Context, result: concepts_compute.ConceptResult, colormap: str) -> None:
    channel = state.get(state.CONCEPT_OPEN)
    if channel is None:
        return
    st.subheader(f"What channel {channel} of `{result.layer}` draws on")
    st.button("Close", key="concepts-close", on_click=_open, args=(None,))
    channels = len(result.contributions) if result.loadings is None else result.loadings.shape[0]
    if not 0 <= channel < channels:
        st.info(f"`{result.layer}` has no channel {channel}; pick a card above.")
        return
    lower = concepts_view.layer_below(ctx.explainer.trace(ctx.image.decoded), result.layer)
    if lower is None:
        st.info(f"`{result.layer}` is the first layer with a map here: there is no layer below it to draw on.")
        return
    try:
        below = concepts_compute.sub_concepts(
            ctx.image.sha, ctx.model.key, result.layer, channel, lower, ctx.target, ctx.explainer, ctx.image.decoded
        )
    except EngineError as error:
        panels.message("Sub-concepts", str(error), key="concepts-sub-error")
        return
    st.caption(f"The channels of `{lower}`, one layer down, and how much of channel {channel}'s part each carries.")
    cards = concepts_view.concept_cards(below, colormap, 0.5)
    draw_cards(cards, "concept-sub", can_open=False)


def compare_section(
    ctx: context.Context, result: concepts_compute.ConceptResult, box: concepts_view.Box | None
) -> None:
    """Concept shares side by side for a second model on the same picture (its own concept layer, same class
    index if it has it)."""
    st.subheader("Compare with another model")
    current = ctx.model.key
    options = [state.NO_METHOD] + [key for key in state.domain(state.CONCEPT_COMPARE).choices() if key != current]
    st.selectbox(
        "Second model",
        options,
        **state.bound(state.CONCEPT_COMPARE, options),
        format_func=lambda key: "none" if key == state.NO_METHOD else key.replace(":", " · "),
    )
    other = state.get(state.CONCEPT_COMPARE)
    if other is None or other == current:
        return
    try:
        explainer = context.load_explainer(context.model_for(other))
        names_there = list(explainer.bundle.class_names)  # the same class by name, never by index alone
        target = names_there.index(result.target_name) if result.target_name in names_there else None
        pixels = concepts_view.box_pixels(box, result.image.shape[:2]) if box else None
        second = concepts_compute.concepts(
            ctx.image.sha, other, None, target, pixels, None, explainer, ctx.image.decoded
        )
    except EngineError as error:
        panels.message("Second model", str(error), key="concepts-compare-error")
        return
    names = [ctx.model.name, other.rpartition(":")[0]]
    st.dataframe(concepts_view.compare_table(result, second, names), hide_index=True, key="concepts-compare")
    same = second.target_name == result.target_name
    st.caption(
        f"Each model's own concept layer; {plain(concepts_view.class_words(second.target_name))} for the second"
        + ("" if same else f" (it has no class '{plain(result.target_name)}', so its top prediction)")
        + ". Two models rarely share channel numbers: compare how the score is spread, and the maps."
    )


def render() -> None:
    ctx = context.current()
    st.title("Which features make it this class?")
    if not ctx.ready:
        panels.model_unavailable(ctx.model_error)
        return
    st.markdown(INTRO)
    units, reference = controls_row(ctx)
    display = controls.display_settings(saliency=False)
    box = box_controls()
    groups = concepts_compute.GROUPS if units == "groups" else None
    pixels = None
    try:
        size = ctx.explainer.bundle.input_size
        pixels = concepts_view.box_pixels(box, size) if box else None
        result = concepts_compute.concepts(
            ctx.image.sha, ctx.model.key, ctx.layer, ctx.target, pixels, groups, ctx.explainer, ctx.image.decoded
        )
    except EngineError as error:
        panels.message("Concepts", str(error), key="concepts-error")
        return
    picture = concepts_view.draw_box(result.image, box) if box else result.image
    left, right = st.columns([1, 2], gap="large")
    with left:
        st.image(picture, caption=ctx.image.title, width="stretch")
    with right:
        st.markdown(
            f"**{plain(ctx.model.label)}** — **{plain(concepts_view.class_words(result.target_name))}** at layer "
            f"`{result.layer}`"
        )
        st.markdown(plain(concepts_view.summary(result)))
        against = concepts_view.against(result)
        if against:
            head, _, rest = against.partition(": ")
            st.markdown(f"**{plain(head)}:** {plain(rest)}")
        for note in result.notes:
            st.caption(plain(note))
    with st.spinner("Drawing what each channel looks for…", show_time=True):
        cards, missing = decorated_cards(ctx, result, reference, display.colormap, display.opacity)
    if missing:
        st.info(plain(missing))
    if not cards:
        st.info("No channel of this layer speaks for this class here.")
    draw_cards(cards, "concept-card", can_open=True)
    sub_concepts_section(ctx, result, display.colormap)
    compare_section(ctx, result, box)
    stamp = ReportStamp(
        model=ctx.model.name,
        weights=ctx.weights_detail(),
        image=ctx.image.title,
        layer=result.layer,
        target=result.target_name,
        settings={
            "Concepts": choices.CONCEPT_UNIT_CHOICES[units],
            "Box": state.get(state.CONCEPT_BOX) or "whole picture",
        },
        title=f"cnnvis — concepts of {ctx.model.name} on {ctx.image.title}",
    )
    panels.report_buttons(
        concepts_view.report_views(result, cards, ctx.image.title), stamp, file_stem=f"cnnvis-concepts-{ctx.model.name}"
    )


share.ensure_entry()
render()
