"""The dashboard's models: registry and uploaded models kept loaded in `st.cache_resource` (bounded; an `Explainer`
is thread-safe, so sessions share it), which models this server offers, and how a model is named on screen."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import streamlit as st

from cnnvis_engine import (
    DEFAULT_MODEL,
    EngineError,
    Explainer,
    ModelError,
    ModelSpec,
    list_models,
    load_model,
    load_model_file,
)
from cnnvis_engine.models import (
    MODELS,
    ModelBundle,
    Normalization,
    check_model_allowed,
    check_model_size,
    find_spec,
    registered_names,
    weights_on_disk,
    zoo_names,
)
from cnnvis_engine.models.onnx_files import OnnxInput, is_onnx, read_input

from . import threads, uploads
from .text import clean

MAX_MODELS = 3  # registry models kept loaded at once, across all sessions
MAX_FILE_MODELS = 2  # uploaded models kept loaded at once
# Recorded forward passes (with their autograd graphs) each explainer keeps: the current image, so a new class
# or layer needs no new forward pass. Results are cached below, so more would only cost memory.
FORWARD_PASSES = 1


@dataclass(frozen=True)
class ModelRef:
    """Which model: a registry name with a weights choice, or an uploaded file (weights == "file")."""

    name: str
    weights: str
    file_key: str = ""  # for uploads: sha256 of the file, the architecture and the labels file

    @property
    def key(self) -> str:
        return f"file:{self.file_key}" if self.weights == "file" else f"{self.name}:{self.weights}"

    @property
    def label(self) -> str:
        return f"{model_title(self.name)} · {WEIGHTS_LABELS.get(self.weights, self.weights)}"


def model_title(name: str) -> str:
    """A model's name on screen: a served model's as its owner spelled it (its registry key is lowercased)."""
    return MODELS[name].title or name if is_served(name) else name


def is_served(name: str) -> bool:
    """Offered by `cnnvis serve --model` or `cnnvis.show` (see `offer_model`)."""
    spec = MODELS.get(name)
    return spec is not None and spec.served


WEIGHTS_LABELS = {
    "pretrained": "pretrained weights",
    "embedded": "built-in ImageNet weights",
    "random": "random weights",
    "demo": "demo weights",
    "file": "weights from your file",
    "yours": "your model as you gave it",
}


@st.cache_resource(max_entries=MAX_MODELS, show_spinner=False)
@threads.sized
def registry_explainer(name: str, weights: str) -> Explainer:
    """A registry model with the given weights, loaded once per server. Raises EngineError."""
    return Explainer(load_model(name, weights), cache_size=FORWARD_PASSES)


# (input size (height, width), channels, (mean, std, scale)) chosen under the upload; None: automatic
Preprocessing = tuple[tuple[int, int], int, tuple[tuple[float, ...], tuple[float, ...], float]]


@st.cache_resource(max_entries=MAX_FILE_MODELS, show_spinner=False)
@threads.sized
def file_explainer(
    file_key: str,
    filename: str,
    architecture: str | None,
    _data: bytes,
    _labels: bytes | None,
    preprocessing: Preprocessing | None = None,
    allow_torchscript: bool = True,
    _data_files: Mapping[str, bytes] | None = None,
) -> Explainer:
    """A user's ONNX, TorchScript or state_dict file (+ labels, + preprocessing, + an ONNX model's data files),
    keyed by `file_key` (which covers all of them). Raises ModelFileError. An uploaded TorchScript model runs in its own worker process,
    stopped when the cache drops the explainer. Its class names lose bidirectional controls, and invisible-only
    ones become "(unnamed)" (`text.clean`)."""
    size: tuple[int, int] | None = None
    channels: int | None = None
    normalization: Normalization | None = None  # None: the file's or the architecture's own
    if preprocessing is not None:
        size, channels, (mean, std, scale) = preprocessing
        normalization = Normalization(mean, std, scale)
    bundle = load_model_file(
        _data,
        filename,
        architecture=architecture,
        labels=_labels,
        allow_torchscript=allow_torchscript,
        data_files=_data_files,
        input_size=size,
        channels=channels,
        normalization=normalization,
    )
    names = tuple(clean(name) for name in bundle.class_names)
    if names != bundle.class_names:
        bundle = dataclasses.replace(bundle, class_names=names)
    return Explainer(bundle, cache_size=FORWARD_PASSES)


def onnx_input(filename: str, data: bytes) -> OnnxInput | None:
    """What an ONNX file says about its input (for the preprocessing defaults); None for other files."""
    return read_input(data) if is_onnx(data, filename) else None


def describe_preprocessing(bundle: ModelBundle) -> str:
    """ "It is fed 48×40 grayscale pictures (width × height) with mean 0.5 and std 0.25." — what the model gets."""
    height, width = bundle.input_size
    norm = bundle.normalization
    kind = "RGB" if bundle.channels == 3 else "grayscale"
    if all(m == 0 for m in norm.mean) and all(s == 1 for s in norm.std):
        plain_scales: dict[float, str] = {255: "scaled to 0–1", 1: "as 0–255 values"}
        how = plain_scales.get(norm.scale, f"divided by {norm.scale:g}")
    elif norm.for_channels(3) == Normalization():
        how = "with ImageNet mean and std"
    else:
        unit = "" if norm.scale == 255 else f" (on the 0–{255 / norm.scale:g} scale)"
        mean, std = (", ".join(f"{v:g}" for v in values) for values in (norm.mean, norm.std))
        how = f"with mean {mean} and std {std}{unit}"
    return f"It is fed {width}×{height} {kind} pictures (width × height) {how}."


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def weights_problem(name: str, weights: str) -> str:
    """Why `name` with `weights` cannot be loaded ("" when it loads). Remembered for ten minutes, so an
    unavailable download is tried once, not on every rerun; a loaded model stays in the resource cache."""
    try:
        registry_explainer(name, weights)
    except EngineError as error:
        return str(error)
    return ""


def model_refusal(name: str) -> str:
    """Why this server does not load the model `name` ("" when it may): not on its allowlist, or over its parameter
    cap (`uploads.server_model_limits`). Decided before anything is built or downloaded."""
    allowed, max_params = uploads.server_model_limits(registered_names())
    try:
        check_model_allowed(name, allowed)
        check_model_size(name, max_params)
    except EngineError as error:
        return str(error)
    return ""


def allowed_models(names: Sequence[str]) -> list[str]:
    """`names` less those this server's allowlist leaves out (served models always stay)."""
    allowed, _ = uploads.server_model_limits(registered_names())
    if allowed is None:
        return list(names)
    return [name for name in names if name in allowed or is_served(name)]


