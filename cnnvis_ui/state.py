"""Every session-state key of the dashboard, its default, how widgets bind to it, and which keys the URL holds.

Shared choices live in plain keys (MODEL, WEIGHTS, IMAGE, LAYER, TARGET, ...). A widget has its own key
(`widget(KEY)`): it is seeded from the plain key just before it is drawn and copies its value back in its
`on_change` callback. So a choice survives page switches (Streamlit forgets the state of a widget that is not
drawn on a run), and tests can set plain keys directly (AppTest runs a page file without the entry script).

The plain keys that define a view are also the URL's query parameters (`URL_PARAMS`): `init()` adopts a URL this
session did not write (a link, a reload, back/forward) and every change writes it (`sync_url`), so a link
reproduces the view in any browser.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import streamlit as st

from cnnvis_engine.errors import shown
from cnnvis_engine.render import colormap_names

from . import choices, model_cache, uploads
from .audit_folders import DEMO_FOLDER, offered_folders
from .url_codec import (
    BOOL,
    BOX,
    DROP,
    FLOAT,
    INT,
    LIST,
    MAX_PARAM_CHARS,
    OPTIONAL_INT,
    OPTIONAL_TEXT,
    SETTINGS,
    TEXT,
    TUPLE,
    Domain,
    Param,
)

# Shared choices (sidebar).
MODEL = "model"  # registry name, or USER_MODEL_CHOICE
WEIGHTS = "weights"  # the registry's weights choice ("pretrained", "embedded", "random"), "file" for uploads
IMAGE = "image"  # "sample:<key>" or "upload:<sha256>"
LAYER = "layer"  # traced layer name, or None for the automatic default
ALL_LAYERS = "all_layers"  # the layer list shows pass-through layers (Identity, dropout) too
TARGET = "target"  # class index, or None for the top-1 prediction
UPLOADS = "uploads"  # {sha256: (file name, bytes)} of the last few good image uploads
UPLOAD_ERROR = "upload_error"  # why the last image upload was refused ("" if it was not)
USER_MODEL = "user_model"  # a `typed_state.UserModel` dict, or None
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
FROM_LINK = "_from_link"  # keys a link just set whose choices only the loaded model knows (`check_model_choices`)
SANITY_FROM_LINK = "_sanity_from_link"  # the URL just read showed the Sanity test: run it when the page draws
URL_SEEN = "_url_seen"  # our query parameters as this session last read or wrote them
SHARED_SCALE = "shared_scale"  # Compare and Sanity: the maps of one method share one colour scale (cnnvis_ui/scale.py)
SANITY_OUTCOMES = "sanity_outcomes"  # {`sanity_run` key: the randomisation test's outcome} (cnnvis_ui/caveats.py)
# The Audit page's view (cnnvis_ui/audit.py names them FOLDER, METHOD, ...): a link reopens the audit it shows.
AUDIT_FOLDER = "audit_folder"  # a folder under the audit root (`audit_folders.offered_folders`)
AUDIT_METHOD = "audit_method"
AUDIT_SIZE = "audit_size"
AUDIT_CLASS = "audit_class"  # the class shown, None: the most suspicious
AUDIT_GROUP = "audit_group"  # the group (cluster number within the class) whose pictures are shown, or None
AUDIT_SHOWN = "audit_shown"  # the page shows the audit of its settings (pressed "Run audit", or opened a link)
CONCEPT_UNITS = "concept_units"  # Concepts: "channels" or "groups" (of channels)
CONCEPT_OPEN = "concept_open"  # Concepts: the channel whose sub-concepts are open, or None
CONCEPT_BOX = "concept_box"  # Concepts: "x0,y0,x1,y1" in percent of the picture, "" for the whole picture
CONCEPT_REFERENCE = "concept_reference"  # Concepts: show the sample photos' crops on the cards
CONCEPT_COMPARE = "concept_compare"  # Concepts: the second model's "name:weights" key, or None
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
# The Stories page's choices (its own pictures and settings; their query parameters keep these names).
STORY = "stories_story"
TANK_PICTURE = "stories_tank_picture"
SALT_PICTURE = "stories_salt_picture"
SALT_LAYER = "stories_salt_layer"
ROBOT_PICTURE = "stories_robot_picture"
ROBOT_GROUP = "stories_robot_group"
ROBOT_DIRECTION = "stories_robot_direction"  # None: the direction of the view's first obstacle
ROBOT_DISTANCE = "stories_robot_distance"
TANK_SHARED_SCALE = "stories_tank_same_scale"  # the two detectors' Grad-CAMs on one colour scale (on by default)

USER_MODEL_CHOICE = "__your_model__"
NO_METHOD = "__none__"  # the option that stands for "no second method"
AUTO = "__automatic__"  # the option that stands for None (automatic) in a selectbox
AUTOMATIC: dict[str, Any] = {LAYER: AUTO, TARGET: -1, KERNEL_LAYER: AUTO, CONCEPT_COMPARE: NO_METHOD}
DEFAULT_IMAGE = "sample:cat"
AUDIT_SIZES = (16, 32)
AUDIT_MAX_GROUPS = 8  # the page's audits find at most this many groups per class (`spectral.analyse_class`)
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
    AUDIT_FOLDER: DEMO_FOLDER,
    AUDIT_METHOD: choices.AUDIT_DEFAULT_METHOD,
    AUDIT_SIZE: 16,
    AUDIT_CLASS: None,
    AUDIT_GROUP: None,
    AUDIT_SHOWN: False,
    CONCEPT_UNITS: "channels",
    CONCEPT_OPEN: None,
    CONCEPT_BOX: "",
    CONCEPT_REFERENCE: True,
    CONCEPT_COMPARE: None,
    STORY: "tanks",
    TANK_PICTURE: "tank_sunny",
    TANK_SHARED_SCALE: True,
    SALT_PICTURE: "salt_1",
    SALT_LAYER: "decode1",
    ROBOT_PICTURE: "robot_obstacles",
    ROBOT_GROUP: "all",
    ROBOT_DIRECTION: None,
    ROBOT_DISTANCE: "very far",
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


def compare_images() -> list[str]:
    """The pictures Compare offers: the samples and this session's uploads."""
    return choices.image_refs() + [f"upload:{digest}" for digest in st.session_state.get(UPLOADS, {})]


