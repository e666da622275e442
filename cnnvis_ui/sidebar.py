"""The sidebar every page shares: model and weights, image, layer and target class — except on the Stories
page, whose stories bring their own models and pictures: there it shows only the navigation and a note.

Each widget is seeded from its plain session-state key and commits back on change (see `state`), so the
choices survive page switches. Problems (weights that cannot be had, a bad upload) are shown right where the
choice is made, with the way out next to them.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cnnvis_engine import UPLOAD_EXTENSIONS, EngineError, list_samples

from . import compute, context, share, state, views, words
from .context import Context
from .text import plain

_WEIGHTS_NAMES = {"pretrained": "Pretrained", "embedded": "Built-in ImageNet", "random": "Random", "demo": "Demo"}
_WEIGHTS_HELP = {
    "pretrained": "Weights learned on ImageNet, downloaded once by torchvision/timm and cached.",
    "embedded": "Real ImageNet weights that ship with the app: they work offline.",
    "random": "An untrained network (seeded): what the architecture alone responds to.",
    "demo": "Weights trained for this app's demo stories (shipped with it).",
}
STORIES_PAGE = "stories"  # url path of pages/stories.py (st.Page names a page after its file)


def render() -> Context | None:
    """Draw the sidebar and return the current context (model, image, layer, target); on the Stories page only
    a note, and None (no model is loaded for it)."""
    state.init()  # adopts the URL's view (a link, a reload, back or forward)
    state.sync_url()
    with st.sidebar:
        share.copy_link_button()
        share.link_notice()
    if page_path() == STORIES_PAGE:
        st.sidebar.caption(
            "Each story brings its own small models and pictures, so the model, image, layer and class choices "
            "are hidden here. They are kept for Explore, Layers and Compare."
        )
        return None
    state.init()
    share.where_things_are()
    with st.sidebar:
        with st.spinner("Loading the model…"):
            ctx = context.current()
        _model_section(ctx)
        _image_section(ctx)
        if ctx.ready:
            _layer_section(ctx)
            _target_section(ctx)
    return ctx


def page_path() -> str | None:
    """The url path of the page `st.navigation` chose for this run ("" for the default page); None when no
    navigation ran. The same registry `st.context.url` reads, without a round trip through the browser's URL."""
    run = get_script_run_ctx()
    if run is None:
        return None
    page = run.pages_manager.get_pages().get(run.pages_manager.current_page_script_hash)
    return page.get("url_pathname") if page else None


def _model_label(name: str) -> str:
    if name == state.USER_MODEL_CHOICE:
        user = state.get(state.USER_MODEL)
        return f"Your model: {user['filename']}" if user else "Your model"
    return name


def _model_section(ctx: Context) -> None:
    st.subheader("Model", divider="gray")
    names = compute.model_choices() + ([state.USER_MODEL_CHOICE] if state.get(state.USER_MODEL) else [])
    st.selectbox(
        "Network", names, key=state.seed(state.MODEL, names), format_func=_model_label,
        on_change=state.commit, args=(state.MODEL, state.model_changed),
    )
    spec = compute.model_spec(state.get(state.MODEL))
    if spec is not None:
        st.radio(
            "Weights",
            spec.weights,
            key=state.seed(state.WEIGHTS, spec.weights),
            horizontal=True,
            format_func=lambda w: _WEIGHTS_NAMES.get(w, w),
            help=" ".join(f"**{w.capitalize()}**: {_WEIGHTS_HELP.get(w, '')}" for w in spec.weights),
            on_change=state.commit,
            args=(state.WEIGHTS,),  # same architecture: layer and class stay
        )
    if ctx.model_error:
        st.warning(plain(ctx.model_error), icon=":material/cloud_off:")
        if spec is not None and "random" in spec.weights and ctx.model.weights != "random":
            st.button(
                f"Use random weights for {spec.name}", key="use-random", icon=":material/casino:",
                on_click=state.choose_weights, args=("random",), width="stretch",
                help="An untrained network: the maps then show what the architecture alone responds to.",
            )
    elif ctx.model.weights == "random":
        st.caption(":orange[Random weights: an untrained network. Its predictions are meaningless; its maps show "
                   "what the architecture alone responds to.]")
    elif spec is not None:
        st.caption(f"**{spec.family}.** {spec.description}")
    _own_model_form()


def _own_model_form() -> None:
    error = state.get(state.USER_MODEL_ERROR)
    with st.expander("Use your own model", icon=":material/upload_file:", expanded=bool(error)):
        st.file_uploader(
            "TorchScript file or state_dict", type=["pt", "pth", "ts"], key=state.MODEL_FILE, max_upload_size=500,
            help="TorchScript: `torch.jit.script(model).save('model.pt')`. A state_dict needs its architecture "
            "below. Pickled whole models are refused: they could run arbitrary code.",
        )
        st.selectbox(
            "Architecture (state_dict only)", ["", *compute.model_choices()], key=state.MODEL_ARCHITECTURE,
            format_func=lambda name: name or "None: a TorchScript file",
        )
        st.file_uploader(
            "Class names (optional, one per line)", type=["txt"], key=state.LABELS_FILE, max_upload_size=10
        )
        st.button("Load my model", on_click=state.load_user_model, icon=":material/play_arrow:", key="load-user-model")
        if error:
            st.error(plain(error))


