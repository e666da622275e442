"""Layers: the feature maps of any traced layer and, on request, what those channels look for; the kernels of a
convolution; and the first layer's kernels trained vs untrained side by side (the article's comparison)."""

from collections.abc import Sequence

import numpy as np
import streamlit as st

from cnnvis_engine import EngineError, MethodResult
from cnnvis_engine.featurevis import FeatureVisResult
from cnnvis_engine.render import render_grid
from cnnvis_ui import choices, context, controls, model_cache, panels, result_cache, share, state, text, views
from cnnvis_ui.model_cache import ModelRef, model_spec
from cnnvis_ui.views import PanelView

CHANNEL_COUNTS = list(choices.CHANNEL_COUNTS)  # a link's channel count is one of these too
# The gallery: the first 8 channels shown, 64 px, 64 steps (bench/featurevis_bench.py's gallery case). Measured
# with efficientnet_lite0 on this 2-core CPU: 1.2–4 s, whichever layer; far longer only while another process
# keeps both cores busy and torch runs two threads (the bench's --threads note).
GALLERY_CHANNELS, GALLERY_SIZE, GALLERY_STEPS, GALLERY_SEED = 8, 64, 64, 0
GALLERY_COLUMNS, GALLERY_TILE = 4, 128
GALLERY_TITLE = "What these channels look for"


def feature_maps(ctx: context.Context, colormap: str) -> MethodResult | None:
    """The feature-maps panel; returns its result when it drew one."""
    st.subheader("Feature maps")
    count, order, scale = st.columns(3)
    count.select_slider(
        "Channels",
        CHANNEL_COUNTS,
        **state.bound(state.FM_CHANNELS, CHANNEL_COUNTS),
    )
    order.toggle(
        "Sort by mean activation",
        **state.bound(state.FM_SORT),
    )
    scale.toggle(
        "One colour scale for all channels",
        **state.bound(state.FM_SHARED),
        help="Off: each channel is stretched to its own range, so weak channels stay visible.",
    )
    sort, shared = state.get(state.FM_SORT), state.get(state.FM_SHARED)
    options = {"feature_maps": {"n_channels": state.get(state.FM_CHANNELS), "sort": sort, "shared_scale": shared}}
    try:
        result = ctx.explain(["feature_maps"], options=options)["feature_maps"]
    except EngineError as error:
        panels.message("Feature maps", str(error), key="layer-maps")
        return None
    view = views.feature_maps_view(result, colormap, key="layer-maps")
    scale_note = "one shared colour scale" if shared else "each channel on its own colour scale"
    view = views.with_caption(view, f"{view.caption} · {scale_note} · pick the layer in the sidebar")
    left, _ = st.columns([3, 1])
    with left:
        panels.draw(view, height=620, file_stem=f"cnnvis-{ctx.model.name}")
    return result if result.applicable else None


def channel_gallery(ctx: context.Context, maps: MethodResult) -> None:
    """Opt-in, as it takes seconds: for the first channels of the feature maps above, the picture that excites
    each most (activation maximisation from a grey start). Cached by model, layer, channels and settings."""
    channels = tuple(maps.meta["channels"][:GALLERY_CHANNELS])
    if not st.toggle(
        "Show what these channels look for",
        help=f"For each of the first {len(channels)} channels above, a picture optimised to excite it as much as "
        "possible (activation maximisation, Olah et al. 2017). Takes a few seconds; the result is kept.",
    ):
        return
    left, _ = st.columns([3, 1])
    with left:
        try:
            results = result_cache.channel_gallery(
                ctx.model.key, maps.layer, channels, GALLERY_SIZE, GALLERY_STEPS, GALLERY_SEED, ctx.explainer
            )
        except EngineError as error:
            panels.message(GALLERY_TITLE, str(error), key="layer-gallery")
            return
        panels.draw(gallery_view(maps.layer, channels, results), height=360, file_stem=f"cnnvis-{ctx.model.name}")


