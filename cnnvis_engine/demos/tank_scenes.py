"""Synthetic photos for the tanks-and-weather legend: fields with trees, with or without a tank, sunny or cloudy.

The legend (retold in the article): a network was trained to find camouflaged tanks, but every tank photo had
been taken on a sunny day and every empty one on a cloudy day, so it learned the weather. `tank_dataset` builds
such a set ("shortcut": sunny ⇔ tank), a fair one ("clean": light independent of the label) and the reversed
one ("reversed": tanks only under clouds). Every scene is drawn from its own seed, so a sample is the same
whatever the size of the set it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

TANK_CLASSES = ("no tank", "tank")
LightRule = Literal["shortcut", "clean", "reversed"]
_SUPERSAMPLE = 2  # draw at twice the size, then shrink with area averaging (anti-aliasing)


@dataclass(frozen=True)
class TankScene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    tank: bool
    sunny: bool
    box: tuple[int, int, int, int] | None  # the tank's (x0, y0, x1, y1) in pixels, x1/y1 exclusive
    horizon: int = 0  # the sky is the rows above it (the tops of the tree line and of trees reach into it)


@dataclass(frozen=True)
class TankDataset:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64: 1 = tank
    sunny: np.ndarray  # (N,) bool
    boxes: np.ndarray  # (N, 4) int64; -1 where there is no tank
    horizons: np.ndarray | None = None  # (N,) int64: each scene's `TankScene.horizon`


def draw_tank_scene(rng: np.random.Generator, *, tank: bool, sunny: bool, size: int = 64) -> TankScene:
    """One field scene `size`×`size`: sky, a tree line, trees on grass, optionally a tank; then the light."""
    # Separate streams for the sky and the light, so the same seed gives the same field in either weather.
    sky_rng, light_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**63, size=2))
    big = size * _SUPERSAMPLE
    canvas = np.zeros((big, big, 3), np.float32)
    horizon = int(big * rng.uniform(0.26, 0.40))
    _sky(canvas, horizon, sunny, sky_rng)
    _grass(canvas, horizon, rng)
    _tree_line(canvas, horizon, rng)
    trees = [(rng.uniform(0, big), rng.uniform(horizon + 0.05 * big, big * 0.98)) for _ in range(rng.integers(2, 6))]
    for tx, ty in sorted(trees, key=lambda t: t[1]):  # painter's order: farther (higher up) first
        _tree(canvas, tx, ty, big, horizon, sunny, rng)
    box = None
    if tank:  # in front of the trees, so the whole tank is always in the picture
        scale = rng.uniform(0.24, 0.38) * big
        ground = rng.uniform(horizon + 0.35 * scale + 0.06 * big, big * 0.95)
        box = _tank(canvas, rng.uniform(0.22, 0.78) * big, ground, scale, sunny, rng)
    _light(canvas, sunny, light_rng)
    canvas += light_rng.normal(0, 3.0, canvas.shape).astype(np.float32)
    image = cv2.resize(np.clip(canvas, 0, 255), (size, size), interpolation=cv2.INTER_AREA).round().astype(np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        box = (
            max(int(np.floor(x0 / _SUPERSAMPLE)), 0),
            max(int(np.floor(y0 / _SUPERSAMPLE)), 0),
            min(int(np.ceil(x1 / _SUPERSAMPLE)), size),
            min(int(np.ceil(y1 / _SUPERSAMPLE)), size),
        )
    return TankScene(image=image, tank=tank, sunny=sunny, box=box, horizon=round(horizon / _SUPERSAMPLE))


def tank_dataset(count: int, seed: int, *, light: LightRule, size: int = 64) -> TankDataset:
    """`count` scenes, half with a tank (alternating), the light chosen by `light`; scene i uses seed (seed, i)."""
    scenes = []
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        tank = bool(i % 2)
        coin = bool(rng.integers(0, 2))  # drawn under every rule, so scene i is the same field whatever the light
        sunny = {"shortcut": tank, "reversed": not tank, "clean": coin}[light]
        scenes.append(draw_tank_scene(rng, tank=tank, sunny=sunny, size=size))
    return TankDataset(
        images=np.stack([s.image for s in scenes]),
        labels=np.array([int(s.tank) for s in scenes], np.int64),
        sunny=np.array([s.sunny for s in scenes], bool),
        boxes=np.array([s.box if s.box else (-1, -1, -1, -1) for s in scenes], np.int64),
        horizons=np.array([s.horizon for s in scenes], np.int64),
    )


# ----- drawing ----------------------------------------------------------------------------------------------
def _sky(canvas: np.ndarray, horizon: int, sunny: bool, rng: np.random.Generator) -> None:
    if sunny:
        top, low = np.array([40, 110, 225]), np.array([150, 200, 250])
    else:
        grey = rng.uniform(150, 185)
        top, low = np.full(3, grey - 25) + [0, 2, 8], np.full(3, grey) + [0, 2, 6]
    t = np.linspace(0, 1, horizon)[:, None, None]
    canvas[:horizon] = (top * (1 - t) + low * t).astype(np.float32)
    big = canvas.shape[0]
    if sunny:
        cx, cy = int(rng.uniform(0.1, 0.9) * big), int(rng.uniform(0.05, 0.6) * horizon)
        cv2.circle(canvas, (cx, cy), int(0.06 * big), (255, 245, 200), -1, cv2.LINE_AA)
    else:
        for _ in range(rng.integers(3, 7)):  # heavy clouds
            c = float(rng.uniform(120, 200))
            centre = (int(rng.uniform(0, big)), int(rng.uniform(0, horizon)))
            axes = (int(rng.uniform(0.10, 0.30) * big), int(rng.uniform(0.04, 0.10) * big))
            cv2.ellipse(canvas, centre, axes, 0, 0, 360, (c, c, c + 4), -1, cv2.LINE_AA)
        canvas[:horizon] = cv2.GaussianBlur(canvas[:horizon], (0, 0), 3)


def _grass(canvas: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    big = canvas.shape[0]
    base = np.array([rng.uniform(60, 95), rng.uniform(110, 140), rng.uniform(35, 60)], np.float32)
    noise = np.asarray(
        cv2.GaussianBlur(rng.normal(0, 1, (big - horizon, big)).astype(np.float32), (0, 0), 2.5), np.float32
    )
    noise /= noise.std() + 1e-6
    depth = np.linspace(0.85, 1.05, big - horizon)[:, None]  # the far field is a little paler and darker
    canvas[horizon:] = base * (depth + 0.10 * noise)[:, :, None]


def _tree_line(canvas: np.ndarray, horizon: int, rng: np.random.Generator) -> None:
    big = canvas.shape[0]
    x = 0.0
    while x < big:
        w = rng.uniform(0.05, 0.12) * big
        h = rng.uniform(0.04, 0.10) * big
        g = rng.uniform(0.8, 1.2)
        cv2.ellipse(canvas, (int(x), horizon), (int(w), int(h)), 0, 180, 360, (40 * g, 75 * g, 35 * g), -1, cv2.LINE_AA)
        x += w * rng.uniform(0.8, 1.4)


def _tree(
    canvas: np.ndarray, x: float, y: float, big: int, horizon: int, sunny: bool, rng: np.random.Generator
) -> None:
    scale = (0.12 + 0.28 * (y - horizon) / (big - horizon)) * big * rng.uniform(0.8, 1.2)
    trunk_h, trunk_w = 0.45 * scale, 0.08 * scale
    if sunny:
        cv2.ellipse(
            canvas,
            (int(x + 0.25 * scale), int(y)),
            (int(0.45 * scale), int(0.08 * scale)),
            0,
            0,
            360,
            (35, 65, 25),
            -1,
            cv2.LINE_AA,
        )
    cv2.rectangle(canvas, (int(x - trunk_w / 2), int(y - trunk_h)), (int(x + trunk_w / 2), int(y)), (80, 55, 35), -1)
    g = rng.uniform(0.75, 1.25)
    for _ in range(3):
        cx = x + rng.uniform(-0.15, 0.15) * scale
        cy = y - trunk_h - rng.uniform(0.1, 0.35) * scale
        r = rng.uniform(0.22, 0.32) * scale
        shade = rng.uniform(0.85, 1.15) * g
        cv2.circle(canvas, (int(cx), int(cy)), int(r), (35 * shade, 90 * shade, 35 * shade), -1, cv2.LINE_AA)


def _tank(
    canvas: np.ndarray, cx: float, ground: float, scale: float, sunny: bool, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """Tracks, hull, turret and barrel; `scale` is the hull's length. Returns the tank's box (x0, y0, x1, y1)."""
    shades = ([95, 100, 55], [110, 105, 75], [75, 85, 60], [120, 110, 80])
    body = np.array(shades[rng.integers(0, len(shades))], np.float32) * rng.uniform(0.85, 1.1)
    facing = 1 if rng.integers(0, 2) else -1
    half = scale / 2
    track_h, hull_h, turret_h = 0.22 * scale, 0.20 * scale, 0.18 * scale
    if sunny:  # a cast shadow on the grass
        cv2.ellipse(
            canvas,
            (int(cx + 0.1 * scale), int(ground)),
            (int(0.62 * scale), int(0.07 * scale)),
            0,
            0,
            360,
            (35, 60, 25),
            -1,
            cv2.LINE_AA,
        )
    track = [
        (cx - half, ground - track_h),
        (cx + half, ground - track_h),
        (cx + half * 0.9, ground),
        (cx - half * 0.9, ground),
    ]
    _poly(canvas, track, (45, 45, 40))
    for k in range(5):
        wx = cx - half * 0.75 + k * half * 0.375
        cv2.circle(
            canvas, (int(wx), int(ground - track_h / 2)), max(int(track_h * 0.32), 1), (70, 70, 62), -1, cv2.LINE_AA
        )
    top = ground - track_h - hull_h
    hull = [
        (cx - half * 1.05, ground - track_h),
        (cx + half * 1.05, ground - track_h),
        (cx + half * 0.85, top),
        (cx - half * 0.8, top),
    ]
    _poly(canvas, hull, tuple(float(v) for v in body))
    tx = cx - facing * 0.08 * scale
    turret = [
        (tx - 0.28 * scale, top),
        (tx + 0.28 * scale, top),
        (tx + 0.20 * scale, top - turret_h),
        (tx - 0.20 * scale, top - turret_h),
    ]
    _poly(canvas, turret, tuple(float(v) for v in body * 0.92))
    by = top - turret_h * 0.55
    bx0, bx1 = tx + facing * 0.2 * scale, tx + facing * 0.85 * scale
    cv2.line(
        canvas,
        (int(bx0), int(by)),
        (int(bx1), int(by)),
        tuple(float(v) for v in body * 0.7),
        max(int(0.045 * scale), 1),
        cv2.LINE_AA,
    )
    xs = [cx - half * 1.05, cx + half * 1.05, bx1]
    return (min(xs), top - turret_h, max(xs), ground + 1)


def _poly(canvas: np.ndarray, points: list[tuple[float, float]], colour: tuple[float, ...]) -> None:
    pts = np.array([[round(x), round(y)] for x, y in points], np.int32)
    cv2.fillConvexPoly(canvas, pts, colour, cv2.LINE_AA)


def _light(canvas: np.ndarray, sunny: bool, rng: np.random.Generator) -> None:
    """The weather: sunny is bright and warm; cloudy is dim, grey and flat."""
    if sunny:
        canvas *= np.array([1.12, 1.05, 0.92], np.float32) * rng.uniform(1.05, 1.2)
        canvas += 10
    else:
        grey = canvas.mean(axis=2, keepdims=True)
        canvas[:] = 0.45 * canvas + 0.55 * grey
        canvas *= np.array([0.96, 0.98, 1.03], np.float32) * rng.uniform(0.55, 0.72)
