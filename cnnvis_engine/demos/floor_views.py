"""Synthetic camera views for a robot's obstacle perception: a tiled floor in perspective, a wall, and boxes
and cylinders at several distances and angles.

The camera is a pinhole 1 m above the floor looking level, 80° wide. A floor point X metres to the right and Z
metres ahead appears at u = cx + f·X/Z, v = horizon + f·h/Z. The labels form a grid of 5 directions × 5
distances (`ROBOT_OUTPUT_NAMES`, index = distance · 5 + direction): a cell is 1 when an obstacle stands there.

Training views never contain the article's two failure cases, which `draw_floor_view` can add on request: an
obstacle painted the colour of the floor (`camouflaged`), and a strong shadow with no obstacle (`shadow`).
Obstacles in training views do cast small contact shadows, as real ones do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

DIRECTIONS = ("far left", "left", "ahead", "right", "far right")
DISTANCES = ("very near", "near", "middle", "far", "very far")
DIRECTION_EDGES_DEG = (-40.0, -24.0, -8.0, 8.0, 24.0, 40.0)
DISTANCE_EDGES_M = (1.0, 1.5, 2.2, 3.2, 4.6, 6.5)
ROBOT_OUTPUT_NAMES = tuple(f"{direction} / {distance}" for distance in DISTANCES for direction in DIRECTIONS)
CAMERA_HEIGHT_M = 1.0
FIELD_OF_VIEW_DEG = 80.0
HORIZON = 0.28  # fraction of the image height
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class Obstacle:
    direction: int  # 0..4, left to right
    distance: int  # 0..4, near to far
    x: float  # metres right of the camera axis (centre of the footprint)
    z: float  # metres ahead
    width: float
    height: float
    shape: str  # "box" or "cylinder"
    colour: tuple[float, float, float]

    @property
    def output(self) -> int:
        return self.distance * len(DIRECTIONS) + self.direction


@dataclass(frozen=True)
class FloorView:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (25,) float32, 1 where an obstacle stands
    obstacles: tuple[Obstacle, ...]
    shadow: bool = False
    camouflaged: bool = False


@dataclass(frozen=True)
class FloorDataset:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N, 25) float32


def output_index(direction: int, distance: int) -> int:
    return distance * len(DIRECTIONS) + direction


def draw_floor_view(
    rng: np.random.Generator,
    *,
    size: int = 96,
    obstacles: int | None = None,
    camouflaged: bool = False,
    shadow: bool = False,
) -> FloorView:
    """One view. `obstacles` (default 0-3 at random) are placed in distinct cells without hiding each other;
    `camouflaged` paints the nearest one with the floor's colour; `shadow` lays a dark shadow on the floor."""
    big = size * _SUPERSAMPLE
    focal = big / 2 / math.tan(math.radians(FIELD_OF_VIEW_DEG / 2))
    horizon = HORIZON * big
    floor_colour, canvas = _room(rng, big, focal, horizon)
    count = int(rng.choice([0, 1, 1, 2, 2, 3, 3])) if obstacles is None else obstacles
    placed = _place(rng, count, big, focal, horizon)
    if camouflaged and placed:
        nearest = min(range(len(placed)), key=lambda i: placed[i].z)
        tone = floor_colour * rng.uniform(0.95, 1.05)
        placed[nearest] = Obstacle(**{**placed[nearest].__dict__, "colour": tuple(float(c) for c in tone)})
    if shadow:
        _shadow(canvas, rng, big, horizon)
    for obstacle in sorted(placed, key=lambda o: -o.z):  # far ones first
        _contact_shadow(canvas, obstacle, big, focal, horizon)
        _draw(canvas, obstacle, big, focal, horizon)
    canvas += rng.normal(0, 2.5, canvas.shape).astype(np.float32)
    image = cv2.resize(np.clip(canvas, 0, 255), (size, size), interpolation=cv2.INTER_AREA).round().astype(np.uint8)
    labels = np.zeros(len(ROBOT_OUTPUT_NAMES), np.float32)
    for obstacle in placed:
        labels[obstacle.output] = 1
    return FloorView(image=image, labels=labels, obstacles=tuple(placed), shadow=shadow, camouflaged=camouflaged)


def floor_dataset(count: int, seed: int, *, size: int = 96) -> FloorDataset:
    views = [draw_floor_view(np.random.default_rng([seed, i]), size=size) for i in range(count)]
    return FloorDataset(images=np.stack([v.image for v in views]), labels=np.stack([v.labels for v in views]))


# ----- the room ---------------------------------------------------------------------------------------------
_FLOORS = ((190, 170, 140), (150, 110, 75), (175, 175, 170), (120, 125, 130), (200, 195, 180), (160, 140, 120))