def comparable_models(include_random: bool) -> list[str]:
    """ "name:weights" keys for the Compare page: each model with its own real weights where they are on this
    machine (shipped ones, or a pretrained checkpoint in the cache: a file check, `weights_on_disk`), and with
    random weights only when `include_random` (an explicit choice). No model is loaded and nothing is downloaded
    to build the list: a model is loaded only when a cell that shows it is drawn."""
    keys = []
    allowed = set(allowed_models([spec.name for spec in list_models()]))
    for spec in list_models():
        if spec.name not in allowed:
            continue
        keys += [f"{spec.name}:{w}" for w in spec.weights if w != "random" and weights_on_disk(spec.name, w)]
        if include_random and "random" in spec.weights:
            keys.append(f"{spec.name}:random")
    return keys


def model_choices() -> list[str]:
    """Registry model names, the embedded default first (no served models: these are architectures)."""
    return [spec.name for spec in list_models() if not spec.served]


def network_choices(extra: Sequence[str] = ()) -> list[str]:
    """What the sidebar's Network box offers: the models served by `cnnvis serve` / `cnnvis.show` first, then the
    registered ones, then `extra` (an uploaded model), then every torchvision and timm classifier by prefixed name
    (CNNs first; see `zoo_names`)."""
    names = allowed_models([spec.name for spec in list_models()]) + list(extra)
    listed = set(names)
    return names + allowed_models([name for name in _zoo_choices() if name not in listed])


@st.cache_resource(show_spinner=False)
def _zoo_choices() -> tuple[str, ...]:
    """The zoo's names, listed once per server (timm's import takes a second; the list itself 10 ms)."""
    try:
        return zoo_names()
    except (ImportError, ModelError):  # a machine without timm still offers the rest
        return ()


def model_spec(name: str) -> ModelSpec | None:
    """A registered, served or zoo model's spec; None for names that are none of these."""
    return find_spec(name) if name else None


def default_model() -> ModelRef:
    """The newest served model when there is one (`cnnvis serve --model`, `cnnvis.show`), else the default."""
    served = next((spec for spec in list_models() if spec.served), None)
    spec = served or model_spec(DEFAULT_MODEL)
    return ModelRef(spec.name if spec else DEFAULT_MODEL, spec.default_weights if spec else "embedded")