def _comparable() -> list[str]:
    offered = model_cache.comparable_models(bool(st.session_state.get(COMPARE_RANDOM)))
    return offered + ([f"{USER_MODEL_CHOICE}:file"] if st.session_state.get(USER_MODEL) else [])


_ON_OFF = Domain()
_MODEL_NAMES = Domain()  # which models: `_check_model` (the registry, the zoo, this server's allowlist)

# Every plain key that defines a view: its query parameter, codec and domain. Values equal to their default are left
# out of the URL, except the model, weights and image, which are always written: a link keeps naming them even if a
# later version changes the defaults, and a URL without them is one the app did not write.
URL_PARAMS: dict[str, Param] = {
    MODEL: Param("model", TEXT, _MODEL_NAMES),
    WEIGHTS: Param("weights", TEXT, Domain(choices=lambda: choices.WEIGHTS_CHOICES)),
    IMAGE: Param("image", TEXT, Domain(choices=choices.image_refs, pattern=choices.UPLOAD_REF)),
    LAYER: Param("layer", OPTIONAL_TEXT, Domain(of_model="layers")),
    TARGET: Param("class", OPTIONAL_INT, Domain(low=0, high=1_000_000, of_model="classes")),
    COLORMAP: Param("colormap", TEXT, Domain(choices=colormap_names)),
    OPACITY: Param("opacity", FLOAT, Domain(low=0.0, high=1.0)),
    SALIENCY_MODE: Param("saliency", TEXT, Domain(choices=lambda: list(choices.SALIENCY_MODES))),
    EXTRA_METHODS: Param(
        "methods", TUPLE, Domain(choices=choices.explore_extras)
    ),  # each once: at most the pills' count
    FAITHFULNESS: Param("scores", BOOL, _ON_OFF),
    METHOD_SETTINGS: Param("settings", SETTINGS, Domain(entries=choices.admit_settings)),
    FM_CHANNELS: Param("channels", INT, Domain(choices=lambda: choices.CHANNEL_COUNTS)),
    FM_SORT: Param("sort", BOOL, _ON_OFF),
    FM_SHARED: Param("one_scale", BOOL, _ON_OFF),
    KERNEL_LAYER: Param("kernels", OPTIONAL_TEXT, Domain(of_model="convolutions")),
    COMPARE_METHOD: Param("compare_method", TEXT, Domain(choices=choices.compare_methods)),
    COMPARE_IMAGES: Param("compare_images", LIST, Domain(choices=compare_images, max_items=4)),
    COMPARE_MODELS: Param("compare_models", LIST, Domain(choices=_comparable, max_items=6)),
    COMPARE_RANDOM: Param("compare_random", BOOL, _ON_OFF),
    SANITY_METHOD: Param("sanity_method", TEXT, Domain(choices=choices.sanity_methods)),
    SANITY_SECOND: Param("sanity_second", TEXT, Domain(choices=lambda: [NO_METHOD, *choices.sanity_methods()])),
    SANITY_MODE: Param("sanity_mode", TEXT, Domain(choices=lambda: list(choices.SANITY_MODES))),
    SANITY_SHOWN: Param("sanity_run", BOOL, _ON_OFF),
    ALL_LAYERS: Param("all_layers", BOOL, _ON_OFF),
    SHARED_SCALE: Param("same_scale", BOOL, _ON_OFF),
    STORY: Param(STORY, TEXT, Domain(choices=lambda: list(choices.STORIES))),
    TANK_PICTURE: Param(TANK_PICTURE, TEXT, Domain(choices=lambda: choices.story_pictures("tanks"))),
    TANK_SHARED_SCALE: Param(TANK_SHARED_SCALE, BOOL, _ON_OFF),
    SALT_PICTURE: Param(SALT_PICTURE, TEXT, Domain(choices=lambda: choices.story_pictures("salt"))),
    SALT_LAYER: Param(SALT_LAYER, TEXT, Domain(choices=lambda: list(choices.SALT_LAYERS))),
    ROBOT_PICTURE: Param(ROBOT_PICTURE, TEXT, Domain(choices=choices.robot_views)),
    ROBOT_GROUP: Param(ROBOT_GROUP, TEXT, Domain(choices=lambda: list(choices.ROBOT_GROUPS))),
    ROBOT_DIRECTION: Param(ROBOT_DIRECTION, OPTIONAL_TEXT, Domain(choices=lambda: choices.ROBOT_DIRECTIONS)),
    ROBOT_DISTANCE: Param(ROBOT_DISTANCE, TEXT, Domain(choices=lambda: choices.ROBOT_DISTANCES)),
    # the folders of this browser session (another session's uploads are never among them)
    AUDIT_FOLDER: Param("audit_folder", TEXT, Domain(choices=lambda: offered_folders(owner=uploads.session_id()))),
    AUDIT_METHOD: Param("audit_method", TEXT, Domain(choices=choices.audit_methods)),
    AUDIT_SIZE: Param("audit_size", INT, Domain(choices=lambda: AUDIT_SIZES)),
    AUDIT_CLASS: Param("audit_class", OPTIONAL_TEXT, Domain(of_model="audit_classes")),
    AUDIT_GROUP: Param("audit_group", OPTIONAL_INT, Domain(low=0, high=AUDIT_MAX_GROUPS - 1)),
    AUDIT_SHOWN: Param("audit_run", BOOL, _ON_OFF),
    CONCEPT_UNITS: Param("concept_units", TEXT, Domain(choices=lambda: list(choices.CONCEPT_UNIT_CHOICES))),
    CONCEPT_OPEN: Param("concept_open", OPTIONAL_INT, Domain(low=0, high=65_535)),  # checked on the page
    CONCEPT_BOX: Param("concept_box", BOX, Domain(max_length=15)),
    CONCEPT_REFERENCE: Param("concept_reference", BOOL, _ON_OFF),
    CONCEPT_COMPARE: Param("concept_compare", OPTIONAL_TEXT, Domain(choices=lambda: _comparable())),
}
ALWAYS_IN_URL = (MODEL, WEIGHTS, IMAGE)
USER_MODEL_PREFIX = "file:"  # the model parameter of an uploaded model file: "file:<its key>"


