"""Cached helpers for the Stories page: the story pictures, the demo models' answers and explanations on them,
fresh-data scores, and the small pictures the page shows (mask overlays, Grad-CAM overlays, answer grids).

Models come from `compute.registry_explainer` (shared across sessions). Batch scoring runs the shared bundle
(`ModelBundle.run`, its lock held per batch), so it never meets another session's hooks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from cnnvis_engine import ClassTarget, DecodedImage, Explanation, RegressionTarget, SegmentationTarget, decode_image
from cnnvis_engine.stories import evaluation, readout
from cnnvis_engine.demos.floor_views import DIRECTIONS, DISTANCES, ROBOT_OUTPUT_NAMES, output_index
from cnnvis_engine.render import render_overlay

from . import compute

STORIES_DIR = Path(__file__).resolve().parent.parent / "assets" / "stories"
DEMO_WEIGHTS = "demo"
DISPLAY_SIDE = 256  # story pictures are 64 or 96 px; shown enlarged
# Session-state keys of the page's widgets.
STORY = "stories_story"
TANK_PICTURE = "stories_tank_picture"
SALT_PICTURE = "stories_salt_picture"
SALT_LAYER = "stories_salt_layer"
ROBOT_PICTURE = "stories_robot_picture"
ROBOT_GROUP = "stories_robot_group"
ROBOT_DIRECTION = "stories_robot_direction"
ROBOT_DISTANCE = "stories_robot_distance"
# The robot's Grad-CAM layer: at the last block (`features`) Grad-CAM is empty for this net, because the dense
# layer after it weighs every position differently and each channel's average gradient comes out negative.
ROBOT_LAYER = "features.2"
TargetKey = tuple  # ("class", index) | ("segment", category) | ("outputs", indices or None)


@dataclass(frozen=True)
class Picture:
    key: str
    title: str
    path: Path
    truth: dict[str, Any]
    mask_path: Path | None = None


# ----- pictures ----------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False)
def pictures(story: str) -> list[Picture]:
    """The story's pictures in page order, from assets/stories/stories.json (written by scripts/train_demos.py)."""
    index = json.loads((STORIES_DIR / "stories.json").read_text())
    return [
        Picture(e["key"], e["title"], STORIES_DIR / e["file"], e["truth"],
                STORIES_DIR / e["mask_file"] if e.get("mask_file") else None)
        for e in index if e["story"] == story
    ]


def picture(story: str, key: str) -> Picture:
    return next(p for p in pictures(story) if p.key == key)


@st.cache_data(show_spinner=False)
def decoded(path: str) -> DecodedImage:
    return decode_image(path)


@st.cache_data(show_spinner=False)
def true_mask(path: str) -> np.ndarray:
    return np.asarray(decode_image(path).image)[:, :, 0] > 127


def enlarge(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Nearest-neighbour enlargement, so every model pixel stays visible as a square."""
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST)


def image_array(p: Picture) -> np.ndarray:
    return np.asarray(decoded(str(p.path)).image)


# ----- model answers -----------------------------------------------------------------------------------------
def _target(key: TargetKey, names: tuple[str, ...]):
    kind, value = key[0], key[1]
    if kind == "class":
        return ClassTarget(value, names[value])
    if kind == "segment":
        return SegmentationTarget(value, name=names[value])
    return RegressionTarget(value, name=key[2] if len(key) > 2 else "")


@st.cache_data(max_entries=96, show_spinner=False)
def explanation(path: str, model: str, target: TargetKey, layer: str | None = None, methods: tuple[str, ...] = ("gradcam",)) -> Explanation:
    """One cached engine call on a story picture with a demo model."""
    explainer = compute.registry_explainer(model, DEMO_WEIGHTS)
    return explainer.explain(decoded(path), layer=layer, target=_target(target, explainer.bundle.class_names),
                             methods=list(methods), top_k=len(explainer.bundle.class_names))


@st.cache_data(max_entries=32, show_spinner=False)
def probabilities(path: str, model: str) -> dict[str, float]:
    """Every class or output's probability for a story picture, by name."""
    explainer = compute.registry_explainer(model, DEMO_WEIGHTS)
    names = explainer.bundle.output_names or explainer.bundle.class_names
    return {p.name: p.probability for p in explainer.predict(decoded(path), top_k=len(names))}


@st.cache_data(max_entries=16, show_spinner=False)
def salt_prediction(path: str) -> np.ndarray:
    bundle = compute.registry_explainer("salt_unet", DEMO_WEIGHTS).bundle
    return readout.segment(bundle, decoded(path).image) == 1


@st.cache_data(max_entries=16, show_spinner=False)
def robot_answers(path: str) -> np.ndarray:
    bundle = compute.registry_explainer("robot_perception", DEMO_WEIGHTS).bundle
    return readout.output_probabilities(bundle, decoded(path).image)


# ----- scores on fresh data ----------------------------------------------------------------------------------
@st.cache_data(show_spinner=False)
def tank_scores(count: int = 200) -> dict[str, dict[str, float]]:
    """Each tank net's accuracy on `count` freshly drawn photos under each light rule."""
    scores = {}
    for model in ("tanks_shortcut", "tanks_clean"):
        bundle = compute.registry_explainer(model, DEMO_WEIGHTS).bundle
        scores[model] = {rule: evaluation.tank_accuracy(bundle, rule, count=count) for rule in ("shortcut", "clean", "reversed")}
    return scores


@st.cache_data(show_spinner=False)
def tank_cam_shares() -> dict[str, float]:
    """Each tank net's mean share of Grad-CAM ("tank") inside the tank's box, over 40 fresh tank photos."""
    return {
        model: evaluation.tank_cam_share(compute.registry_explainer(model, DEMO_WEIGHTS).bundle).mean
        for model in ("tanks_shortcut", "tanks_clean")
    }


@st.cache_data(show_spinner=False)
def salt_scores() -> dict[str, float]:
    bundle = compute.registry_explainer("salt_unet", DEMO_WEIGHTS).bundle
    iou = evaluation.salt_iou(bundle, count=100)
    return {"iou": iou, "cam_share": evaluation.salt_cam_share(bundle, count=16).mean}


@st.cache_data(show_spinner=False)
def robot_scores() -> dict[str, float]:
    bundle = compute.registry_explainer("robot_perception", DEMO_WEIGHTS).bundle
    return {**evaluation.robot_scores(bundle, count=200), **evaluation.robot_failures(bundle, count=60)}


# ----- what the page shows -----------------------------------------------------------------------------------
def map_share(values: np.ndarray, region: np.ndarray) -> float:
    return readout.mask_share(values, region)


def box_region(shape: tuple[int, int], box: list[int]) -> np.ndarray:
    region = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    region[y0:y1, x0:x1] = True
    return region


def gradcam_overlay(ex: Explanation, opacity: float = 0.5, box: list[int] | None = None, method: str = "gradcam") -> np.ndarray:
    """Grad-CAM (or `method`) over the picture, enlarged; the tank's box drawn in white if given."""
    picture = enlarge(render_overlay(ex.image, ex[method].map, "jet", opacity))
    if box is not None:
        scale = DISPLAY_SIDE / ex.image.shape[1]
        x0, y0, x1, y1 = (int(round(v * scale)) for v in box)
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 2)
    return picture


