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
from cnnvis_engine.images import FORMAT_WORDS

from . import actions, context, model_cache, result_cache, share, state, text, typed_state, uploads, views
from .audit_folders import DEMO_FOLDER, class_folders
from .context import Context
from .text import plain
from .uploads import IMAGE_MB, LABELS_MB, MODEL_MB

_WEIGHTS_NAMES = {
    "pretrained": "Pretrained",
    "embedded": "Built-in ImageNet",
    "random": "Random",
    "demo": "Demo",
    "yours": "Yours",
}
_WEIGHTS_HELP = {
    "pretrained": "Weights learned on ImageNet, downloaded once by torchvision/timm and cached.",
    "embedded": "Real ImageNet weights that ship with the app: they work offline.",
    "random": "An untrained network (seeded): what the architecture alone responds to.",
    "demo": "Weights trained for this app's demo stories (shipped with it).",
    "yours": "The model as your command line or notebook gave it (cnnvis serve --model, cnnvis.show).",
}
TORCHSCRIPT_OFF_NOTE = (
    "TorchScript files are off on this server (it can be reached from other machines and TorchScript is a "
    "program); state_dicts for a listed architecture work."
)
STORIES_PAGE = "stories"  # url path of pages/stories.py (st.Page names a page after its file)


def render() -> Context | None:
    """Draw the sidebar and return the current context (model, image, layer, target), built once for this script
    run (`dashboard.py` hands it to the page); on the Stories page only a note, and None (no model is loaded for
    it)."""
    state.init()  # adopts the URL's view (a link, a reload, back or forward)
    state.sync_url()
    with st.sidebar:
        share.copy_link_button()
        notice = st.empty()  # filled last: the model's own choices are checked once it is loaded
    if page_path() == STORIES_PAGE:
        with notice:
            share.link_notice()
        st.sidebar.caption(
            "Each story brings its own small models and pictures, so the model, image, layer and class choices "
            "are hidden here. They are kept for Explore, Layers and Compare."
        )
        return None
    state.init()
    share.where_things_are()
    share.menu_button()  # at phone width: a button that opens this sidebar
    with st.sidebar:
        with st.spinner("Loading the model…"):
            ctx = context.build()
        _model_section(ctx)
        _image_section(ctx)
        if ctx.ready:
            _check_link(ctx)
            _layer_section(ctx)
            _target_section(ctx)
    with notice:
        share.link_notice()
    return context.settled(ctx)


def _check_link(ctx: Context) -> None:
    """A link's layer, kernel layer and class against the loaded model's (`state.check_model_choices`)."""
    try:
        table = ctx.layer_table()
    except EngineError:
        return  # the layer section says why
    state.check_model_choices(
        {
            "layers": [layer.name for layer in table.spatial],
            "convolutions": [layer.name for layer in table.convolutions],
            "classes": range(len(ctx.class_names)),
            "audit_classes": _linked_audit_classes(ctx),
        }
    )


def _linked_audit_classes(ctx: Context) -> set[str]:
    """The classes a link's audit may show (checked once the model is loaded, and only when a link just gave one):
    the linked folder's class folders and the model's class names."""
    if state.AUDIT_CLASS not in st.session_state.get(state.FROM_LINK, ()):
        return set()
    folder = st.session_state.get(state.AUDIT_FOLDER) or DEMO_FOLDER
    return {*class_folders(folder, owner=uploads.session_id()), *ctx.class_names}


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
        user = typed_state.user_model()
        return f"Your model: {user['filename']}" if user else "Your model"
    return f"{model_cache.model_title(name)} (yours)" if model_cache.is_served(name) else name


def _model_section(ctx: Context) -> None:
    st.subheader("Model", divider="gray")
    names = model_cache.network_choices([state.USER_MODEL_CHOICE] if state.get(state.USER_MODEL) else [])
    st.selectbox(
        "Network",
        names,
        **state.bound(state.MODEL, names, then=actions.model_changed),
        format_func=_model_label,
        help="Yours first, then the built-in models, then every torchvision and timm classifier by name "
        "(convolutional networks first). Type to search.",
    )
    spec = model_cache.model_spec(typed_state.model_name())
    if spec is not None:
        st.radio(
            "Weights",
            spec.weights,
            **state.bound(state.WEIGHTS, spec.weights),  # same architecture: layer and class stay
            horizontal=True,
            format_func=lambda w: _WEIGHTS_NAMES.get(w, w),
            help=" ".join(f"**{w.capitalize()}**: {_WEIGHTS_HELP.get(w, '')}" for w in spec.weights),
        )
    if ctx.model_error:
        st.warning(plain(ctx.model_error), icon=":material/cloud_off:")
        refused = spec is not None and model_cache.model_refusal(spec.name)  # random weights would not help
        if spec is not None and "random" in spec.weights and ctx.model.weights != "random" and not refused:
            st.button(
                f"Use random weights for {spec.name}",
                key="use-random",
                icon=":material/casino:",
                on_click=actions.choose_weights,
                args=("random",),
                width="stretch",
                help="An untrained network: the maps then show what the architecture alone responds to.",
            )
    elif ctx.model.weights == "random":
        st.caption(
            ":orange[Random weights: an untrained network. Its predictions are meaningless; its maps show "
            "what the architecture alone responds to.]"
        )
    elif spec is not None:
        st.caption(f"**{spec.family}.** {spec.description}")
    elif ctx.model.weights == "file" and ctx.explainer is not None:
        bundle = ctx.explainer.bundle
        st.caption(plain(f"{bundle.description} {model_cache.describe_preprocessing(bundle)}"))
    _own_model_form()