def domain(key: str) -> Domain:
    """What plain key `key` may hold (its widget's bounds and choices)."""
    return URL_PARAMS[key].domain


def url_params() -> dict[str, str]:
    """The query parameters that reproduce this session's view."""
    params = {}
    for key, param in URL_PARAMS.items():
        name, codec = param.name, param.codec
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
    names = {param.name for param in URL_PARAMS.values()}
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
    problems, linked = [], []
    for key, param in URL_PARAMS.items():
        value = DEFAULTS.get(key)
        text = found.get(param.name)
        if text is not None and len(text) > MAX_PARAM_CHARS:
            problems.append(f"{param.name} was {len(text):,} characters long, more than any value it can have")
        elif text is not None:
            try:
                value = param.codec.decode(text)
                linked.append(key)
            except (ValueError, OverflowError):
                problems.append(f"{param.name}={shown(text)} could not be read")
        st.session_state[key] = value
    for key in linked:  # after all are read: some domains depend on others (Compare's models on its random switch)
        param = URL_PARAMS[key]
        value, dropped = param.domain.admit(param.name, st.session_state[key])
        st.session_state[key] = DEFAULTS.get(key) if value is DROP else value
        problems += dropped
    problems += _check_model(found.get("model"))
    st.session_state[FROM_LINK] = tuple(
        key for key in linked if URL_PARAMS[key].domain.of_model and st.session_state[key] is not None
    )
    st.session_state[SANITY_FROM_LINK] = st.session_state[SANITY_SHOWN]
    st.session_state[LINK_NOTICE] = ""
    _note(problems)


