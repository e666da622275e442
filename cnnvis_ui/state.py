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
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st

from cnnvis_engine import METHODS, EngineError, list_samples
from cnnvis_engine.errors import shown
from cnnvis_engine.render import colormap_names

from . import model_cache, result_cache, upload_store, uploads
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
FROM_LINK = "_from_link"  # keys a link just set whose choices only the loaded model knows (`check_model_choices`)
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


# ----- what a link may ask for --------------------------------------------------------------------------------
MAX_PARAM_CHARS = 2000  # a query parameter's text: ~7 times the longest the app writes (six Compare model keys)
MAX_TEXT = 200  # one name: a model, weights, a picture, a layer (the longest here is under 80)
SALIENCY_MODES = {"saliency": "Vanilla", "guided_backprop": "Guided"}
CHANNEL_COUNTS = (4, 8, 16, 32, 64)
SANITY_MODES = {"cascading": "Cascading, from the output down", "independent": "One layer at a time"}
STANDING = ("feature_maps", *SALIENCY_MODES, "cam", "gradcam", "guided_gradcam")  # Explore's fixed panels
WEIGHTS_CHOICES = ("pretrained", "embedded", "random", "demo", "yours", "file")
_UPLOAD_REF = re.compile(r"upload:[0-9a-f]{64}")


def explore_extras() -> list[str]:
    """The registered methods Explore offers beyond its standing panels, quick ones first (registry order)."""
    extras = [m for m, cls in METHODS.items() if m not in STANDING and cls.drawing != "grid"]
    return sorted(extras, key=lambda m: METHODS[m].slow)


def compare_methods() -> list[str]:
    """The methods Compare offers: one map per cell."""
    return [m for m, cls in METHODS.items() if cls.drawing != "grid"]


def sanity_methods() -> list[str]:
    """The methods the Sanity test offers: maps cheap enough to redo per layer."""
    return [m for m, cls in METHODS.items() if cls.randomisable]


def image_refs() -> list[str]:
    """The pictures a link may name: the samples; an upload is a sha256 checked when it is loaded."""
    return [f"sample:{sample.key}" for sample in list_samples()]


def compare_images() -> list[str]:
    """The pictures Compare offers: the samples and this session's uploads."""
    return image_refs() + [f"upload:{digest}" for digest in st.session_state.get(UPLOADS, {})]


def _comparable() -> list[str]:
    offered = model_cache.comparable_models(bool(st.session_state.get(COMPARE_RANDOM)))
    return offered + ([f"{USER_MODEL_CHOICE}:file"] if st.session_state.get(USER_MODEL) else [])


_DROP = object()  # `Domain.admit`: the whole value is out, the parameter takes its default