_FORMATS_NOTE = (
    "**ONNX** files (exported from PyTorch, Keras, TensorFlow or JAX) and **state_dicts** of a listed "
    "architecture get every panel. **TorchScript** hides its layers: it gets only the panels that need none "
    "(saliency, Integrated Gradients, SmoothGrad, occlusion); for every layer, export it to ONNX or open your "
    "Python model with `cnnvis serve`."
)
_NORMALISATIONS = {"imagenet": "ImageNet mean/std", "custom": "Custom mean/std", "unit": "Plain 0–1 scaling"}


def _own_model_form() -> None:
    error = state.get(state.USER_MODEL_ERROR)
    with st.expander("Use your own model", icon=":material/upload_file:", expanded=bool(error)):
        st.caption(_FORMATS_NOTE)
        st.file_uploader(
            "ONNX, TorchScript or state_dict file (an ONNX model's .onnx.data file with it)",
            type=["onnx", "pt", "pth", "ts", "data"],
            accept_multiple_files=True,
            key=state.MODEL_FILE,
            max_upload_size=MODEL_MB,
            on_change=actions.model_file_chosen,
            help="ONNX: `torch.onnx.export(model, x, 'model.onnx')` writes model.onnx and model.onnx.data: upload both "
            "at once (or export with external_data=False for one file; tf2onnx for Keras/TensorFlow). TorchScript: "
            "`torch.jit.script(model).save('model.pt')`. A state_dict needs its architecture below. Pickled whole "
            "models are refused: they could run arbitrary code.",
        )
        file_input = state.get(state.MODEL_FILE_INPUT)
        if file_input:
            st.caption(plain(file_input))
        st.selectbox(
            "Architecture (state_dict only)",
            ["", *model_cache.model_choices()],
            key=state.MODEL_ARCHITECTURE,
            format_func=lambda name: name or "None: an ONNX or TorchScript file",
        )
        st.file_uploader(
            "Class names (optional)",
            type=["txt", "json"],
            key=state.LABELS_FILE,
            max_upload_size=LABELS_MB,
            help="One name a line, a JSON list, a JSON {index: name} object, or a Python dict literal such as "
            "{0: 'tench, Tinca tinca', 1: 'goldfish', ...}.",
        )
        _preprocessing_controls()
        if not uploads.server_allows_torchscript():
            st.caption(TORCHSCRIPT_OFF_NOTE)
        st.button(
            "Load my model", on_click=actions.load_user_model, icon=":material/play_arrow:", key="load-user-model"
        )
        if error:
            st.error(plain(error))


def _preprocessing_controls() -> None:
    """Input size, RGB or grayscale, and normalisation, for the upload; off: the file's or architecture's own."""
    actions.seed_preprocessing()
    custom = st.toggle(
        "Set the input size and normalisation",
        key=state.PREP_CUSTOM,
        help="Off: the architecture's preprocessing for a state_dict, the input size an ONNX file declares, and "
        "224×224 RGB with ImageNet mean/std otherwise.",
    )
    if not custom:
        return
    height, width = st.columns(2)
    height.number_input("Height", min_value=1, max_value=4096, step=1, key=state.PREP_HEIGHT)
    width.number_input("Width", min_value=1, max_value=4096, step=1, key=state.PREP_WIDTH)
    st.radio(
        "Channels",
        [3, 1],
        key=state.PREP_CHANNELS,
        horizontal=True,
        format_func=lambda channels: "RGB" if channels == 3 else "Grayscale",
    )
    st.selectbox("Normalisation", list(_NORMALISATIONS), key=state.PREP_NORM, format_func=_NORMALISATIONS.__getitem__)
    if st.session_state[state.PREP_NORM] == "custom":
        help_text = "One value, or three for R, G and B; on the 0–1 scale (0.485) or the 0–255 scale (123.7)."
        st.text_input("Mean", key=state.PREP_MEAN, help=help_text)
        st.text_input("Std", key=state.PREP_STD, help=help_text)


