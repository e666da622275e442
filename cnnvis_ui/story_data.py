"""The Stories page's data: its pictures and true masks, the demo models' explanations and answers on them, and
the scores on freshly drawn data (all cached)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import streamlit as st

from cnnvis_engine import (
    ClassTarget,
    DecodedImage,
    Explanation,
    RegressionTarget,
    SegmentationTarget,
    Target,
    decode_image,
)
from cnnvis_engine.demos.tank_scenes import LightRule
from cnnvis_engine.stories import evaluation, readout

from . import model_cache, result_cache

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
    match key:
        case ("class", int(index)):
            return ClassTarget(index, names[index])
        case ("segment", int(category)):
            return SegmentationTarget(category, name=names[category])
        case ("outputs", outputs):
            return RegressionTarget(outputs)
        case ("outputs", outputs, str(label)):
            return RegressionTarget(outputs, name=label)


def story_explanation(
    path: str, model: str, target: StoryTarget, layer: str | None = None, methods: tuple[str, ...] = ("gradcam",)
) -> Explanation:
    """A demo model's explanation of a story picture, through the dashboard's one cached path (`explain`)."""
    explainer = model_cache.registry_explainer(model, DEMO_WEIGHTS)
    names, image = explainer.bundle.class_names, story_image(path)
    return result_cache.explain(
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
    explainer = model_cache.registry_explainer(model, DEMO_WEIGHTS)
    names = explainer.bundle.output_names or explainer.bundle.class_names
    return {p.name: p.probability for p in explainer.predict(story_image(path), top_k=len(names))}


@st.cache_data(max_entries=16, show_spinner=False)
def salt_prediction(path: str) -> np.ndarray:
    """The salt U-Net's salt pixels on a story picture, (H, W) bool."""
    bundle = model_cache.registry_explainer("salt_unet", DEMO_WEIGHTS).bundle
    return readout.segment(bundle, story_image(path).image) == 1


@st.cache_data(max_entries=16, show_spinner=False)
def robot_answers(path: str) -> np.ndarray:
    """The robot's 25 obstacle probabilities on a story picture."""
    bundle = model_cache.registry_explainer("robot_perception", DEMO_WEIGHTS).bundle
    return readout.output_probabilities(bundle, story_image(path).image)


@st.cache_data(show_spinner=False)
def tank_scores(count: int = 200) -> dict[str, dict[str, float]]:
    """Each tank net's accuracy on `count` freshly drawn photos under each light rule."""
    scores: dict[str, dict[str, float]] = {}
    for model in ("tanks_shortcut", "tanks_clean"):
        bundle = model_cache.registry_explainer(model, DEMO_WEIGHTS).bundle
        rules: tuple[LightRule, ...] = ("shortcut", "clean", "reversed")
        scores[model] = {rule: evaluation.tank_accuracy(bundle, rule, count=count) for rule in rules}
    return scores


@st.cache_data(show_spinner=False)
def tank_cam_shares() -> dict[str, float]:
    """Each tank net's mean share of Grad-CAM ("tank") inside the tank's box, over 40 fresh tank photos."""
    return {
        model: evaluation.tank_cam_share(model_cache.registry_explainer(model, DEMO_WEIGHTS).bundle).mean
        for model in ("tanks_shortcut", "tanks_clean")
    }


@st.cache_data(show_spinner=False)
def salt_iou() -> float:
    """The U-Net's overlap with the truth on 100 new sections."""
    return evaluation.salt_iou(model_cache.registry_explainer("salt_unet", DEMO_WEIGHTS).bundle, count=100)


@st.cache_data(show_spinner=False)
def salt_cam_share(layer: str) -> float:
    """The share of the "salt" Grad-CAM at `layer` inside the predicted salt, on 16 new sections."""
    return evaluation.salt_cam_share(
        model_cache.registry_explainer("salt_unet", DEMO_WEIGHTS).bundle, count=16, layer=layer
    ).mean


@st.cache_data(show_spinner=False)
def robot_scores() -> dict[str, float]:
    bundle = model_cache.registry_explainer("robot_perception", DEMO_WEIGHTS).bundle
    return {**evaluation.robot_scores(bundle, count=200), **evaluation.robot_failures(bundle, count=60)}