def _room(rng: np.random.Generator, big: int, focal: float, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """A wall above the horizon and a tiled floor below; returns the floor's base colour and the canvas."""
    base = np.array(_FLOORS[rng.integers(0, len(_FLOORS))], np.float32) * rng.uniform(0.85, 1.1)
    wall = np.array([rng.uniform(170, 235), rng.uniform(165, 230), rng.uniform(150, 225)], np.float32)
    canvas = np.empty((big, big, 3), np.float32)
    top = math.ceil(horizon)
    canvas[:top] = wall * np.linspace(0.9, 1.0, top)[:, None, None]
    v = np.arange(top, big)[:, None] + 0.5 - horizon
    u = np.arange(big)[None, :] + 0.5 - big / 2
    z = focal * CAMERA_HEIGHT_M / v
    x = u * z / focal
    tile = rng.uniform(0.4, 0.8)
    angle = rng.uniform(-0.5, 0.5)
    xr, zr = x * math.cos(angle) - z * math.sin(angle), x * math.sin(angle) + z * math.cos(angle)
    checker = (np.floor(xr / tile) + np.floor(zr / tile)) % 2
    contrast = rng.uniform(0.02, 0.10)
    grout = (np.abs(xr / tile - np.round(xr / tile)) < 0.03) | (np.abs(zr / tile - np.round(zr / tile)) < 0.03)
    shade = 1 + contrast * (checker - 0.5) - 0.08 * grout * (z < 4)
    shade *= 1 - 0.10 * np.clip(z / 8, 0, 1)  # a little darker far away
    canvas[top:] = base * shade[:, :, None]
    canvas[top - 1 : top + 1] *= 0.8  # the skirting line
    return base, canvas


def _place(rng: np.random.Generator, count: int, big: int, focal: float, horizon: float) -> list[Obstacle]:
    placed: list[Obstacle] = []
    boxes: list[tuple[float, float, float, float]] = []
    for _ in range(count * 20):
        if len(placed) == count:
            break
        direction, distance = int(rng.integers(0, 5)), int(rng.integers(0, 5))
        if any(o.direction == direction and o.distance == distance for o in placed):
            continue
        angle = math.radians(
            rng.uniform(DIRECTION_EDGES_DEG[direction] + 1.5, DIRECTION_EDGES_DEG[direction + 1] - 1.5)
        )
        z = rng.uniform(DISTANCE_EDGES_M[distance] + 0.05, DISTANCE_EDGES_M[distance + 1] - 0.05)
        width = rng.uniform(0.35, 0.7)
        height = rng.uniform(0.3, 0.8)
        obstacle = Obstacle(
            direction,
            distance,
            z * math.tan(angle),
            z,
            width,
            height,
            "box" if rng.random() < 0.5 else "cylinder",
            _obstacle_colour(rng),
        )
        rect = _screen_rect(obstacle, big, focal, horizon)
        if any(_overlap(rect, other) for other in boxes):
            continue
        placed.append(obstacle)
        boxes.append(rect)
    return placed


def _obstacle_colour(rng: np.random.Generator) -> tuple[float, float, float]:
    """Saturated or dark colours: never the floor's tones (those are the failure case)."""
    palette = (
        (200, 40, 40),
        (40, 90, 200),
        (40, 150, 60),
        (230, 190, 30),
        (60, 60, 65),
        (130, 50, 150),
        (230, 120, 30),
        (30, 30, 30),
        (20, 120, 130),
        (240, 240, 240),
    )
    colour = np.array(palette[rng.integers(0, len(palette))], np.float32) * rng.uniform(0.8, 1.1)
    red, green, blue = (float(c) for c in np.clip(colour, 0, 255))
    return red, green, blue


def _project(x: float, y: float, z: float, big: int, focal: float, horizon: float) -> tuple[float, float]:
    return big / 2 + focal * x / z, horizon + focal * (CAMERA_HEIGHT_M - y) / z


def _screen_rect(o: Obstacle, big: int, focal: float, horizon: float) -> tuple[float, float, float, float]:
    half = o.width / 2
    x0, y1 = _project(o.x - half, 0, o.z - half, big, focal, horizon)
    x1, _ = _project(o.x + half, 0, o.z - half, big, focal, horizon)
    _, y0 = _project(o.x, o.height, o.z + half, big, focal, horizon)
    return (min(x0, x1) - 2, y0 - 2, max(x0, x1) + 2, y1 + 2)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _draw(canvas: np.ndarray, o: Obstacle, big: int, focal: float, horizon: float) -> None:
    colour = np.array(o.colour, np.float32)
    half = o.width / 2

    def p(x: float, y: float, z: float) -> tuple[float, float]:
        return _project(x, y, z, big, focal, horizon)

    if o.shape == "box":
        x0, x1, z0, z1 = o.x - half, o.x + half, o.z - half, o.z + half
        front = [p(x0, 0, z0), p(x1, 0, z0), p(x1, o.height, z0), p(x0, o.height, z0)]
        top = [p(x0, o.height, z0), p(x1, o.height, z0), p(x1, o.height, z1), p(x0, o.height, z1)]
        side_x = x0 if x0 > 0 else x1  # the side facing the camera
        side = [p(side_x, 0, z0), p(side_x, 0, z1), p(side_x, o.height, z1), p(side_x, o.height, z0)]
        if x0 > 0 or x1 < 0:
            _fill(canvas, side, colour * 0.7)
        _fill(canvas, top, np.minimum(colour * 1.2 + 15, 255))
        _fill(canvas, front, colour * 0.92)
    else:
        (cx, base), (_, top_v) = p(o.x, 0, o.z), p(o.x, o.height, o.z)
        radius = focal * half / o.z
        rim_base = focal * half * (CAMERA_HEIGHT_M) / o.z**2 * 0.9
        rim_top = focal * half * (CAMERA_HEIGHT_M - o.height) / o.z**2 * 0.9
        left, right = round(cx - radius), round(cx + radius)
        for col in range(left, right + 1):  # body shaded across its width, lit from the left
            t = (col - cx) / max(radius, 1e-6)
            shade = 0.95 - 0.30 * max(t, -1) ** 2 + 0.1 * (t < 0)
            cv2.line(canvas, (col, round(top_v)), (col, round(base)), tuple(float(c) for c in colour * shade), 1)
        cv2.ellipse(
            canvas,
            (round(cx), round(base)),
            (max(int(radius), 1), max(int(rim_base), 1)),
            0,
            0,
            180,
            tuple(float(c) for c in colour * 0.8),
            -1,
            cv2.LINE_AA,
        )
        cv2.ellipse(
            canvas,
            (round(cx), round(top_v)),
            (max(int(radius), 1), max(int(rim_top), 1)),
            0,
            0,
            360,
            tuple(float(c) for c in np.minimum(colour * 1.2 + 15, 255)),
            -1,
            cv2.LINE_AA,
        )


def _contact_shadow(canvas: np.ndarray, o: Obstacle, big: int, focal: float, horizon: float) -> None:
    """A soft dark patch on the floor under and behind the obstacle (light from the ceiling, a little ahead)."""
    cx, cy = _project(o.x + 0.15, 0, o.z + 0.1, big, focal, horizon)
    rx = focal * o.width * 0.75 / o.z
    ry = max(focal * CAMERA_HEIGHT_M * o.width * 0.6 / o.z**2, 1)
    layer = np.zeros(canvas.shape[:2], np.float32)
    cv2.ellipse(layer, (int(cx), int(cy)), (max(int(rx), 1), max(int(ry), 1)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    blurred = np.asarray(cv2.GaussianBlur(layer, (0, 0), max(rx / 6, 0.8)))
    canvas *= (1 - 0.45 * blurred)[:, :, None]


def _shadow(canvas: np.ndarray, rng: np.random.Generator, big: int, horizon: float) -> None:
    """A strong, sharp shadow cast on the floor by something out of view (a window frame, a cupboard)."""
    y0 = rng.uniform(horizon + 0.25 * (big - horizon), horizon + 0.55 * (big - horizon))
    y1 = rng.uniform(0.85, 1.0) * big
    x0 = rng.uniform(0.25, 0.6) * big
    w0, w1 = rng.uniform(0.10, 0.2) * big, rng.uniform(0.25, 0.45) * big
    skew = rng.uniform(-0.2, 0.2) * big
    quad = np.array([[x0, y0], [x0 + w0, y0], [x0 + w1 + skew, y1], [x0 + skew, y1]]).round().astype(np.int32)
    layer = np.zeros(canvas.shape[:2], np.float32)
    cv2.fillConvexPoly(layer, quad, 1.0, cv2.LINE_AA)
    blurred = np.asarray(cv2.GaussianBlur(layer, (0, 0), 1.0))
    canvas *= (1 - rng.uniform(0.6, 0.75) * blurred)[:, :, None]


def _fill(canvas: np.ndarray, points: list[tuple[float, float]], colour: np.ndarray) -> None:
    pts = np.array([[round(x), round(y)] for x, y in points], np.int32)
    cv2.fillConvexPoly(canvas, pts, tuple(float(c) for c in colour), cv2.LINE_AA)
