"""Every session-state key of the dashboard, its default, and the actions that change the shared choices.

Shared choices live in plain keys (MODEL, WEIGHTS, IMAGE, LAYER, TARGET, ...). A widget has its own key
(`widget(KEY)`): it is seeded from the plain key just before it is drawn and copies its value back in its
`on_change` callback. So a choice survives page switches (Streamlit forgets the state of a widget that is not
drawn on a run), and tests can set plain keys directly (AppTest runs a page file without the entry script).

The plain keys that define a view are also the URL's query parameters (`URL_PARAMS`): `init()` adopts a URL this
session did not write (a link, a reload, back/forward) and every change writes it (`sync_url`), so a link
reproduces the view in any browser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from cnnvis_engine import EngineError

from . import compute, uploads
from .text import clean

# Shared choices (sidebar).
MODEL = "model"  # registry name, or USER_MODEL_CHOICE
WEIGHTS = "weights"  # the registry's weights choice ("pretrained", "embedded", "random"), "file" for uploads
IMAGE = "image"  # "sample:<key>" or "upload:<sha256>"
LAYER = "layer"  # traced layer name, or None for the automatic default
ALL_LAYERS = "all_layers"  # the layer list shows pass-through layers (Identity, dropout) too
TARGET = "target"  # class index, or None for the top-1 prediction
UPLOADS = "uploads"  # {sha256: (file name, bytes)} of the last few good image uploads
UPLOAD_ERROR = "upload_error"  # why the last image upload was refused ("" if it was not)
USER_MODEL = "user_model"  # {"key", "filename", "architecture", "data", "labels", "labels_name"} or None
USER_MODEL_ERROR = "user_model_error"
# Display and method settings (pages).
COLORMAP = "colormap"
OPACITY = "opacity"
SALIENCY_MODE = "saliency_mode"  # "saliency" (vanilla) or "guided_backprop"
EXTRA_METHODS = "extra_methods"  # registry names of the extra Explore panels, in the order offered
FAITHFULNESS = "faithfulness"  # score the Explore maps (deletion, insertion, average drop)
METHOD_SETTINGS = "method_settings"  # {method: {option: value}}: the settings changed from the dashboard's own
FM_CHANNELS = "fm_channels"
FM_SORT = "fm_sort"
FM_SHARED = "fm_shared_scale"
KERNEL_LAYER = "kernel_layer"  # None: the first convolution
COMPARE_METHOD = "compare_method"
COMPARE_IMAGES = "compare_images"  # image refs
COMPARE_MODELS = "compare_models"  # "name:weights" keys
COMPARE_RANDOM = "compare_random"  # offer random weights too
SANITY_METHOD = "sanity_method"
SANITY_SECOND = "sanity_second"  # a second method to compare with, or NO_METHOD
SANITY_MODE = "sanity_mode"  # "cascading" or "independent"
SANITY_RUNS = "sanity_runs"  # the randomisation tests asked for in this session (`sanity_run` keys)
SANITY_SHOWN = "sanity_shown"  # the Sanity page shows the test of its current settings (set by the page)
LINK_NOTICE = "link_notice"  # what of an opened link could not be reproduced here ("" if all of it could)
SANITY_FROM_LINK = "_sanity_from_link"  # the URL just read showed the Sanity test: run it when the page draws
URL_SEEN = "_url_seen"  # our query parameters as this session last read or wrote them
SHARED_SCALE = "shared_scale"  # Compare and Sanity: the maps of one method share one colour scale (cnnvis_ui/scale.py)
SANITY_OUTCOMES = "sanity_outcomes"  # {`sanity_run` key: the randomisation test's outcome} (cnnvis_ui/caveats.py)
# Widget-only keys (no plain twin): file inputs and the user-model form.
IMAGE_UPLOADER = "_w_image_uploader"
MODEL_FILE = "_w_model_file"
LABELS_FILE = "_w_labels_file"
MODEL_ARCHITECTURE = "_w_model_architecture"
# The preprocessing chosen under the upload (widget-only keys; PREP_DEFAULTS, a plain key, re-seeds them).
PREP_CUSTOM = "_w_prep_custom"  # False: the file's or the architecture's preprocessing
PREP_HEIGHT = "_w_prep_height"
PREP_WIDTH = "_w_prep_width"
PREP_CHANNELS = "_w_prep_channels"  # 3 or 1
PREP_NORM = "_w_prep_norm"  # "imagenet", "custom" or "unit"
PREP_MEAN = "_w_prep_mean"  # text: one value or three
PREP_STD = "_w_prep_std"
PREP_DEFAULTS = "prep_defaults"  # {widget key: value}: what the chosen model file says (ONNX input shape)
MODEL_FILE_INPUT = "model_file_input"  # a sentence on what the chosen model file says about its input, or ""
# The Stories page's widgets: Streamlit binds them to the URL itself (`bind="query-params"`).
STORY = "stories_story"
TANK_PICTURE = "stories_tank_picture"
SALT_PICTURE = "stories_salt_picture"
SALT_LAYER = "stories_salt_layer"
ROBOT_PICTURE = "stories_robot_picture"
ROBOT_GROUP = "stories_robot_group"
ROBOT_DIRECTION = "stories_robot_direction"
ROBOT_DISTANCE = "stories_robot_distance"
TANK_SHARED_SCALE = "stories_tank_same_scale"  # the two detectors' Grad-CAMs on one colour scale (on by default)

USER_MODEL_CHOICE = "__your_model__"
NO_METHOD = "__none__"  # the option that stands for "no second method"
AUTO = "__automatic__"  # the option that stands for None (automatic) in a selectbox
AUTOMATIC: dict[str, Any] = {LAYER: AUTO, TARGET: -1, KERNEL_LAYER: AUTO}
DEFAULT_IMAGE = "sample:cat"
MAX_UPLOADS = 3
MAX_SANITY_RUNS = 16

DEFAULTS: dict[str, Any] = {
    MODEL: None,  # filled from the registry's default in init()
    WEIGHTS: None,
    IMAGE: DEFAULT_IMAGE,
    LAYER: None,
    ALL_LAYERS: False,
    TARGET: None,
    UPLOAD_ERROR: "",
    USER_MODEL: None,
    USER_MODEL_ERROR: "",
    MODEL_FILE_INPUT: "",
    COLORMAP: "jet",
    OPACITY: 0.5,
    SALIENCY_MODE: "saliency",
    EXTRA_METHODS: (),
    FAITHFULNESS: False,
    METHOD_SETTINGS: {},
    FM_CHANNELS: 16,
    FM_SORT: True,
    FM_SHARED: False,
    KERNEL_LAYER: None,
    COMPARE_METHOD: "gradcam",
    COMPARE_IMAGES: None,  # filled on first visit: the first three samples
    COMPARE_MODELS: None,  # filled on first visit: the default model
    COMPARE_RANDOM: False,
    SANITY_METHOD: "gradcam",
    SANITY_SECOND: "guided_backprop",
    SANITY_MODE: "cascading",
    SANITY_RUNS: (),
    SANITY_SHOWN: False,
    LINK_NOTICE: "",
    SHARED_SCALE: False,
    SANITY_OUTCOMES: None,
}


def init() -> None:
    """Give every key its default unless it has a value; then adopt the URL's view if the URL is not the one
    this session last wrote (a link opened, a reload, back or forward)."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    st.session_state.setdefault(UPLOADS, {})
    if st.session_state[MODEL] is None:
        _default_model()
    read_url()