def gallery_view(layer: str, channels: Sequence[int], results: Sequence[FeatureVisResult]) -> PanelView:
    """The gallery as one picture, 4 per row in the feature maps' order; hover gives each tile's channel and the
    channel's mean activation on it. Channels whose objective stayed 0 on every step (no gradient) are named."""
    tiles = np.stack([result.image for result in results]) / 255.0
    picture = render_grid(tiles, columns=GALLERY_COLUMNS, tile_size=GALLERY_TILE, gap=views.GAP)
    by_channel = np.zeros((max(channels) + 1, 1, 1), np.float32)  # tile_hover reads values by channel index
    by_channel[list(channels), 0, 0] = [float(result.scores[0]) for result in results]
    hover = views.tile_hover(by_channel, channels, GALLERY_COLUMNS, GALLERY_TILE, views.GAP, "mean activation")
    grey = [str(c) for c, result in zip(channels, results) if not result.history.any()]
    note = (
        f"Stayed grey: channel{'s' if len(grey) > 1 else ''} {', '.join(grey)}. It never responded, even with the "
        "gradient let through the ReLUs for the first steps; a layer before the activation may work better."
        if grey
        else ""
    )
    return PanelView(
        key="layer-gallery",
        title=GALLERY_TITLE,
        picture=picture,
        hover=hover,
        note=note,
        caption=f"{layer} · channels {', '.join(map(str, channels))}, left to right · each {GALLERY_SIZE}×"
        f"{GALLERY_SIZE} px optimised for {GALLERY_STEPS} steps from a grey start (seed {GALLERY_SEED})",
    )


def kernels(ctx: context.Context, colormap: str) -> None:
    st.subheader("Kernels")
    table = ctx.layer_table()
    labels = {layer.name: text.layer_label(layer) for layer in table.convolutions}
    names = [state.AUTO, *labels]
    first = table.defaults["kernels"]
    st.selectbox(
        "Convolution",
        names,
        **state.bound(state.KERNEL_LAYER, names),
        format_func=lambda name: f"First convolution: {labels.get(first, '—')}" if name == state.AUTO else labels[name],
    )
    layer = state.get(state.KERNEL_LAYER) or first
    try:
        result = ctx.explain(["kernels"], layer=layer, use_choices=False)["kernels"]
    except EngineError as error:
        panels.message("Kernels", str(error), key="layer-kernels")
        return
    left, _ = st.columns([3, 1])
    with left:
        panels.draw(
            views.kernels_view(result, colormap, key="layer-kernels"), height=520, file_stem=f"cnnvis-{ctx.model.name}"
        )


def trained_vs_random(ctx: context.Context, colormap: str) -> None:
    st.subheader("First-layer kernels: trained vs untrained")
    spec = model_spec(ctx.model.name) if ctx.model.weights != "file" else None
    if spec is None:
        st.info("This comparison needs a model from the list: your own file has no untrained twin to compare with.")
        return
    trained = next((w for w in spec.weights if w != "random"), None)
    if trained is None or "random" not in spec.weights:
        st.info(
            f"{spec.name} comes only with {model_cache.WEIGHTS_LABELS.get(spec.weights[0], spec.weights[0])}, so there "
            "is no trained/untrained pair to compare."
        )
        return
    st.caption(
        "Training turns the first layer's random noise into edge, colour and blob detectors. "
        f"Left: {spec.name} with its {model_cache.WEIGHTS_LABELS.get(trained, trained)}; right: random weights."
    )
    columns = st.columns(2, gap="large")
    for column, weights in zip(columns, [trained, "random"]):
        title = "Trained" if weights != "random" else "Untrained (random)"
        key = f"kernels-{weights}"
        with column:
            other = context.with_model(ctx, ModelRef(spec.name, weights))
            if not other.ready:
                panels.message(title, other.model_error, key=key, level="info")
                continue
            try:
                layer = other.layer_table().defaults["kernels"]
                result = other.explain(["kernels"], layer=layer, use_choices=False)["kernels"]
            except EngineError as error:
                panels.message(title, str(error), key=key)
                continue
            panels.draw(
                views.kernels_view(result, colormap, key=key, title=title), height=420, file_stem=f"cnnvis-{spec.name}"
            )


def render() -> None:
    ctx = context.current()
    st.title("Inside the layers")
    if not ctx.ready:
        panels.model_unavailable(ctx.model_error)
        return
    display = controls.display_settings(saliency=False, opacity=False)
    maps = feature_maps(ctx, display.colormap)
    if maps is not None:
        channel_gallery(ctx, maps)
    kernels(ctx, display.colormap)
    trained_vs_random(ctx, display.colormap)


share.ensure_entry()
render()
