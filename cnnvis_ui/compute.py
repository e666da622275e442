"""Every `st.cache_*` wrapper of the dashboard: models, decoded images, traces, predictions, explanations, the
checks on explanations (faithfulness scores, the randomisation test), feature visualisations and the Stories
page's pictures, answers and fresh-data scores.

Models live in `st.cache_resource` (bounded; an `Explainer` is thread-safe, so sessions share it). Results live
in `st.cache_data`, keyed by plain values — the image's sha256, the model key, layer, target, methods and
their options — while the image and the explainer travel as `_underscored` arguments that are not hashed.
Display settings (colormap, opacity) never reach this module, so changing them only redraws.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import numpy as np
import streamlit as st
from PIL import Image, ImageOps
from streamlit.runtime.scriptrunner import get_script_run_ctx

from cnnvis_engine import (
    DEFAULT_MODEL,
    METHODS,
    ClassTarget,
    DecodedImage,
    EngineError,
    Explainer,
    Explanation,
    LayerInfo,
    ModelError,
    ModelSpec,
    Prediction,
    RegressionTarget,
    SegmentationTarget,
    Target,
    decode_image,
    list_models,
    load_model,
    load_model_file,
    sample_path,
)
from cnnvis_engine.faithfulness import Faithfulness, evaluate_map
from cnnvis_engine.featurevis import FeatureVisResult, render_channels
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
from cnnvis_engine.sanity import Mode, RandomisationStep, randomisation_test
from cnnvis_engine.stories import evaluation, readout

from . import jobs, threads, uploads
from .text import clean

MAX_MODELS = 3  # registry models kept loaded at once, across all sessions
MAX_FILE_MODELS = 2  # uploaded models kept loaded at once
# Recorded forward passes (with their autograd graphs) each explainer keeps: the current image, so a new class
# or layer needs no new forward pass. Results are cached below, so more would only cost memory.
FORWARD_PASSES = 1
FAITHFULNESS_STEPS = 25  # deletion/insertion in 4% shares: 2 × 26 forward passes per map


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


@dataclass(frozen=True)
class LayerTable:
    """The traced layers valid for the map methods, each method's automatic layer, and CAM's status."""

    spatial: tuple[LayerInfo, ...]  # valid for feature maps and Grad-CAM, in execution order
    convolutions: tuple[LayerInfo, ...]  # valid for kernels
    defaults: Mapping[str, str | None]
    cam_reason: str
    not_maps: tuple[LayerInfo, ...] = ()  # multi-dimensional outputs that are no map (heads, attention, folded)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


P = ParamSpec("P")
R = TypeVar("R")


# ----- the queue of slow jobs (jobs.py) -----------------------------------------------------------------
def session_id() -> str:
    """The browser session running this script (Streamlit's id); outside a script run (the bench, the CLI), the
    calling thread stands for a session."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else f"thread-{threading.get_ident()}"


@contextmanager
def queued(label: str) -> Iterator[None]:
    """Around one slow job: waits for its turn in the server's queue (`jobs.gate()`), with "Waiting for N earlier
    jobs…" where its result will be drawn, redrawn as the count falls and every heartbeat (the redraw is where
    Streamlit stops a run that a newer one replaced, which leaves the queue). Used inside cached functions, before
    their own progress bars: a cache hit never waits, and replays the placeholder made and emptied."""
    place = st.empty()

    def show(ahead: int) -> None:
        place.info(jobs.waiting_sentence(ahead, label), icon=":material/hourglass_top:")

    try:
        with jobs.slow(session_id(), label, on_wait=show):
            place.empty()
            yield
    finally:
        place.empty()


def slow_job(label: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the function is a slow job called `label` (`queued`); put it above `threads.sized`, so that a
    session waiting in the queue takes no share of the thread budget."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with queued(label):
                return func(*args, **kwargs)

        return wrapper

    return decorate


# ----- models -------------------------------------------------------------------------------------------
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
    chosen = {}
    if preprocessing is not None:
        size, channels, (mean, std, scale) = preprocessing
        chosen = {"input_size": size, "channels": channels, "normalization": Normalization(mean, std, scale)}
    bundle = load_model_file(
        _data,
        filename,
        architecture=architecture,
        labels=_labels,
        allow_torchscript=allow_torchscript,
        data_files=_data_files,
        **chosen,
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
        how = {255: "scaled to 0–1", 1: "as 0–255 values"}.get(norm.scale, f"divided by {norm.scale:g}")
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


# ----- images -------------------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner=False)
def decode_sample(key: str) -> DecodedImage:
    """A bundled sample photo, decoded once."""
    return decode_image(sample_path(key))


@st.cache_data(max_entries=16, show_spinner=False)
def thumbnail(key: str, size: int = 160) -> bytes:
    """A small square-cropped JPEG of a sample, for the sidebar's gallery."""
    image = ImageOps.fit(decode_sample(key).image, (size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@st.cache_data(max_entries=16, show_spinner=False)
def decode_upload(digest: str, _data: bytes) -> DecodedImage:
    """An uploaded image, decoded once per distinct content. Raises ImageError (not cached)."""
    return decode_image(_data)


# ----- results ------------------------------------------------------------------------------------------
@st.cache_data(max_entries=32, show_spinner=False)
@threads.sized
def layer_table(image_sha: str, model_key: str, _explainer: Explainer, _image: DecodedImage) -> LayerTable:
    trace = _explainer.trace(_image)
    return LayerTable(
        spatial=tuple(trace.for_method("gradcam")),
        convolutions=tuple(trace.for_method("kernels")),
        defaults={method: trace.default_layer(method) for method in ("gradcam", "feature_maps", "kernels", "cam")},
        cam_reason=trace.cam_reason,
        not_maps=tuple(layer for layer in trace.layers if len(layer.shape) >= 2 and not layer.layout.is_map),
    )


@st.cache_data(max_entries=32, show_spinner=False)
@threads.sized
def refused_methods(image_sha: str, model_key: str, _explainer: Explainer, _image: DecodedImage) -> tuple[str, ...]:
    """The methods that refuse this model whatever the target (`Explainer.refusals`: the attention methods on a
    network without attention); Explore does not offer them."""
    return tuple(_explainer.refusals(_image))


@st.cache_data(max_entries=64, show_spinner=False)
@threads.sized
def predictions(
    image_sha: str, model_key: str, _explainer: Explainer, _image: DecodedImage, top_k: int = 5
) -> tuple[Prediction, ...]:
    return _explainer.predict(_image, top_k=top_k)


# A panel set is a few MB (feature maps and gradients); the Stories page adds many small ones (64–96 px pictures).
@st.cache_data(max_entries=64, show_spinner=False)
def explain(
    image_sha: str,
    model_key: str,
    layer: str | None,
    target: int | Target | None,
    methods: tuple[str, ...],
    options: tuple[tuple[str, tuple[tuple[str, object], ...]], ...],
    _load: Callable[[], Explainer],
    _image: DecodedImage,
    top_k: int = 5,
) -> Explanation:
    """The one way the dashboard gets an explanation: one cached engine call for a panel set. `options` is
    `freeze_options(...)` of {method: {setting: value}}; `_load` gives the model's explainer, and is called only
    when the result is not cached (a Compare row's model loads only when one of its cells is new). A set with a
    slow method (`Method.slow`: extra forward passes) is a slow job and waits its turn (`queued`); the rest, the
    recorded pass's maps, never wait."""
    slow = [METHODS[m].title for m in methods if m in METHODS and METHODS[m].slow]
    with queued(" and ".join(slow)) if slow else nullcontext(), threads.policy().computing():
        return _load().explain(
            _image,
            layer=layer,
            target=target,
            methods=list(methods),
            options={m: dict(o) for m, o in options},
            top_k=top_k,
        )


def method_options(method: str) -> dict[str, Mapping[str, object]]:
    """`options` for an `explain` of `method` alone with the dashboard's settings: the quick values its options
    declare (fewer samples than the engine's defaults, so a panel takes seconds on a CPU; captions say so)."""
    quick = METHODS[method].quick_options()
    return {method: quick} if quick else {}


@st.cache_data(max_entries=64, show_spinner=False)
@slow_job("the faithfulness score")
@threads.sized
def faithfulness(
    image_sha: str,
    model_key: str,
    layer: str | None,
    target: str,
    method: str,
    options: tuple[tuple[str, tuple[tuple[str, object], ...]], ...],
    _explainer: Explainer,
    _image: DecodedImage,
    _map: np.ndarray,
    _target: Target,
) -> Faithfulness:
    """Deletion, insertion and average drop of one method's (H, W) map. The map is not hashed: it is what
    `explain` gives for the other arguments (`target` is the explained target's label, `layer` the method's)."""
    return evaluate_map(_explainer.bundle, _image, _map, target=_target, steps=FAITHFULNESS_STEPS)


@st.cache_data(max_entries=16, show_spinner=False)  # a test is about 20 maps of 224×224 floats
@slow_job("the Sanity test")
@threads.sized
def randomisation(
    image_sha: str,
    model_key: str,
    layer: str | None,
    target: int | None,
    method: str,
    mode: Mode,
    _explainer: Explainer,
    _image: DecodedImage,
) -> tuple[RandomisationStep, ...]:
    """The model-parameter randomisation test for one method, with a progress bar while it runs.

    The bar is drawn inside this function on purpose: Streamlit replays what a cached function drew, and it can
    replay only elements created inside it. So a cache hit replays the bar being made, filled and removed."""
    title = METHODS[method].title
    bar = st.empty()
    bar.progress(0.0, text=f"{title}: the trained model's map first…")  # from the first second

    def progress(done: int, total: int, layer_name: str) -> None:
        done_text = f"randomised {layer_name}" if layer_name else "the trained model"
        bar.progress(done / total, text=f"{title}: {done_text} ({done} of {total} maps)")

    try:
        steps = randomisation_test(
            _explainer.bundle, _image, method, mode=mode, layer=layer, target=target, progress=progress
        )
    finally:
        bar.empty()
    return tuple(steps)


def freeze_options(
    options: Mapping[str, Mapping[str, object]],
) -> tuple[tuple[str, tuple[tuple[str, object], ...]], ...]:
    """{method: {setting: value}} -> a sorted tuple, hashable and stable as a cache key."""
    return tuple(sorted((method, tuple(sorted(settings.items()))) for method, settings in options.items()))


def clear_all() -> None:
    """Forget every cached model and result (tests)."""
    st.cache_data.clear()
    st.cache_resource.clear()


# ----- feature visualisation ----------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner=False)  # a gallery is a few small images
@slow_job("the channel gallery")
@threads.sized
def channel_gallery(
    model_key: str, layer: str, channels: tuple[int, ...], size: int, steps: int, seed: int, _explainer: Explainer
) -> tuple[FeatureVisResult, ...]:
    """What each of `channels` at `layer` responds to most: `featurevis.render_channels`, one seeded batch of
    `size`×`size` images optimised for `steps` steps. Raises EngineError (not cached).

    The progress bar is drawn inside on purpose: Streamlit replays only elements a cached function made itself,
    so a cache hit replays the bar being made, filled and removed — a few updates, not one per step."""
    bar = st.empty()
    bar.progress(0.0, text=f"Rendering {len(channels)} channels of {layer}: starting…")  # from the first second

    def progress(step: int, total: int) -> None:
        if step % 8 == 0 or step == total:
            bar.progress(step / total, text=f"Rendering {len(channels)} channels of {layer}: step {step} of {total}")

    try:
        return tuple(
            render_channels(
                _explainer.bundle, layer, list(channels), size=size, steps=steps, seed=seed, progress=progress
            )
        )
    finally:
        bar.empty()


# ----- uploads kept for shared links --------------------------------------------------------------------
class UploadStore:
    """The last good image uploads of every session, by sha256, so that a link naming an upload
    (`image=upload:<sha256>`) opens in another browser while the server still has it. Bounded by count and
    bytes, oldest out first; thread-safe (sessions run on their own threads). Only someone who has the link (or
    the picture itself) knows the digest that reads an entry."""

    def __init__(self, max_items: int = 16, max_bytes: int = 200 << 20) -> None:
        self._items: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_items, self.max_bytes = max_items, max_bytes

    def put(self, digest: str, name: str, data: bytes) -> None:
        with self._lock:
            self._items.pop(digest, None)
            self._items[digest] = (name, data)
            while len(self._items) > self.max_items or (
                len(self._items) > 1 and sum(len(d) for _, d in self._items.values()) > self.max_bytes
            ):
                self._items.popitem(last=False)

    def get(self, digest: str) -> tuple[str, bytes] | None:
        with self._lock:
            return self._items.get(digest)


@st.cache_resource(show_spinner=False)
def upload_store() -> UploadStore:
    """The server's one `UploadStore`."""
    return UploadStore()


# ----- the Stories page ---------------------------------------------------------------------------------
# Its models come from `registry_explainer` (shared across sessions); batch scoring runs the shared bundle
# (`ModelBundle.run`, its lock held per batch), so it never meets another session's hooks.
STORIES_DIR = Path(__file__).resolve().parent.parent / "assets" / "stories"
DEMO_WEIGHTS = "demo"
StoryTarget = (
    tuple[Literal["class"], int]  # a class index
    | tuple[Literal["segment"], int]  # a segmentation category
    | tuple[Literal["outputs"], tuple[int, ...] | None]  # the sum of regression outputs (None: all of them)
    | tuple[Literal["outputs"], tuple[int, ...] | None, str]  # ... and what they mean, in words
)


@dataclass(frozen=True)
class StoryPicture:
    key: str
    title: str
    path: Path
    truth: dict[str, Any]
    mask_path: Path | None = None


@st.cache_data(show_spinner=False)
def story_pictures(story: str) -> list[StoryPicture]:
    """The story's pictures in page order, from assets/stories/stories.json (written by scripts/train_demos.py)."""
    index = json.loads((STORIES_DIR / "stories.json").read_text())
    return [
        StoryPicture(
            e["key"],
            e["title"],
            STORIES_DIR / e["file"],
            e["truth"],
            STORIES_DIR / e["mask_file"] if e.get("mask_file") else None,
        )
        for e in index
        if e["story"] == story
    ]


@st.cache_data(show_spinner=False)
def story_image(path: str) -> DecodedImage:
    return decode_image(path)


@st.cache_data(show_spinner=False)
def story_mask(path: str) -> np.ndarray:
    """A story picture's true mask, (H, W) bool."""
    return np.asarray(decode_image(path).image)[:, :, 0] > 127


def _story_target(key: StoryTarget, names: tuple[str, ...]) -> Target:
    if key[0] == "class":
        return ClassTarget(key[1], names[key[1]])
    if key[0] == "segment":
        return SegmentationTarget(key[1], name=names[key[1]])
    return RegressionTarget(key[1], name=key[2] if len(key) > 2 else "")


def story_explanation(
    path: str, model: str, target: StoryTarget, layer: str | None = None, methods: tuple[str, ...] = ("gradcam",)
) -> Explanation:
    """A demo model's explanation of a story picture, through the dashboard's one cached path (`explain`)."""
    explainer = registry_explainer(model, DEMO_WEIGHTS)
    names, image = explainer.bundle.class_names, story_image(path)
    return explain(
        image.sha256,
        f"{model}:{DEMO_WEIGHTS}",
        layer,
        _story_target(target, names),
        tuple(methods),
        (),
        lambda: explainer,
        image,
        top_k=len(names),
    )


@st.cache_data(max_entries=32, show_spinner=False)
def story_probabilities(path: str, model: str) -> dict[str, float]:
    """Every class or output's probability for a story picture, by name."""
    explainer = registry_explainer(model, DEMO_WEIGHTS)
    names = explainer.bundle.output_names or explainer.bundle.class_names
    return {p.name: p.probability for p in explainer.predict(story_image(path), top_k=len(names))}


@st.cache_data(max_entries=16, show_spinner=False)
def salt_prediction(path: str) -> np.ndarray:
    """The salt U-Net's salt pixels on a story picture, (H, W) bool."""
    bundle = registry_explainer("salt_unet", DEMO_WEIGHTS).bundle
    return readout.segment(bundle, story_image(path).image) == 1


@st.cache_data(max_entries=16, show_spinner=False)
def robot_answers(path: str) -> np.ndarray:
    """The robot's 25 obstacle probabilities on a story picture."""
    bundle = registry_explainer("robot_perception", DEMO_WEIGHTS).bundle
    return readout.output_probabilities(bundle, story_image(path).image)


@st.cache_data(show_spinner=False)
def tank_scores(count: int = 200) -> dict[str, dict[str, float]]:
    """Each tank net's accuracy on `count` freshly drawn photos under each light rule."""
    scores = {}
    for model in ("tanks_shortcut", "tanks_clean"):
        bundle = registry_explainer(model, DEMO_WEIGHTS).bundle
        rules = ("shortcut", "clean", "reversed")
        scores[model] = {rule: evaluation.tank_accuracy(bundle, rule, count=count) for rule in rules}
    return scores


@st.cache_data(show_spinner=False)
def tank_cam_shares() -> dict[str, float]:
    """Each tank net's mean share of Grad-CAM ("tank") inside the tank's box, over 40 fresh tank photos."""
    return {
        model: evaluation.tank_cam_share(registry_explainer(model, DEMO_WEIGHTS).bundle).mean
        for model in ("tanks_shortcut", "tanks_clean")
    }


@st.cache_data(show_spinner=False)
def salt_iou() -> float:
    """The U-Net's overlap with the truth on 100 new sections."""
    return evaluation.salt_iou(registry_explainer("salt_unet", DEMO_WEIGHTS).bundle, count=100)


@st.cache_data(show_spinner=False)
def salt_cam_share(layer: str) -> float:
    """The share of the "salt" Grad-CAM at `layer` inside the predicted salt, on 16 new sections."""
    return evaluation.salt_cam_share(registry_explainer("salt_unet", DEMO_WEIGHTS).bundle, count=16, layer=layer).mean


@st.cache_data(show_spinner=False)
def robot_scores() -> dict[str, float]:
    bundle = registry_explainer("robot_perception", DEMO_WEIGHTS).bundle
    return {**evaluation.robot_scores(bundle, count=200), **evaluation.robot_failures(bundle, count=60)}