def get(key: str) -> Any:
    init()
    return st.session_state[key]


def put(key: str, value: Any) -> None:
    st.session_state[key] = value
    if key in URL_PARAMS:
        sync_url()


def setting_widget(method: str, option: str) -> str:
    """The widget key of one method setting (METHOD_SETTINGS holds the values)."""
    return f"_w_setting_{method.replace('+', 'p')}_{option}"


def widget(key: str) -> str:
    """The widget key twinned with plain key `key`."""
    return f"_w_{key}"


def bound(key: str, valid: Sequence[Any] | None = None, then: Callable[[], None] | None = None) -> dict[str, Any]:
    """The keyword arguments that bind a widget to plain key `key`: its widget key, seeded (`seed`), and `commit`
    as its `on_change`, followed by `then` if given. `st.selectbox("Colormap", names, **bound(COLORMAP, names))`."""
    return {"key": seed(key, valid), "on_change": commit, "args": (key,) if then is None else (key, then)}


def seed(key: str, valid: Sequence[Any] | None = None) -> str:
    """Before drawing the widget for `key`: reset an invalid value to its default, copy the value into the
    widget's state and return the widget key. `bound` adds the `on_change` that copies it back.

    A plain value of None ("automatic") is shown as the option `AUTOMATIC[key]`: a selectbox reads None as
    "nothing chosen" and would show an empty box."""
    init()
    shown = AUTOMATIC.get(key) if st.session_state[key] is None and key in AUTOMATIC else st.session_state[key]
    if valid is not None and shown not in valid:
        fallback = AUTOMATIC.get(key, DEFAULTS.get(key))
        shown = fallback if fallback in valid else valid[0]
        st.session_state[key] = None if shown == AUTOMATIC.get(key, object()) else shown
    st.session_state[widget(key)] = shown
    return widget(key)


