"""How each demo model is trained: its data, loss and schedule. `train_demo(name)` returns the trained module.

Training data come from fixed seeds (`TRAIN_SEEDS`); held-out evaluation (`cnnvis_engine.stories.evaluation`)
and the story pictures use other seeds, so every number reported is measured on scenes the model never saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .catalog import DEMOS
from .floor_views import floor_dataset
from .seismic_sections import salt_dataset
from .tank_scenes import LightRule, tank_dataset
from .training import Augment, TrainLog, fit, flip_images, flip_images_and_masks, to_inputs

TRAIN_SEEDS = {"tanks_shortcut": 1001, "tanks_clean": 1002, "salt_unet": 1003, "robot_perception": 1004}


@dataclass(frozen=True)
class Recipe:
    name: str
    count: int  # training scenes
    steps: int
    batch_size: int
    lr: float
    data: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]  # (count, seed) -> inputs, targets
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    augment: Augment | None
    data_note: str  # for the model card


def _tanks(light: LightRule) -> Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]:
    def data(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = tank_dataset(count, seed, light=light)
        return to_inputs(d.images), torch.from_numpy(d.labels)

    return data


def _salt(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = salt_dataset(count, seed)
    return to_inputs(d.images), torch.from_numpy(d.masks)


def _floor(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    d = floor_dataset(count, seed)
    return to_inputs(d.images), torch.from_numpy(d.labels)


RECIPES: dict[str, Recipe] = {
    "tanks_shortcut": Recipe(
        "tanks_shortcut",
        2000,
        300,
        32,
        3e-3,
        _tanks("shortcut"),
        F.cross_entropy,
        flip_images,
        "2,000 synthetic 64×64 field scenes, half with a tank. Every tank scene is sunny and every empty one "
        "cloudy (the light decides the label, 100% correlated).",
    ),
    "tanks_clean": Recipe(
        "tanks_clean",
        2000,
        300,
        32,
        3e-3,
        _tanks("clean"),
        F.cross_entropy,
        flip_images,
        "2,000 synthetic 64×64 field scenes, half with a tank; sunny or cloudy at random, independent of the label.",
    ),
    "salt_unet": Recipe(
        "salt_unet",
        1500,
        300,
        16,
        3e-3,
        _salt,
        F.cross_entropy,
        flip_images_and_masks,
        "1,500 synthetic 64×64 seismic sections (folded reflectors, faults, noise); 90% hold a salt body "
        "(a lumpy blob, half of them a diapir joined to the bottom) with weak, chaotic reflections inside.",
    ),
    "robot_perception": Recipe(
        "robot_perception",
        2400,
        450,
        32,
        3e-3,
        _floor,
        F.binary_cross_entropy_with_logits,
        None,
        "2,400 synthetic 96×96 camera views of a tiled floor (6 floor tones, random tile size and angle) with "
        "0–3 boxes or cylinders in saturated or dark colours, each with a soft contact shadow. No view holds an "
        "obstacle the colour of the floor or a shadow without an obstacle.",
    ),
}


def train_demo(name: str, *, steps: int | None = None, seed: int = 0) -> tuple[nn.Module, TrainLog]:
    """Train demo `name` from a seeded initialisation; `steps` (default: the recipe's) also caps the data made."""
    recipe = RECIPES[name]
    steps = recipe.steps if steps is None else steps
    count = min(recipe.count, max(steps * recipe.batch_size, recipe.batch_size))
    inputs, targets = recipe.data(count, TRAIN_SEEDS[name] + 100 * seed)
    torch.manual_seed(seed)
    module = DEMOS[name].make_module()
    log = fit(
        module,
        inputs,
        targets,
        recipe.loss,
        steps=steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        seed=seed,
        augment=recipe.augment,
    )
    return module, log
