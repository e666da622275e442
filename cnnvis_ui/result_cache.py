"""The dashboard's cached results: decoded images, traces, predictions, explanations, the checks on explanations
(faithfulness scores, the randomisation test) and feature visualisations.

Results live in `st.cache_data`, keyed by plain values — the image's sha256, the model key, layer, target, methods
and their options — while the image and the explainer travel as `_underscored` arguments that are not hashed.
Display settings (colormap, opacity) never reach this module, so changing them only redraws.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image, ImageOps

from cnnvis_engine import (
    METHODS,
    DecodedImage,
    Explainer,
    Explanation,
    LayerInfo,
    Prediction,
    Target,
    decode_image,
    sample_path,
)
from cnnvis_engine.faithfulness import Faithfulness, evaluate_map
from cnnvis_engine.featurevis import FeatureVisResult, render_channels
from cnnvis_engine.methods import default_layer, layers_for
from cnnvis_engine.sanity import Mode, RandomisationStep, randomisation_test

from . import threads
from .slow_jobs import queued, slow_job

FAITHFULNESS_STEPS = 25  # deletion/insertion in 4% shares: 2 × 26 forward passes per map


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
        spatial=tuple(layers_for(trace, "gradcam")),
        convolutions=tuple(layers_for(trace, "kernels")),
        defaults={method: default_layer(trace, method) for method in ("gradcam", "feature_maps", "kernels", "cam")},
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
