"""Layers: the feature maps of any traced layer, the kernels of a convolution, and the first layer's kernels
trained vs untrained side by side (the article's comparison)."""

import streamlit as st

from cnnvis_engine import EngineError
from cnnvis_ui import compute, context, controls, entry, panels, state, views
from cnnvis_ui.compute import ModelRef, model_spec
from cnnvis_ui.text import plain

CHANNEL_COUNTS = [4, 8, 16, 32, 64]


def feature_maps(ctx: context.Context, colormap: str) -> None:
    st.subheader("Feature maps")
    count, order, scale = st.columns(3)
    count.select_slider(
        "Channels", CHANNEL_COUNTS, key=state.seed(state.FM_CHANNELS, CHANNEL_COUNTS),
        on_change=state.commit, args=(state.FM_CHANNELS,),
    )
    order.toggle(
        "Sort by mean activation", key=state.seed(state.FM_SORT), on_change=state.commit, args=(state.FM_SORT,)
    )
    scale.toggle(
        "One colour scale for all channels", key=state.seed(state.FM_SHARED), on_change=state.commit,
        args=(state.FM_SHARED,), help="Off: each channel is stretched to its own range, so weak channels stay visible.",
    )
    sort, shared = state.get(state.FM_SORT), state.get(state.FM_SHARED)
    options = {"feature_maps": {"n_channels": state.get(state.FM_CHANNELS), "sort": sort, "shared_scale": shared}}
    try:
        result = ctx.explain(["feature_maps"], options=options)["feature_maps"]
    except EngineError as error:
        panels.message("Feature maps", str(error), key="layer-maps")
        return
    view = views.feature_maps_view(result, colormap, sort=sort, key="layer-maps")
    scale_note = "one shared colour scale" if shared else "each channel on its own colour scale"
    view = views.with_caption(view, f"{view.caption} · {scale_note} · pick the layer in the sidebar")
    left, _ = st.columns([3, 1])
    with left:
        panels.draw(view, height=620, file_stem=f"cnnvis-{ctx.model.name}")


def kernels(ctx: context.Context, colormap: str) -> None:
    st.subheader("Kernels")
    table = ctx.layer_table()
    labels = {layer.name: layer.label for layer in table.convolutions}
    names = [state.AUTO, *labels]
    first = table.defaults["kernels"]
    st.selectbox(
        "Convolution", names, key=state.seed(state.KERNEL_LAYER, names),
        format_func=lambda name: f"First convolution: {labels.get(first, '—')}" if name == state.AUTO else labels[name],
        on_change=state.commit, args=(state.KERNEL_LAYER,),
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
        st.info(f"{spec.name} comes only with {compute.WEIGHTS_LABELS.get(spec.weights[0], spec.weights[0])}, so there "
                "is no trained/untrained pair to compare.")
        return
    st.caption(
        "Training turns the first layer's random noise into edge, colour and blob detectors. "
        f"Left: {spec.name} with its {compute.WEIGHTS_LABELS.get(trained, trained)}; right: random weights."
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
        st.warning(
            f"{plain(ctx.model_error)} Choose random weights or another model in the sidebar.",
            icon=":material/cloud_off:",
        )
        return
    display = controls.display_settings(saliency=False, opacity=False)
    feature_maps(ctx, display.colormap)
    kernels(ctx, display.colormap)
    trained_vs_random(ctx, display.colormap)


entry.ensure_entry()
render()
