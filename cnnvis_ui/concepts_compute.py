"""The Concepts page's cached engine calls: the concepts of a picture (channels or groups, of the whole picture or a
box), the sub-concepts of one concept, what its channels look for (the Layers page's gallery, cheap settings), and
the reference pictures each channel fires on most (`cnnvis_engine.concepts.reference_index` over the sample photos,
built once per model and layer and kept); and the tanks story's "which concepts?" (`stories.concepts`).

As in `compute`: results are keyed by plain values (the image's sha256, the model key, layer, target, box), the
explainer and the image travel unhashed; an EngineError is raised, never cached.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

from cnnvis_engine import DecodedImage, EngineError, Explainer
from cnnvis_engine.concepts import ConceptResult
from cnnvis_engine.concepts.reference import reference_index
from cnnvis_engine.concepts.reference_tops import ConceptsError, ReferenceIndex
from cnnvis_engine.stories.concepts import ConceptPlaces, tank_concept_places

from . import concepts_view, model_cache, result_cache, slow_jobs, story_data, threads

GROUPS = 6  # groups of channels, when the page shows groups (Deep Feature Factorization)
TOP = concepts_view.CARDS
# What a card's channel looks for: 64 px, 32 steps, all cards' channels as one batch (the Layers gallery at half its
# steps). Measured on this 2-core CPU with efficientnet_lite0's bn2: see the report of the branch that added it.
FEATURE_SIZE, FEATURE_STEPS, FEATURE_SEED = 64, 32, 0
REFERENCE = "samples"  # the reference set: the sample photos
REFERENCE_TOP = 3  # crops per card


@st.cache_data(max_entries=32, show_spinner=False)
@threads.sized
def concepts(
    image_sha: str,
    model_key: str,
    layer: str | None,
    target: int | None,
    box: tuple[float, float, float, float] | None,
    groups: int | None,
    _explainer: Explainer,
    _image: DecodedImage,
) -> ConceptResult:
    """`Explainer.concepts` of the picture: the top concepts of `layer` (None: the CAM layer or the last block) for
    class `target` (None: the top-1), of the pixel `box` (None: the whole picture), as channels or `groups`."""
    return _explainer.concepts(_image, layer=layer, target=target, top=TOP, region=box, groups=groups)


@st.cache_data(max_entries=16, show_spinner=False)
@threads.sized
def sub_concepts(
    image_sha: str,
    model_key: str,
    layer: str,
    channel: int,
    lower: str,
    target: int | None,
    _explainer: Explainer,
    _image: DecodedImage,
) -> ConceptResult:
    """The channels of `lower` that `channel` of `layer` draws on (`Explainer.sub_concepts`)."""
    return _explainer.sub_concepts(_image, layer, channel, lower, target=target, top=TOP)


def features(model_key: str, layer: str, channels: Sequence[int], explainer: Explainer) -> dict[int, np.ndarray]:
    """What each channel looks for, (64, 64, 3) uint8 by channel: the Layers page's cached gallery."""
    if not channels:
        return {}
    ordered = tuple(sorted({int(c) for c in channels}))
    gallery = result_cache.channel_gallery(
        model_key, layer, ordered, FEATURE_SIZE, FEATURE_STEPS, FEATURE_SEED, explainer
    )
    return {channel: result.images[0] for channel, result in zip(ordered, gallery)}


@st.cache_resource(max_entries=4, show_spinner=False)
@slow_jobs.slow_job("the reference photos")
@threads.sized
def reference(model_key: str, layer: str, _explainer: Explainer) -> ReferenceIndex:
    """The reference index of the sample photos at `layer` (`reference_index`; its Parquet file makes a second
    server start cost nothing). Kept as a resource: it holds the reference set it reads crops from."""
    return reference_index(_explainer.bundle, REFERENCE, [layer], top=REFERENCE_TOP)


@st.cache_data(max_entries=32, show_spinner=False)
@threads.sized
def crops(
    model_key: str, layer: str, channels: tuple[int, ...], _explainer: Explainer
) -> dict[int, tuple[tuple[np.ndarray, ...], tuple[str, ...]]]:
    """Per channel, its top reference pictures by activation, each cropped to the channel's receptive field around
    where it fired most, and their names."""
    index = reference(model_key, layer, _explainer)
    if index.reference is None:  # `reference_index` always keeps them; an index read back alone would not
        raise ConceptsError("The reference pictures themselves are not at hand, so their crops cannot be shown.")
    pictures_set, bundle = index.reference, _explainer.bundle
    seen: dict[int, np.ndarray] = {}
    found = {}
    for channel in channels:
        pictures, names = [], []
        for top in index.top(layer, channel, by="activation")[:REFERENCE_TOP]:
            if top.image not in seen:
                _, displays, _ = bundle.batch([pictures_set.load(top.image)])
                seen[top.image] = np.asarray(displays[0])
            pictures.append(concepts_view.crop(seen[top.image], top.box))
            names.append(index.names[top.image])
        found[channel] = (tuple(pictures), tuple(names))
    return found


def crops_or_reason(
    model_key: str, layer: str, channels: Sequence[int], explainer: Explainer
) -> tuple[dict[int, tuple[tuple[np.ndarray, ...], tuple[str, ...]]], str]:
    """`crops`, or no crops and the engine's sentence why (a model that runs in a worker cannot be indexed)."""
    try:
        return crops(model_key, layer, tuple(sorted({int(c) for c in channels})), explainer), ""
    except EngineError as error:
        return {}, str(error)


@st.cache_data(max_entries=4, show_spinner=False)
@threads.sized
def story_concepts(model: str) -> tuple[ConceptPlaces, tuple[np.ndarray, ...]]:
    """A tank detector's top concept for "tank" and where its reference crops lie (`stories.concepts`), with the
    crops themselves (CROP_SIDE px each)."""
    bundle = model_cache.registry_explainer(model, story_data.DEMO_WEIGHTS).bundle
    places = tank_concept_places(bundle)
    pictures = tuple(concepts_view.crop(places.data.images[top.image], top.box) for top in places.crops)
    return places, pictures