def side_by_side_on_one_scale(explanations: list[Explanation], method: str = "gradcam", gap: int = 8) -> np.ndarray:
    """The maps of several explanations on one colour scale (their raw values over the common peak), so a
    weak map stays dark instead of being stretched; enlarged and laid side by side on white."""
    maps = [cv2.resize(ex[method].raw.astype(np.float32), ex.image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
            for ex in explanations]
    peak = max(float(m.max()) for m in maps) or 1.0
    pictures = [enlarge(render_overlay(ex.image, np.clip(m / peak, 0, 1), "jet", 0.5)) for ex, m in zip(explanations, maps)]
    spacer = np.full((DISPLAY_SIDE, gap, 3), 255, np.uint8)
    return np.hstack([part for picture in pictures for part in (picture, spacer)][:-1])


def first_direction(truth: list[str]) -> int:
    """The direction of the picture's first true obstacle (0 if none), for the direction picker's default."""
    return DIRECTIONS.index(truth[0].split(" / ")[0]) if truth else 0


def mask_overlay(image: np.ndarray, predicted: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    """Predicted salt tinted red over the section, enlarged; the true outline in yellow if given."""
    tinted = image.astype(np.float32)
    tinted[predicted] = 0.5 * tinted[predicted] + 0.5 * np.array([230, 40, 40])
    picture = enlarge(tinted.round().astype(np.uint8))
    if truth is not None:
        big = cv2.resize(truth.astype(np.uint8), picture.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(picture, contours, -1, (255, 220, 0), 2)
    return picture


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def answer_grid(answers: np.ndarray, truth: list[str], height: int = 300) -> go.Figure:
    """The 25 obstacle outputs as the robot's floor plan: far at the top, near at the bottom, left to right;
    each cell shows its probability; true obstacles are outlined in green."""
    grid = np.array([[answers[output_index(c, r)] for c in range(len(DIRECTIONS))] for r in range(len(DISTANCES))])[::-1]
    rows = list(DISTANCES)[::-1]
    fig = go.Figure(go.Heatmap(
        z=grid, x=list(DIRECTIONS), y=rows, zmin=0, zmax=1, colorscale="Reds", showscale=False,
        text=[[f"{v:.0%}" for v in row] for row in grid], texttemplate="%{text}",
        hovertemplate="%{x} / %{y}: %{z:.1%}<extra></extra>", xgap=2, ygap=2,
    ))
    for name in truth:
        index = ROBOT_OUTPUT_NAMES.index(name)
        r, c = divmod(index, len(DIRECTIONS))
        y = len(DISTANCES) - 1 - r
        fig.add_shape(type="rect", x0=c - 0.5, x1=c + 0.5, y0=y - 0.5, y1=y + 0.5, line={"color": "#1a9850", "width": 4})
    fig.update_yaxes(autorange="reversed", fixedrange=True)
    fig.update_xaxes(side="top", fixedrange=True)
    fig.update_layout(height=height, margin={"l": 0, "r": 0, "t": 30, "b": 0}, dragmode=False)
    return fig


def reported(answers: np.ndarray) -> tuple[int, ...]:
    """The outputs the robot switched on (sigmoid > 0.5)."""
    return tuple(int(i) for i in np.flatnonzero(answers > 0.5))


def group_outputs(kind: str, direction: str, distance: str, answers: np.ndarray) -> tuple[tuple[int, ...] | None, str]:
    """The outputs a Grad-CAM group stands for, and its label."""
    if kind == "direction":
        c = DIRECTIONS.index(direction)
        return tuple(output_index(c, r) for r in range(len(DISTANCES))), f"everything {direction}"
    if kind == "distance":
        r = DISTANCES.index(distance)
        return tuple(output_index(c, r) for c in range(len(DIRECTIONS))), f"everything {distance}"
    if kind == "reported":
        on = reported(answers)
        return (on or None), ("the outputs it switched on" if on else "all outputs (it switched none on)")
    return None, "all 25 outputs"
