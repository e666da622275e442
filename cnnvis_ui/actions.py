"""What the dashboard's buttons and uploaders do (their callbacks): choosing a model, weights, an image or a class;
keeping an uploaded image; loading an uploaded model file with the preprocessing chosen under it; remembering the
Sanity tests asked for. Each changes plain keys (`state`) and writes the URL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from cnnvis_engine import EngineError

from . import model_cache, result_cache, state, upload_store, uploads
from .text import clean
from .typed_state import SanityRun, UserModel


def model_changed() -> None:
    """A new model: its default weights, the automatic layer and the top-1 class again."""
    name = st.session_state[state.MODEL]
    if name == state.USER_MODEL_CHOICE:
        st.session_state[state.WEIGHTS] = "file"
    else:
        spec = model_cache.model_spec(name)
        st.session_state[state.WEIGHTS] = spec.default_weights if spec else "random"
    st.session_state[state.LAYER] = None
    st.session_state[state.TARGET] = None
    st.session_state[state.KERNEL_LAYER] = None
    st.session_state.pop(state.FROM_LINK, None)
    state.sync_url()


def choose_weights(weights: str) -> None:
    st.session_state[state.WEIGHTS] = weights
    state.sync_url()


def choose_image(ref: str) -> None:
    st.session_state[state.IMAGE] = ref
    st.session_state[state.UPLOAD_ERROR] = ""
    state.sync_url()


def choose_target(index: int | None) -> None:
    """Re-target every panel (a top-5 button)."""
    st.session_state[state.TARGET] = index
    state.sync_url()


def request_runs(runs: Sequence[SanityRun]) -> None:
    """The Sanity page's "Run" button: remember that these tests were asked for, so their (cached) results show
    again when the page is drawn again, now or after a visit to another page."""
    earlier = [run for run in state.get(state.SANITY_RUNS) if run not in runs]
    st.session_state[state.SANITY_RUNS] = (*earlier, *runs)[-state.MAX_SANITY_RUNS :]


def sanity_shown(runs: Sequence[SanityRun]) -> bool:
    """The Sanity page, after drawing its settings: are the tests for them shown? They are when asked for in this
    session, or when a link just opened showed them (then they are asked for now). Kept in the URL."""
    if st.session_state.pop(state.SANITY_FROM_LINK, False) and not set(state.get(state.SANITY_RUNS)).issuperset(runs):
        request_runs(runs)
    shown = set(state.get(state.SANITY_RUNS)).issuperset(runs)
    state.put(state.SANITY_SHOWN, shown)
    return shown


def image_uploaded() -> None:
    """The image uploader changed: keep a good image and show it; refuse a bad one with its reason."""
    state.init()
    file = st.session_state.get(state.IMAGE_UPLOADER)
    if file is None:
        return
    refused = uploads.refusal(file, uploads.IMAGE_MB)  # the widget's limit, kept by the server too
    if refused:
        st.session_state[state.UPLOAD_ERROR] = refused
        uploads.discard(file)
        return
    data = file.getvalue()
    digest = result_cache.sha256(data)
    try:
        result_cache.decode_upload(digest, data)
    except EngineError as error:
        st.session_state[state.UPLOAD_ERROR] = f"{clean(file.name)} was not used: {error}"
        return
    kept = dict(st.session_state[state.UPLOADS])
    kept.pop(digest, None)
    kept[digest] = (clean(file.name), data)
    while len(kept) > state.MAX_UPLOADS:
        kept.pop(next(iter(kept)))
    st.session_state[state.UPLOADS] = kept
    upload_store.upload_store().put(digest, clean(file.name), data)
    choose_image(f"upload:{digest}")


MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".ts")  # the model file itself; ".data": an ONNX model's weights


def model_upload() -> tuple[Any, list[Any]]:
    """(the model file, the ONNX external data files uploaded with it) from the model uploader, which takes both at
    once (`model.onnx` + `model.onnx.data`, as today's exporter writes them) and keeps what was uploaded before:
    the newest model file counts, with the data files uploaded since the model file before it. Raises ValueError
    with a sentence when there is no model file."""
    value = st.session_state.get(state.MODEL_FILE)
    files = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
    models = [i for i, f in enumerate(files) if f.name.lower().endswith(MODEL_SUFFIXES)]
    if not files:
        raise ValueError("Choose a model file first.")
    if not models:
        raise ValueError(
            "Upload a model file (.onnx, .pt, .pth or .ts); a .data file only holds an ONNX model's weights."
        )
    since = models[-2] if len(models) > 1 else -1
    data = [f for i, f in enumerate(files) if i > since and i not in models]
    model = files[models[-1]]
    if data and not model.name.lower().endswith(".onnx"):
        raise ValueError(
            "Only an ONNX model comes with separate data files; remove the .data file or upload its model."
        )
    return model, data


def load_user_model() -> None:
    """The "Load my model" button: check the file with one forward pass; on success switch to it."""
    state.init()
    labels = st.session_state.get(state.LABELS_FILE)
    try:
        file, data_files = model_upload()
    except ValueError as error:
        st.session_state[state.USER_MODEL_ERROR] = str(error)
        return
    checked = [(f, uploads.MODEL_MB) for f in (file, *data_files)] + [(labels, uploads.LABELS_MB)]
    for upload, limit in checked:  # kept by the server too
        refused = uploads.refusal(upload, limit) if upload is not None else ""
        if refused:
            st.session_state[state.USER_MODEL_ERROR] = refused
            uploads.discard(upload)
            return
    weights = {f.name: f.getvalue() for f in data_files}  # by exact name: the model's data entries name them
    data = file.getvalue()
    labels_data = labels.getvalue() if labels is not None else None
    architecture = st.session_state.get(state.MODEL_ARCHITECTURE) or None  # "": TorchScript, no architecture
    try:
        preprocessing = chosen_preprocessing()
    except ValueError as error:
        st.session_state[state.USER_MODEL_ERROR] = str(error)
        return
    key = result_cache.sha256(data) + f":{architecture}:" + (result_cache.sha256(labels_data) if labels_data else "-")
    if preprocessing is not None:
        key += ":" + result_cache.sha256(repr(preprocessing).encode())
    for name, blob in sorted(weights.items()):
        key += ":" + result_cache.sha256(name.encode() + b"\0" + blob)
    try:
        model_cache.file_explainer(
            key,
            file.name,
            architecture,
            data,
            labels_data,
            preprocessing,
            uploads.server_allows_torchscript(),
            _data_files=weights,
        )
    except EngineError as error:
        st.session_state[state.USER_MODEL_ERROR] = str(error)
        return
    user: UserModel = {
        "key": key,
        "filename": clean(file.name),
        "architecture": architecture,
        "data": data,
        "labels": labels_data,
        "preprocessing": preprocessing,
        "data_files": weights,
    }
    st.session_state[state.USER_MODEL] = user
    st.session_state[state.USER_MODEL_ERROR] = ""
    st.session_state[state.MODEL] = state.USER_MODEL_CHOICE
    model_changed()


PREP_INITIAL: dict[str, Any] = {
    state.PREP_CUSTOM: False,
    state.PREP_HEIGHT: 224,
    state.PREP_WIDTH: 224,
    state.PREP_CHANNELS: 3,
    state.PREP_NORM: "imagenet",
    state.PREP_MEAN: "0.485, 0.456, 0.406",
    state.PREP_STD: "0.229, 0.224, 0.225",
}


def seed_preprocessing() -> None:
    """Before the preprocessing widgets are drawn: give each its value (the file's default, else the usual)."""
    defaults = st.session_state.get(state.PREP_DEFAULTS) or {}
    for key, value in PREP_INITIAL.items():
        st.session_state.setdefault(key, defaults.get(key, value))


def model_file_chosen() -> None:
    """The model uploader changed: read what an ONNX file says about its input, and offer it as the default."""
    st.session_state[state.MODEL_FILE_INPUT] = ""
    st.session_state[state.PREP_DEFAULTS] = {}
    try:
        file, _ = model_upload()
    except ValueError:
        return
    spec = model_cache.onnx_input(file.name, file.getvalue())
    if spec is None:
        return
    defaults = {state.PREP_HEIGHT: spec.height, state.PREP_WIDTH: spec.width, state.PREP_CHANNELS: spec.channels}
    valid = {state.PREP_HEIGHT: range(1, 4097), state.PREP_WIDTH: range(1, 4097), state.PREP_CHANNELS: (1, 3)}
    defaults = {key: value for key, value in defaults.items() if value in valid[key]}
    st.session_state[state.PREP_DEFAULTS] = defaults
    st.session_state.update(defaults)
    shape = " × ".join(str(v) if v else "any" for v in (spec.channels, spec.height, spec.width))
    layout = ", channels last" if spec.channels_last else ""
    st.session_state[state.MODEL_FILE_INPUT] = f"The file's input: {shape} (channels × height × width{layout})."


def chosen_preprocessing() -> model_cache.Preprocessing | None:
    """The preprocessing set under the upload, or None for the file's or architecture's own. Raises ValueError
    with a sentence for a mean or std that is not one number or three."""
    seed_preprocessing()
    if not st.session_state[state.PREP_CUSTOM]:
        return None
    channels = int(st.session_state[state.PREP_CHANNELS])
    size = (int(st.session_state[state.PREP_HEIGHT]), int(st.session_state[state.PREP_WIDTH]))
    norm = st.session_state[state.PREP_NORM]
    if norm == "unit":
        return size, channels, ((0.0,), (1.0,), 255.0)
    if norm == "imagenet":
        return size, channels, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 255.0)
    mean, std = _numbers(st.session_state[state.PREP_MEAN], "mean"), _numbers(st.session_state[state.PREP_STD], "std")
    if len(mean) != len(std):
        raise ValueError(f"Give as many std values as mean values (here {len(mean)} and {len(std)}).")
    scale = 1.0 if max(mean + std) > 1 else 255.0  # values above 1 are on the 0–255 scale
    return size, channels, (mean, std, scale)


def _numbers(text: str, what: str) -> tuple[float, ...]:
    parts = [part for part in str(text).replace(",", " ").split() if part]
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) not in (1, 3):
        raise ValueError(f"The {what} must be one number, or three for R, G and B (for example 0.485, 0.456, 0.406).")
    return values