def valid_subset(key: str, valid: Sequence[Any], default: list[Any]) -> list[Any]:
    """A multi-choice key's value with what is no longer offered left out; `default` when it was never set."""
    value = get(key)
    return list(default) if value is None else [v for v in value if v in valid]


def commit(key: str, then: Callable[[], None] | None = None) -> None:
    """`on_change` callback: copy the widget's value into the plain key (the automatic option as None)."""
    value = st.session_state[widget(key)]
    st.session_state[key] = None if key in AUTOMATIC and value == AUTOMATIC[key] else value
    if then is not None:
        then()
    sync_url()


# ----- the view in the URL ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Codec:
    """How a plain key's value is written in a query parameter, and read back (ValueError if it cannot be)."""

    encode: Callable[[Any], str]
    decode: Callable[[str], Any]


def _decode_bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _decode_optional_int(text: str) -> int | None:
    return int(text) if text else None


_TEXT = Codec(str, str)
_OPTIONAL_TEXT = Codec(lambda v: "" if v is None else str(v), lambda t: t or None)
_INT = Codec(str, int)
_OPTIONAL_INT = Codec(lambda v: "" if v is None else str(int(v)), _decode_optional_int)
_FLOAT = Codec(lambda v: f"{float(v):g}", float)
_BOOL = Codec(lambda v: "1" if v else "0", _decode_bool)
_LIST = Codec(lambda v: ",".join(v or ()), lambda t: [item for item in t.split(",") if item])
_TUPLE = Codec(lambda v: ",".join(v or ()), lambda t: tuple(item for item in t.split(",") if item))


def _encode_settings(settings: Mapping[str, Mapping[str, float]]) -> str:
    return ",".join(
        f"{m}.{name}={value:g}" for m, values in sorted(settings.items()) for name, value in sorted(values.items())
    )


