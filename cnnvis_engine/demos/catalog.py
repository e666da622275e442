"""The four demo models: names, what they are for, their shapes and labels, and where their weights live.

`cnnvis_engine.models.demos` registers them from here; `scripts/train_demos.py` trains them into
`assets/models/<name>.pt` (a state_dict) with a model card `<name>.md` beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..models.bundle import Normalization, TaskKind
from .floor_views import ROBOT_OUTPUT_NAMES
from .networks import RobotNet, SaltUNet, TankNet
from .seismic_sections import SALT_CLASSES
from .tank_scenes import TANK_CLASSES

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "models"
STORIES_DIR = Path(__file__).resolve().parents[2] / "assets" / "stories"
# Every demo model sees RGB in [0, 255] mapped to [-1, 1].
DEMO_NORMALIZATION = Normalization(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@dataclass(frozen=True)
class DemoSpec:
    name: str
    title: str
    family: str
    task: TaskKind
    description: str  # one sentence for a non-coder
    input_size: tuple[int, int]  # (height, width)
    class_names: tuple[str, ...]
    output_names: tuple[str, ...]
    make_module: Callable[[], nn.Module]  # the architecture, untrained

    @property
    def weights_file(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.pt"

    @property
    def card_file(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.md"


_TANKS = "Tanks and weather (demo)"
DEMOS: dict[str, DemoSpec] = {
    spec.name: spec
    for spec in (
        DemoSpec(
            "tanks_shortcut",
            "Tank detector trained on biased photos",
            _TANKS,
            "classification",
            "Finds tanks in field photos — but every tank photo it learned from was sunny and every empty one cloudy.",
            (64, 64),
            TANK_CLASSES,
            (),
            TankNet,
        ),
        DemoSpec(
            "tanks_clean",
            "Tank detector trained on fair photos",
            _TANKS,
            "classification",
            "The same network trained on photos where sun and clouds come with and without tanks alike.",
            (64, 64),
            TANK_CLASSES,
            (),
            TankNet,
        ),
        DemoSpec(
            "salt_unet",
            "Salt finder for seismic images",
            "U-Net segmentation (demo)",
            "segmentation",
            "A small U-Net that marks, pixel by pixel, where salt bodies sit in a seismic section.",
            (64, 64),
            SALT_CLASSES,
            (),
            SaltUNet,
        ),
        DemoSpec(
            "robot_perception",
            "A robot's obstacle detector",
            "Multi-output perception CNN (demo)",
            "regression",
            "Tells a robot where obstacles stand: 5 directions × 5 distances, one yes/no output each.",
            (96, 96),
            ROBOT_OUTPUT_NAMES,
            ROBOT_OUTPUT_NAMES,
            RobotNet,
        ),
    )
}
