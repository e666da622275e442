"""What the Stories page draws from the demo models' answers: enlarged pictures, mask and Grad-CAM overlays,
maps on one colour scale, the robot's answer grid and its output groups. Its cached pictures, answers and
scores are `story_data`'s (`story_*`, `*_scores`), its widget keys `state`'s.
"""

from __future__ import annotations

import cv2
import numpy as np
import plotly.graph_objects as go

from cnnvis_engine import Explanation
from cnnvis_engine.demos.floor_views import DIRECTIONS, DISTANCES, ROBOT_OUTPUT_NAMES, output_index
from cnnvis_engine.render import render_overlay
from cnnvis_engine.stories import readout

from . import story_data

DISPLAY_SIDE = 256  # story pictures are 64 or 96 px; shown enlarged
# The robot's Grad-CAM layer: at the last block (`features`) Grad-CAM is empty for this net, because the dense
# layer after it weighs every position differently and each channel's average gradient comes out negative.
ROBOT_LAYER = "features.2"


def picture(story: str, key: str) -> story_data.StoryPicture:
    return next(p for p in story_data.story_pictures(story) if p.key == key)


def enlarge(image: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """Nearest-neighbour enlargement, so every model pixel stays visible as a square."""
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST)


def image_array(p: story_data.StoryPicture) -> np.ndarray:
    return np.asarray(story_data.story_image(str(p.path)).image)


def map_share(values: np.ndarray, region: np.ndarray) -> float:
    return readout.mask_share(values, region)


def box_region(shape: tuple[int, int], box: list[int]) -> np.ndarray:
    region = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    region[y0:y1, x0:x1] = True
    return region


def gradcam_overlay(
    ex: Explanation,
    opacity: float = 0.5,
    box: list[int] | None = None,
    method: str = "gradcam",
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Grad-CAM (or `method`) over the picture, enlarged; the tank's box drawn in white if given. `values`: the map
    to draw instead of the method's own (e.g. on a scale shared with other maps)."""
    picture = enlarge(render_overlay(ex.image, ex[method].arrays()[0] if values is None else values, "jet", opacity))
    if box is not None:
        scale = DISPLAY_SIDE / ex.image.shape[1]
        x0, y0, x1, y1 = (round(v * scale) for v in box)
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 2)
    return picture


def side_by_side_on_one_scale(explanations: list[Explanation], method: str = "gradcam", gap: int = 8) -> np.ndarray:
    """The maps of several explanations on one colour scale (their raw values over the common peak), so a
    weak map stays dark instead of being stretched; enlarged and laid side by side on white."""
    maps = [
        cv2.resize(ex[method].arrays()[1].astype(np.float32), ex.image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        for ex in explanations
    ]
    peak = max(float(m.max()) for m in maps) or 1.0
    pictures = [
        enlarge(render_overlay(ex.image, np.clip(m / peak, 0, 1), "jet", 0.5)) for ex, m in zip(explanations, maps)
    ]
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
    grid = np.array([[answers[output_index(c, r)] for c in range(len(DIRECTIONS))] for r in range(len(DISTANCES))])[
        ::-1
    ]
    rows = list(DISTANCES)[::-1]
    fig = go.Figure(
        go.Heatmap(
            z=grid,
            x=list(DIRECTIONS),
            y=rows,
            zmin=0,
            zmax=1,
            colorscale="Reds",
            showscale=False,
            text=[[f"{v:.0%}" for v in row] for row in grid],
            texttemplate="%{text}",
            hovertemplate="%{x} / %{y}: %{z:.1%}<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    for name in truth:
        index = ROBOT_OUTPUT_NAMES.index(name)
        r, c = divmod(index, len(DIRECTIONS))
        y = len(DISTANCES) - 1 - r
        fig.add_shape(
            type="rect", x0=c - 0.5, x1=c + 0.5, y0=y - 0.5, y1=y + 0.5, line={"color": "#1a9850", "width": 4}
        )
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