@dataclass(frozen=True)
class Domain:
    """The values a link may give a parameter: those its widget could have produced. Numbers are finite and within
    `low`–`high`; a text (and each item of a list) is at most `max_length` characters and, where `choices` is given,
    one of them (or matches `pattern`); a list has no duplicates and at most `max_items`. `entries` checks a mapping
    (the method settings) item by item. `of_model` names choices that only the loaded model knows (its layers,
    convolutions, classes): `check_model_choices` applies them once the sidebar has loaded it."""

    low: float | None = None
    high: float | None = None
    choices: Callable[[], Sequence[Any]] | None = None
    pattern: re.Pattern[str] | None = None
    max_items: int | None = None
    max_length: int = MAX_TEXT
    entries: Callable[[str, Mapping[str, Any]], tuple[dict[str, Any], list[str]]] | None = None
    of_model: str = ""  # "layers", "convolutions" or "classes"

    def admit(self, name: str, value: Any) -> tuple[Any, list[str]]:
        """(the value as far as it is in the domain, or _DROP; what was left out, in words)."""
        if value is None or isinstance(value, bool):
            return value, []
        if isinstance(value, Mapping):
            return self.entries(name, value) if self.entries else (_DROP, [f"{name} cannot be read"])
        offered = None if self.choices is None else self.choices()  # once per value: Compare's looks at files
        if isinstance(value, (list, tuple)):
            return self._admit_items(name, value, offered)
        problem = self._refusal(value, offered)
        return (_DROP, [f"{name}={shown(value)} {problem}"]) if problem else (value, [])

    def _admit_items(self, name: str, items: Sequence[Any], offered: Sequence[Any] | None) -> tuple[Any, list[str]]:
        kept: list[Any] = []
        problems = []
        for item in items:
            problem = "is there twice" if item in kept else self._refusal(item, offered)
            if problem:
                problems.append(f"{name}: {shown(item)} {problem}")
            elif self.max_items is not None and len(kept) == self.max_items:
                problems.append(f"{name}: at most {self.max_items} fit, the rest were left out")
                break
            else:
                kept.append(item)
        return (tuple(kept) if isinstance(items, tuple) else kept), problems

    def _refusal(self, value: Any, offered: Sequence[Any] | None) -> str:
        """Why `value` is out of the domain ("" if it is in); `offered`: the choices now, None if any."""
        if isinstance(value, (int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                return "is not a finite number"
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                return f"is outside {self.low:g}–{self.high:g}"
        elif len(str(value)) > self.max_length:
            return f"is longer than {self.max_length} characters"
        if offered is not None and value not in offered and not (self.pattern and self.pattern.fullmatch(str(value))):
            return "is not offered here"
        return ""


def _admit_settings(name: str, settings: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, Any], list[str]]:
    """A link's method settings within what Explore's number boxes allow (`Option.dashboard_range`): only methods
    Explore offers, only options they declare, each value within its range (a whole number where it counts)."""
    offered = set(explore_extras())
    kept: dict[str, dict[str, float]] = {}
    problems = []
    for method, values in settings.items():
        declared = {option.name: option for option in METHODS[method].options} if method in offered else {}
        if not declared:
            problems.append(f"{name}: {shown(method)} is not a method with settings here")
            continue
        for option_name, value in values.items():
            option = declared.get(option_name)
            if option is None:
                problems.append(f"{name}: {method} has no setting {shown(option_name)}")
                continue
            low, high = option.dashboard_range()
            if not low <= value <= high:
                problems.append(f"{name}: {method}.{option_name}={value:g} is outside {low:g}–{high:g}")
                continue
            if option.kind is int and value != int(value):
                problems.append(f"{name}: {method}.{option_name}={value:g} is not a whole number")
                continue
            kept.setdefault(method, {})[option_name] = option.kind(value)
    return kept, problems


@dataclass(frozen=True)
class Param:
    """A plain key in the URL: its query parameter, how its value is written (`codec`) and what a link may give it
    (`domain`: the widget's own; widgets read their bounds and choices from it)."""

    name: str
    codec: Codec
    domain: Domain = Domain()


_ON_OFF = Domain()
_MODEL_NAMES = Domain()  # which models: `_check_model` (the registry, the zoo, this server's allowlist)

# Every plain key that defines a view: its query parameter, codec and domain. Values equal to their default are left
# out of the URL, except the model, weights and image, which are always written: a link keeps naming them even if a
# later version changes the defaults, and a URL without them is one the app did not write.
URL_PARAMS: dict[str, Param] = {
    MODEL: Param("model", _TEXT, _MODEL_NAMES),
    WEIGHTS: Param("weights", _TEXT, Domain(choices=lambda: WEIGHTS_CHOICES)),
    IMAGE: Param("image", _TEXT, Domain(choices=image_refs, pattern=_UPLOAD_REF)),
    LAYER: Param("layer", _OPTIONAL_TEXT, Domain(of_model="layers")),
    TARGET: Param("class", _OPTIONAL_INT, Domain(low=0, high=1_000_000, of_model="classes")),
    COLORMAP: Param("colormap", _TEXT, Domain(choices=colormap_names)),
    OPACITY: Param("opacity", _FLOAT, Domain(low=0.0, high=1.0)),
    SALIENCY_MODE: Param("saliency", _TEXT, Domain(choices=lambda: list(SALIENCY_MODES))),
    EXTRA_METHODS: Param("methods", _TUPLE, Domain(choices=explore_extras)),  # each once: at most the pills' count
    FAITHFULNESS: Param("scores", _BOOL, _ON_OFF),
    METHOD_SETTINGS: Param("settings", _SETTINGS, Domain(entries=_admit_settings)),
    FM_CHANNELS: Param("channels", _INT, Domain(choices=lambda: CHANNEL_COUNTS)),
    FM_SORT: Param("sort", _BOOL, _ON_OFF),
    FM_SHARED: Param("one_scale", _BOOL, _ON_OFF),
    KERNEL_LAYER: Param("kernels", _OPTIONAL_TEXT, Domain(of_model="convolutions")),
    COMPARE_METHOD: Param("compare_method", _TEXT, Domain(choices=compare_methods)),
    COMPARE_IMAGES: Param("compare_images", _LIST, Domain(choices=compare_images, max_items=4)),
    COMPARE_MODELS: Param("compare_models", _LIST, Domain(choices=_comparable, max_items=6)),
    COMPARE_RANDOM: Param("compare_random", _BOOL, _ON_OFF),
    SANITY_METHOD: Param("sanity_method", _TEXT, Domain(choices=sanity_methods)),
    SANITY_SECOND: Param("sanity_second", _TEXT, Domain(choices=lambda: [NO_METHOD, *sanity_methods()])),
    SANITY_MODE: Param("sanity_mode", _TEXT, Domain(choices=lambda: list(SANITY_MODES))),
    SANITY_SHOWN: Param("sanity_run", _BOOL, _ON_OFF),
    ALL_LAYERS: Param("all_layers", _BOOL, _ON_OFF),
    SHARED_SCALE: Param("same_scale", _BOOL, _ON_OFF),
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
        st.session_state[key] = DEFAULTS.get(key) if value is _DROP else value
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
            problems.append(f"{param.name}={shown(value)} is not in this model")
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


# ----- actions (callbacks) ------------------------------------------------------------------------------
def model_changed() -> None:
    """A new model: its default weights, the automatic layer and the top-1 class again."""
    name = st.session_state[MODEL]
    if name == USER_MODEL_CHOICE:
        st.session_state[WEIGHTS] = "file"
    else:
        spec = model_cache.model_spec(name)
        st.session_state[WEIGHTS] = spec.default_weights if spec else "random"
    st.session_state[LAYER] = None
    st.session_state[TARGET] = None
    st.session_state[KERNEL_LAYER] = None
    st.session_state.pop(FROM_LINK, None)
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
    digest = result_cache.sha256(data)
    try:
        result_cache.decode_upload(digest, data)
    except EngineError as error:
        st.session_state[UPLOAD_ERROR] = f"{clean(file.name)} was not used: {error}"
        return
    kept = dict(st.session_state[UPLOADS])
    kept.pop(digest, None)
    kept[digest] = (clean(file.name), data)
    while len(kept) > MAX_UPLOADS:
        kept.pop(next(iter(kept)))
    st.session_state[UPLOADS] = kept
    upload_store.upload_store().put(digest, clean(file.name), data)
    choose_image(f"upload:{digest}")


MODEL_SUFFIXES = (".onnx", ".pt", ".pth", ".ts")  # the model file itself; ".data": an ONNX model's weights


def model_upload() -> tuple[Any, list[Any]]:
    """(the model file, the ONNX external data files uploaded with it) from the model uploader, which takes both at
    once (`model.onnx` + `model.onnx.data`, as today's exporter writes them) and keeps what was uploaded before:
    the newest model file counts, with the data files uploaded since the model file before it. Raises ValueError
    with a sentence when there is no model file."""
    value = st.session_state.get(MODEL_FILE)
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
    init()
    labels = st.session_state.get(LABELS_FILE)
    try:
        file, data_files = model_upload()
    except ValueError as error:
        st.session_state[USER_MODEL_ERROR] = str(error)
        return
    checked = [(f, uploads.MODEL_MB) for f in (file, *data_files)] + [(labels, uploads.LABELS_MB)]
    for upload, limit in checked:  # kept by the server too
        refused = uploads.refusal(upload, limit) if upload is not None else ""
        if refused:
            st.session_state[USER_MODEL_ERROR] = refused
            uploads.discard(upload)
            return
    weights = {f.name: f.getvalue() for f in data_files}  # by exact name: the model's data entries name them
    data = file.getvalue()
    labels_data = labels.getvalue() if labels is not None else None
    architecture = st.session_state.get(MODEL_ARCHITECTURE) or None  # "": TorchScript, no architecture
    try:
        preprocessing = chosen_preprocessing()
    except ValueError as error:
        st.session_state[USER_MODEL_ERROR] = str(error)
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
        st.session_state[USER_MODEL_ERROR] = str(error)
        return
    st.session_state[USER_MODEL] = {
        "key": key,
        "filename": clean(file.name),
        "architecture": architecture,
        "data": data,
        "labels": labels_data,
        "preprocessing": preprocessing,
        "data_files": weights,
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
    st.session_state[MODEL_FILE_INPUT] = ""
    st.session_state[PREP_DEFAULTS] = {}
    try:
        file, _ = model_upload()
    except ValueError:
        return
    spec = model_cache.onnx_input(file.name, file.getvalue())
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


def chosen_preprocessing() -> model_cache.Preprocessing | None:
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