def _decode_settings(text: str) -> dict[str, dict[str, float]]:
    settings: dict[str, dict[str, float]] = {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        method, _, option = name.rpartition(".")
        number = float(value)  # ValueError: the link's settings are left out, with a note
        if not math.isfinite(number):
            raise ValueError(value)
        settings.setdefault(method, {})[option] = number
    return settings


_SETTINGS = Codec(_encode_settings, _decode_settings)

# Every plain key that defines a view: its query parameter and codec. Values equal to their default are left out
# of the URL, except the model, weights and image, which are always written: a link keeps naming them even if a
# later version changes the defaults, and a URL without them is one the app did not write.
URL_PARAMS: dict[str, tuple[str, Codec]] = {
    MODEL: ("model", _TEXT),
    WEIGHTS: ("weights", _TEXT),
    IMAGE: ("image", _TEXT),
    LAYER: ("layer", _OPTIONAL_TEXT),
    TARGET: ("class", _OPTIONAL_INT),
    COLORMAP: ("colormap", _TEXT),
    OPACITY: ("opacity", _FLOAT),
    SALIENCY_MODE: ("saliency", _TEXT),
    EXTRA_METHODS: ("methods", _TUPLE),
    FAITHFULNESS: ("scores", _BOOL),
    METHOD_SETTINGS: ("settings", _SETTINGS),
    FM_CHANNELS: ("channels", _INT),
    FM_SORT: ("sort", _BOOL),
    FM_SHARED: ("one_scale", _BOOL),
    KERNEL_LAYER: ("kernels", _OPTIONAL_TEXT),
    COMPARE_METHOD: ("compare_method", _TEXT),
    COMPARE_IMAGES: ("compare_images", _LIST),
    COMPARE_MODELS: ("compare_models", _LIST),
    COMPARE_RANDOM: ("compare_random", _BOOL),
    SANITY_METHOD: ("sanity_method", _TEXT),
    SANITY_SECOND: ("sanity_second", _TEXT),
    SANITY_MODE: ("sanity_mode", _TEXT),
    SANITY_SHOWN: ("sanity_run", _BOOL),
    ALL_LAYERS: ("all_layers", _BOOL),
    SHARED_SCALE: ("same_scale", _BOOL),
}
ALWAYS_IN_URL = (MODEL, WEIGHTS, IMAGE)
USER_MODEL_PREFIX = "file:"  # the model parameter of an uploaded model file: "file:<its key>"


def url_params() -> dict[str, str]:
    """The query parameters that reproduce this session's view."""
    params = {}
    for key, (name, codec) in URL_PARAMS.items():
        value = st.session_state.get(key, DEFAULTS.get(key))
        if key == MODEL and value == USER_MODEL_CHOICE:
            user = st.session_state.get(USER_MODEL)
            value = USER_MODEL_PREFIX + user["key"] if user else None
        if value is None and key in ALWAYS_IN_URL:
            continue
        text = codec.encode(value)
        if key in ALWAYS_IN_URL or text != codec.encode(DEFAULTS.get(key)):
            params[name] = text
    return params


def _ours(params: Mapping[str, str]) -> dict[str, str]:
    names = {name for name, _ in URL_PARAMS.values()}
    return {name: value for name, value in params.items() if name in names}


def sync_url() -> None:
    """Write the view into the browser's URL (one history entry per change), leaving other parameters alone."""
    wanted = url_params()
    current = st.query_params.to_dict()
    if _ours(current) != wanted:
        others = {name: value for name, value in current.items() if name not in _ours(current)}
        st.query_params.from_dict({**others, **wanted})
    st.session_state[URL_SEEN] = wanted


def read_url() -> None:
    """Adopt the URL's view when it is not the one this session last read or wrote: the first run of a session
    (a link or a reload), or back/forward. A parameter left out of a URL that has some of ours means its default;
    one that cannot be read, or names what this server does not have, is dropped and said in `LINK_NOTICE`."""
    found = _ours(st.query_params.to_dict())
    if not found or st.session_state.get(URL_SEEN) == found:
        # Nothing of ours: a first visit, or a page switch (Streamlit sends a new page's run without the query).
        # The session's view stands, and `sync_url` writes it back.
        return
    st.session_state[URL_SEEN] = found
    problems = []
    for key, (name, codec) in URL_PARAMS.items():
        try:
            value = codec.decode(found[name]) if name in found else DEFAULTS.get(key)
        except ValueError:
            problems.append(f"{name}={found[name]!r} could not be read")
            value = DEFAULTS.get(key)
        st.session_state[key] = value
    problems += _check_model(found.get("model"))
    st.session_state[SANITY_FROM_LINK] = st.session_state[SANITY_SHOWN]
    st.session_state[LINK_NOTICE] = (
        "Parts of the link could not be reproduced here: " + "; ".join(problems) + "." if problems else ""
    )


def _default_model() -> None:
    default = compute.default_model()
    st.session_state[MODEL], st.session_state[WEIGHTS] = default.name, default.weights


def _check_model(written: str | None) -> list[str]:
    """Make the model and weights read from a URL ones this server has; return what could not be had."""
    name = st.session_state[MODEL]
    if name is None:
        _default_model()
        return []
    if name.startswith(USER_MODEL_PREFIX):
        user = st.session_state.get(USER_MODEL)
        if user is not None and USER_MODEL_PREFIX + user["key"] == name:
            st.session_state[MODEL], st.session_state[WEIGHTS] = USER_MODEL_CHOICE, "file"
            return []
        _default_model()
        return [('the link\'s model is a file uploaded in another session: upload it again under "Use your own model"')]
    spec = compute.model_spec(name)
    if spec is None:
        _default_model()
        return [f"there is no model called {written!r} here"]
    if st.session_state[WEIGHTS] not in spec.weights:
        st.session_state[WEIGHTS] = spec.default_weights
    return []


# ----- actions (callbacks) ------------------------------------------------------------------------------
def model_changed() -> None:
    """A new model: its default weights, the automatic layer and the top-1 class again."""
    name = st.session_state[MODEL]
    if name == USER_MODEL_CHOICE:
        st.session_state[WEIGHTS] = "file"
    else:
        spec = compute.model_spec(name)
        st.session_state[WEIGHTS] = spec.default_weights if spec else "random"
    st.session_state[LAYER] = None
    st.session_state[TARGET] = None
    st.session_state[KERNEL_LAYER] = None
    sync_url()


def choose_weights(weights: str) -> None:
    st.session_state[WEIGHTS] = weights
    sync_url()


def choose_image(ref: str) -> None:
    st.session_state[IMAGE] = ref
    st.session_state[UPLOAD_ERROR] = ""
    sync_url()


def choose_target(index: int | None) -> None:
    """Re-target every panel (a top-5 button)."""
    st.session_state[TARGET] = index
    sync_url()


def request_runs(runs: Sequence[tuple]) -> None:
    """The Sanity page's "Run" button: remember that these tests were asked for, so their (cached) results show
    again when the page is drawn again, now or after a visit to another page."""
    earlier = [run for run in get(SANITY_RUNS) if run not in runs]
    st.session_state[SANITY_RUNS] = (*earlier, *runs)[-MAX_SANITY_RUNS:]


def sanity_shown(runs: Sequence[tuple]) -> bool:
    """The Sanity page, after drawing its settings: are the tests for them shown? They are when asked for in this
    session, or when a link just opened showed them (then they are asked for now). Kept in the URL."""
    if st.session_state.pop(SANITY_FROM_LINK, False) and not set(get(SANITY_RUNS)).issuperset(runs):
        request_runs(runs)
    shown = set(get(SANITY_RUNS)).issuperset(runs)
    put(SANITY_SHOWN, shown)
    return shown


def image_uploaded() -> None:
    """The image uploader changed: keep a good image and show it; refuse a bad one with its reason."""
    init()
    file = st.session_state.get(IMAGE_UPLOADER)
    if file is None:
        return
    refused = uploads.refusal(file, uploads.IMAGE_MB)  # the widget's limit, kept by the server too
    if refused:
        st.session_state[UPLOAD_ERROR] = refused
        uploads.discard(file)
        return
    data = file.getvalue()
    digest = compute.sha256(data)
    try:
        compute.decode_upload(digest, data)
    except EngineError as error:
        st.session_state[UPLOAD_ERROR] = f"{clean(file.name)} was not used: {error}"
        return
    kept = dict(st.session_state[UPLOADS])
    kept.pop(digest, None)
    kept[digest] = (clean(file.name), data)
    while len(kept) > MAX_UPLOADS:
        kept.pop(next(iter(kept)))
    st.session_state[UPLOADS] = kept
    compute.upload_store().put(digest, clean(file.name), data)
    choose_image(f"upload:{digest}")


def load_user_model() -> None:
    """The "Load my model" button: check the file with one forward pass; on success switch to it."""
    init()
    file = st.session_state.get(MODEL_FILE)
    labels = st.session_state.get(LABELS_FILE)
    if file is None:
        st.session_state[USER_MODEL_ERROR] = "Choose a model file first."
        return
    for upload, limit in ((file, uploads.MODEL_MB), (labels, uploads.LABELS_MB)):  # kept by the server too
        refused = uploads.refusal(upload, limit) if upload is not None else ""
        if refused:
            st.session_state[USER_MODEL_ERROR] = refused
            uploads.discard(upload)
            return
    data = file.getvalue()
    labels_data = labels.getvalue() if labels is not None else None
    architecture = st.session_state.get(MODEL_ARCHITECTURE) or None  # "": TorchScript, no architecture
    try:
        preprocessing = chosen_preprocessing()
    except ValueError as error:
        st.session_state[USER_MODEL_ERROR] = str(error)
        return
    key = compute.sha256(data) + f":{architecture}:" + (compute.sha256(labels_data) if labels_data else "-")
    if preprocessing is not None:
        key += ":" + compute.sha256(repr(preprocessing).encode())
    try:
        compute.file_explainer(
            key, file.name, architecture, data, labels_data, preprocessing, uploads.server_allows_torchscript()
        )
    except EngineError as error:
        st.session_state[USER_MODEL_ERROR] = str(error)
        return
    st.session_state[USER_MODEL] = {
        "key": key,
        "filename": clean(file.name),
        "architecture": architecture,
        "data": data,
        "labels": labels_data,
        "preprocessing": preprocessing,
    }
    st.session_state[USER_MODEL_ERROR] = ""
    st.session_state[MODEL] = USER_MODEL_CHOICE
    model_changed()


PREP_INITIAL: dict[str, Any] = {
    PREP_CUSTOM: False,
    PREP_HEIGHT: 224,
    PREP_WIDTH: 224,
    PREP_CHANNELS: 3,
    PREP_NORM: "imagenet",
    PREP_MEAN: "0.485, 0.456, 0.406",
    PREP_STD: "0.229, 0.224, 0.225",
}


def seed_preprocessing() -> None:
    """Before the preprocessing widgets are drawn: give each its value (the file's default, else the usual)."""
    defaults = st.session_state.get(PREP_DEFAULTS) or {}
    for key, value in PREP_INITIAL.items():
        st.session_state.setdefault(key, defaults.get(key, value))


def model_file_chosen() -> None:
    """The model uploader changed: read what an ONNX file says about its input, and offer it as the default."""
    file = st.session_state.get(MODEL_FILE)
    st.session_state[MODEL_FILE_INPUT] = ""
    st.session_state[PREP_DEFAULTS] = {}
    if file is None:
        return
    spec = compute.onnx_input(file.name, file.getvalue())
    if spec is None:
        return
    defaults = {PREP_HEIGHT: spec.height, PREP_WIDTH: spec.width, PREP_CHANNELS: spec.channels}
    valid = {PREP_HEIGHT: range(1, 4097), PREP_WIDTH: range(1, 4097), PREP_CHANNELS: (1, 3)}
    defaults = {key: value for key, value in defaults.items() if value in valid[key]}
    st.session_state[PREP_DEFAULTS] = defaults
    st.session_state.update(defaults)
    shape = " × ".join(str(v) if v else "any" for v in (spec.channels, spec.height, spec.width))
    layout = ", channels last" if spec.channels_last else ""
    st.session_state[MODEL_FILE_INPUT] = f"The file's input: {shape} (channels × height × width{layout})."


def chosen_preprocessing() -> compute.Preprocessing | None:
    """The preprocessing set under the upload, or None for the file's or architecture's own. Raises ValueError
    with a sentence for a mean or std that is not one number or three."""
    seed_preprocessing()
    if not st.session_state[PREP_CUSTOM]:
        return None
    channels = int(st.session_state[PREP_CHANNELS])
    size = (int(st.session_state[PREP_HEIGHT]), int(st.session_state[PREP_WIDTH]))
    norm = st.session_state[PREP_NORM]
    if norm == "unit":
        return size, channels, ((0.0,), (1.0,), 255.0)
    if norm == "imagenet":
        return size, channels, ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 255.0)
    mean, std = _numbers(st.session_state[PREP_MEAN], "mean"), _numbers(st.session_state[PREP_STD], "std")
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
