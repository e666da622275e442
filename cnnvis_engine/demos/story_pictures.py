"""The pictures the Stories page walks through, drawn from fixed seeds (never used in training).

`story_pictures()` returns them with titles and the ground truth; `scripts/train_demos.py` saves them as PNG
files in `assets/stories/` with a `stories.json` index, which is all the page reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from .floor_views import ROBOT_OUTPUT_NAMES, FloorView, draw_floor_view
from .seismic_sections import draw_salt_section
from .tank_scenes import draw_tank_scene
from .training import predict_batches, to_inputs

STORY_SEED = 3000


@dataclass(frozen=True)
class StoryPicture:
    story: str  # "tanks", "salt" or "robot"
    key: str  # file stem
    title: str
    image: np.ndarray  # (H, W, 3) uint8
    truth: dict[str, Any] = field(default_factory=dict)  # JSON-ready ground truth
    mask: np.ndarray | None = None  # salt: (H, W) uint8


def _tank_seed(min_width: int) -> int:
    """The first story seed whose tank is at least `min_width` pixels wide and wholly in the picture."""
    for i in range(1000):
        scene = draw_tank_scene(np.random.default_rng([STORY_SEED, i]), tank=True, sunny=True)
        if scene.box is None:
            continue
        x0, _, x1, _ = scene.box
        if x1 - x0 >= min_width and x0 >= 3 and x1 <= scene.image.shape[1] - 3:
            return i
    raise RuntimeError("no story seed gives a large enough tank")


def tank_pictures() -> list[StoryPicture]:
    """One field with a tank and one without, each in sun and under clouds (same field, only the weather differs)."""
    pictures: list[StoryPicture] = []
    tank_seed = _tank_seed(20)
    for tank, seed in ((True, tank_seed), (False, tank_seed + 1)):
        for sunny in (True, False):
            scene = draw_tank_scene(np.random.default_rng([STORY_SEED, seed]), tank=tank, sunny=sunny)
            weather = "sunny" if sunny else "cloudy"
            pictures.append(
                StoryPicture(
                    "tanks",
                    f"{'tank' if tank else 'field'}_{weather}",
                    f"{'A tank' if tank else 'An empty field'}, {weather}",
                    scene.image,
                    {"tank": tank, "sunny": sunny, "box": list(scene.box) if scene.box else None},
                )
            )
    return pictures


def salt_pictures() -> list[StoryPicture]:
    pictures: list[StoryPicture] = []
    i = 0
    while len(pictures) < 3:
        section = draw_salt_section(np.random.default_rng([STORY_SEED + 1, i]))
        i += 1
        share = float(section.mask.mean())
        if 0.12 <= share <= 0.35:
            n = len(pictures) + 1
            pictures.append(
                StoryPicture(
                    "salt",
                    f"salt_{n}",
                    f"Seismic section {n}",
                    section.image,
                    {"salt_share": round(share, 3)},
                    section.mask,
                )
            )
    return pictures


def robot_pictures(module: nn.Module | None = None) -> list[StoryPicture]:
    """An ordinary view (one it gets right, as it does 87% of views); one obstacle in an ordinary colour and the same room with it coloured like the floor;
    a strong shadow with no obstacle at all. Given the trained `module`, the failure pictures are the first
    seeds where it really fails (the obstacle found, then missed once floor-coloured; the shadow taken for an
    obstacle) — the page says how often that happens on fresh views."""

    def view(i: int, **kind: Any) -> FloorView:
        return draw_floor_view(np.random.default_rng([STORY_SEED + 2, i]), **kind)

    def answers(v: FloorView) -> np.ndarray:
        return (
            np.ones(len(ROBOT_OUTPUT_NAMES), bool)
            if module is None
            else predict_batches(module, to_inputs(v.image[None]))[0].numpy() > 0
        )

    def fails_on_colour(i: int) -> bool:
        plain, camo = view(i, obstacles=1), view(i, obstacles=1, camouflaged=True)
        cell = plain.obstacles[0].output
        return plain.obstacles[0].distance <= 2 and answers(plain)[cell] and (module is None or not answers(camo)[cell])

    def truth(v: FloorView) -> dict[str, Any]:
        return {
            "obstacles": [ROBOT_OUTPUT_NAMES[o.output] for o in v.obstacles],
            "shadow": v.shadow,
            "floor_coloured": v.camouflaged,
        }

    def all_right(v: FloorView) -> bool:
        return len(v.obstacles) == 3 and bool((answers(v) == (v.labels > 0.5)).all() or module is None)

    busy = next(i for i in range(100) if all_right(view(i, obstacles=3)))
    single = next(i for i in range(100, 300) if fails_on_colour(i))
    shadow = next(i for i in range(300, 500) if module is None or answers(view(i, obstacles=0, shadow=True)).any())
    views = [
        ("robot_obstacles", "Three obstacles", view(busy, obstacles=3)),
        ("robot_box", "One obstacle", view(single, obstacles=1)),
        (
            "robot_floor_coloured",
            "The same obstacle, painted the floor's colour",
            view(single, obstacles=1, camouflaged=True),
        ),
        ("robot_shadow", "No obstacle, a strong shadow", view(shadow, obstacles=0, shadow=True)),
    ]
    return [StoryPicture("robot", key, title, v.image, truth(v)) for key, title, v in views]


def story_pictures(robot: nn.Module | None = None) -> list[StoryPicture]:
    """Every story's pictures; `robot` (the trained robot_perception module) picks the robot's failure views."""
    return [*tank_pictures(), *salt_pictures(), *robot_pictures(robot)]