def _image_section(ctx: Context) -> None:
    st.subheader("Image", divider="gray")
    current = state.get(state.IMAGE)
    samples = list_samples()
    for start in range(0, len(samples), 2):
        for column, sample in zip(st.columns(2, gap="small"), samples[start:start + 2]):
            ref = f"sample:{sample.key}"
            with column:
                st.image(compute.thumbnail(sample.key), width="stretch")
                st.button(
                    sample.key.capitalize(),
                    key=f"sample-{sample.key}", type="primary" if ref == current else "secondary", width="stretch",
                    help=f"{sample.title} — {sample.credit}", on_click=state.choose_image, args=(ref,),
                )
    st.file_uploader(
        "Or upload your own", type=list(UPLOAD_EXTENSIONS), key=state.IMAGE_UPLOADER, on_change=state.image_uploaded,
        help="PNG, JPEG, WebP, BMP, TIFF or GIF. It is resized to the model's input without cropping.",
        max_upload_size=50,  # MB; the server's own cap (server.maxUploadSize) is the model files' 512
    )
    error = state.get(state.UPLOAD_ERROR)
    if error:
        st.error(plain(error), icon=":material/broken_image:")
    uploads = state.get(state.UPLOADS)
    if uploads:
        st.caption("Your uploads in this session")
        for digest, (name, _) in reversed(list(uploads.items())):
            ref = f"upload:{digest}"
            st.button(
                plain(name),
                key=f"upload-{digest[:12]}",
                type="primary" if ref == current else "secondary",
                width="stretch",
                icon=":material/image:",
                on_click=state.choose_image,
                args=(ref,),
            )
    if ctx.image_error:
        st.warning(plain(ctx.image_error))


def _layer_section(ctx: Context) -> None:
    st.subheader("Layer", divider="gray")
    try:
        table = ctx.layer_table()
    except EngineError as error:
        st.error(str(error))
        return
    everything, chosen = state.get(state.ALL_LAYERS), state.get(state.LAYER)
    default = table.defaults["gradcam"]
    shown = [layer for layer in table.spatial
             if everything or not layer.passes_through or layer.name in (chosen, default)]
    by_name = {layer.name: layer for layer in table.spatial}
    labels = {layer.name: words.layer_label(layer) for layer in shown}
    options = [state.AUTO, *labels]
    current = by_name.get(chosen or default)
    st.selectbox(
        "Layer for feature maps and Grad-CAM", options, key=state.seed(state.LAYER, options),
        format_func=lambda name: f"Automatic: {labels.get(default, '—')}" if name == state.AUTO else labels[name],
        on_change=state.commit, args=(state.LAYER,), filter_mode="contains",
        help="The layers the picture passes through, in order, that give a map per channel. Type part of a name "
        "(`blocks.3.`) or a kind (`convolution`) to search."
        + (f"\n\n{words.layer_detail(current)}" if current else ""),
    )
    hidden = len(table.spatial) - len(shown)
    st.toggle(
        "Show pass-through layers", key=state.seed(state.ALL_LAYERS), on_change=state.commit,
        args=(state.ALL_LAYERS,),
        help=f"{hidden} layers are hidden: they hand their input on unchanged (`Identity` placeholders, dropout, "
        "which is off while explaining), so their maps are the layer before's." if hidden or not everything
        else "Hide the layers that hand their input on unchanged.",
    )
    cam = table.defaults["cam"]
    st.caption(
        f"{len(shown)} layers give maps"
        + (f" ({hidden} pass-through ones hidden). " if hidden else ". ")
        + (f"CAM always uses `{cam}`, the last layer before the network averages each map to one number."
           if cam else "CAM does not apply to this model.")
    )


_TARGET_WORDS = {  # task -> (section title, automatic option)
    "classification": ("Class to explain", "Top prediction (automatic)"),
    "segmentation": ("Segment class to explain", "Largest segment (automatic)"),
    "regression": ("Output to explain", "All outputs (automatic)"),
}


def _target_section(ctx: Context) -> None:
    title, automatic = _TARGET_WORDS.get(ctx.explainer.bundle.task, _TARGET_WORDS["classification"])
    st.subheader(title, divider="gray")
    names = ctx.class_names
    options = [-1, *range(len(names))]
    st.selectbox(
        "Class" if ctx.explainer.bundle.task != "regression" else "Output",
        options,
        key=state.seed(state.TARGET, options),
        format_func=lambda i: automatic if i < 0 else words.class_name(names, i),
        on_change=state.commit,
        args=(state.TARGET,),
        help="Type to search the names.",
    )
    try:
        predictions = ctx.predictions()
    except EngineError as error:
        st.error(str(error))
        return
    st.caption("Top-5 predictions — click one to explain it everywhere")
    target = state.get(state.TARGET)
    chosen = predictions[0].index if target is None else target
    for rank, prediction in enumerate(predictions):
        st.button(
            plain(f"{prediction.name} · {views.percent(prediction.probability)}"), key=f"top5-{rank}",
            type="primary" if prediction.index == chosen else "secondary", width="stretch",
            on_click=state.choose_target, args=(prediction.index,),
        )