def _image_section(ctx: Context) -> None:
    st.subheader("Image", divider="gray")
    current = typed_state.image_ref()
    samples = list_samples()
    for start in range(0, len(samples), 2):
        for column, sample in zip(st.columns(2, gap="small"), samples[start : start + 2]):
            ref = f"sample:{sample.key}"
            with column:
                st.image(result_cache.thumbnail(sample.key), width="stretch")
                st.button(
                    sample.key.capitalize(),
                    key=f"sample-{sample.key}",
                    type="primary" if ref == current else "secondary",
                    width="stretch",
                    help=f"{sample.title} — {sample.credit}",
                    on_click=actions.choose_image,
                    args=(ref,),
                )
    st.file_uploader(
        "Or upload your own",
        type=list(UPLOAD_EXTENSIONS),
        key=state.IMAGE_UPLOADER,
        on_change=actions.image_uploaded,
        help=f"{FORMAT_WORDS}. It is resized to the model's input without cropping.",
        max_upload_size=IMAGE_MB,  # MB, checked on the server too (actions.image_uploaded)
    )
    error = state.get(state.UPLOAD_ERROR)
    if error:
        st.error(plain(error), icon=":material/broken_image:")
    uploads = typed_state.uploads()
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
                on_click=actions.choose_image,
                args=(ref,),
            )
    if ctx.image_error:
        st.warning(plain(ctx.image_error))


MAX_NOT_MAPS_LISTED = 40  # layers named in the "not maps" tooltip; the rest are counted


def _layer_section(ctx: Context) -> None:
    st.subheader("Layer", divider="gray")
    try:
        table = ctx.layer_table()
    except EngineError as error:
        st.error(plain(error))
        return
    everything, chosen = state.get(state.ALL_LAYERS), typed_state.layer()
    default = table.defaults["gradcam"]
    shown = [
        layer for layer in table.spatial if everything or not layer.passes_through or layer.name in (chosen, default)
    ]
    by_name = {layer.name: layer for layer in table.spatial}
    labels = {layer.name: text.layer_label(layer) for layer in shown}
    options = [state.AUTO, *labels]
    shown_layer = chosen or default  # None: a model without a spatial layer
    current = by_name.get(shown_layer) if shown_layer is not None else None
    st.selectbox(
        "Layer for feature maps and Grad-CAM",
        options,
        **state.bound(state.LAYER, options),
        format_func=lambda name: f"Automatic: {labels.get(default or '', '—')}" if name == state.AUTO else labels[name],
        filter_mode="contains",
        help="The layers the picture passes through, in order, that give a map per channel (a transformer's tokens "
        "are laid back on their patch grid; channels-last outputs are read as channels first). Type part of a name "
        "(`blocks.3.`) or a kind (`convolution`) to search." + (f"\n\n{text.layer_detail(current)}" if current else ""),
    )
    hidden = len(table.spatial) - len(shown)
    st.toggle(
        "Show pass-through layers",
        **state.bound(state.ALL_LAYERS),
        help=f"{hidden} layers are hidden: they hand their input on unchanged (`Identity` placeholders, dropout, "
        "which is off while explaining), so their maps are the layer before's."
        if hidden or not everything
        else "Hide the layers that hand their input on unchanged.",
    )
    if not table.spatial and ctx.model.weights == "file":
        st.caption(
            "No layer of this model can be seen (a TorchScript model runs its layers inside compiled code). For "
            "every layer, upload it as ONNX or a state_dict, or open your Python model with `cnnvis serve`."
        )
    if table.not_maps:
        listed = table.not_maps[:MAX_NOT_MAPS_LISTED]
        more = len(table.not_maps) - len(listed)
        st.caption(
            f"{len(table.not_maps)} layers are not maps and are not offered (per-head tensors, attention weights, "
            "vectors): hover for why.",
            help="\n".join(f"- {text.not_a_map_label(layer)}" for layer in listed)
            + (f"\n- … and {more} more" if more else ""),
        )
    cam = table.defaults["cam"]
    st.caption(
        f"{len(shown)} layers give maps"
        + (f" ({hidden} pass-through ones hidden). " if hidden else ". ")
        + (
            f"CAM always uses `{cam}`, the last layer before the network averages each map to one number."
            if cam
            else "CAM does not apply to this model."
        )
    )


_TARGET_WORDS = {  # task -> (section title, automatic option)
    "classification": ("Class to explain", "Top prediction (automatic)"),
    "segmentation": ("Segment class to explain", "Largest segment (automatic)"),
    "regression": ("Output to explain", "All outputs (automatic)"),
}


def _target_section(ctx: Context) -> None:
    task = ctx.loaded()[1].bundle.task  # drawn once `ctx.ready`: the model is there
    title, automatic = _TARGET_WORDS.get(task, _TARGET_WORDS["classification"])
    st.subheader(title, divider="gray")
    names = ctx.class_names
    options = [-1, *range(len(names))]
    st.selectbox(
        "Class" if task != "regression" else "Output",
        options,
        **state.bound(state.TARGET, options),
        format_func=lambda i: automatic if i < 0 else text.class_name(names, i),
        help="Type to search the names.",
    )
    try:
        predictions = ctx.predictions()
    except EngineError as error:
        st.error(plain(error))
        return
    st.caption("Top-5 predictions — click one to explain it everywhere")
    target = typed_state.target()
    chosen = predictions[0].index if target is None else target
    for rank, prediction in enumerate(predictions):
        st.button(
            plain(f"{prediction.name} · {views.percent(prediction.probability)}"),
            key=f"top5-{rank}",
            type="primary" if prediction.index == chosen else "secondary",
            width="stretch",
            on_click=actions.choose_target,
            args=(prediction.index,),
        )