def _note(problems: Sequence[str]) -> None:
    """Add what of a link could not be reproduced to LINK_NOTICE (the sidebar shows it once)."""
    if not problems:
        return
    earlier = st.session_state.get(LINK_NOTICE, "").removeprefix(_NOTICE_START).removesuffix(".")
    st.session_state[LINK_NOTICE] = _NOTICE_START + "; ".join([*filter(None, [earlier]), *problems]) + "."


_NOTICE_START = "Parts of the link could not be reproduced here: "


def check_model_choices(choices: Mapping[str, Collection[Any]]) -> None:
    """Once the model is loaded (the sidebar): a link's layer, kernel layer or class that this model does not have
    (`Domain.of_model`: "layers", "convolutions", "classes" in `choices`) becomes automatic again, with the link
    note. Each link is checked once: later choices are the widgets' own."""
    pending = st.session_state.pop(FROM_LINK, ())
    problems = []
    for key in pending:
        param = URL_PARAMS[key]
        value = st.session_state.get(key)
        if value is not None and value not in choices.get(param.domain.of_model, ()):
            where = "this folder or model" if param.domain.of_model == "audit_classes" else "this model"
            problems.append(f"{param.name}={shown(value)} is not in {where}")
            st.session_state[key] = DEFAULTS.get(key)
    _note(problems)


def _default_model() -> None:
    default = model_cache.default_model()
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
    spec = model_cache.model_spec(name)
    if spec is None:
        _default_model()
        return [f"there is no model called {shown(written)} here"]
    if not model_cache.allowed_models([spec.name]):
        _default_model()
        return [f"this server does not offer the model {shown(written)}"]
    if st.session_state[WEIGHTS] not in spec.weights:
        st.session_state[WEIGHTS] = spec.default_weights
    return []
