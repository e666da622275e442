"""What each choice of the dashboard may be: the options its widgets offer, which are also what a link may give
them (`state.URL_PARAMS` builds its domains from these)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cnnvis_engine import METHODS, list_samples
from cnnvis_engine.demos.floor_views import DIRECTIONS, DISTANCES
from cnnvis_engine.errors import shown

from . import story_data

SALIENCY_MODES = {"saliency": "Vanilla", "guided_backprop": "Guided"}
CHANNEL_COUNTS = (4, 8, 16, 32, 64)
CONCEPT_UNIT_CHOICES = {"channels": "Channels", "groups": "Groups of channels"}
AUDIT_DEFAULT_METHOD = "gradcam"  # `cnnvis_engine.audit.audit`'s default (a test keeps them equal)
SANITY_MODES = {"cascading": "Cascading, from the output down", "independent": "One layer at a time"}
STANDING = ("feature_maps", *SALIENCY_MODES, "cam", "gradcam", "guided_gradcam")  # Explore's fixed panels
WEIGHTS_CHOICES = ("pretrained", "embedded", "random", "demo", "yours", "file")
UPLOAD_REF = re.compile(r"upload:[0-9a-f]{64}")


def explore_extras() -> list[str]:
    """The registered methods Explore offers beyond its standing panels, quick ones first (registry order)."""
    extras = [m for m, cls in METHODS.items() if m not in STANDING and cls.drawing != "grid"]
    return sorted(extras, key=lambda m: METHODS[m].slow)


def compare_methods() -> list[str]:
    """The methods Compare offers: one map per cell."""
    return [m for m, cls in METHODS.items() if cls.drawing != "grid"]


def sanity_methods() -> list[str]:
    """The methods the Sanity test offers: maps cheap enough to redo per layer."""
    return [m for m, cls in METHODS.items() if cls.randomisable]


def audit_methods() -> list[str]:
    """The maps an audit may use: one per picture, no extra forward passes (a set has thousands); the default first."""
    offered = [m for m, method in METHODS.items() if method.scorable and not method.slow]
    return sorted(offered, key=lambda m: m != AUDIT_DEFAULT_METHOD)


def image_refs() -> list[str]:
    """The pictures a link may name: the samples; an upload is a sha256 checked when it is loaded."""
    return [f"sample:{sample.key}" for sample in list_samples()]


def admit_settings(name: str, settings: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, Any], list[str]]:
    """A link's method settings within what Explore's number boxes allow (`Option.dashboard_range`): only methods
    Explore offers, only options they declare, each value within its range (a whole number where it counts)."""
    offered = set(explore_extras())
    kept: dict[str, dict[str, float]] = {}
    problems = []
    for method, values in settings.items():
        declared = {option.name: option for option in METHODS[method].options} if method in offered else {}
        if not declared:
            problems.append(f"{name}: {shown(method)} is not a method with settings here")
            continue
        for option_name, value in values.items():
            option = declared.get(option_name)
            if option is None:
                problems.append(f"{name}: {method} has no setting {shown(option_name)}")
                continue
            low, high = option.dashboard_range()
            if not low <= value <= high:
                problems.append(f"{name}: {method}.{option_name}={value:g} is outside {low:g}–{high:g}")
                continue
            if option.kind is int and value != int(value):
                problems.append(f"{name}: {method}.{option_name}={value:g} is not a whole number")
                continue
            kept.setdefault(method, {})[option_name] = option.kind(value)
    return kept, problems


# The Stories page: its stories, the salt U-Net's Grad-CAM layers, the robot's output groups (each by its title), the
# robot's directions and distances; its pictures are story_data's.
STORIES = {"tanks": "The tanks and the weather", "salt": "Finding salt", "robot": "A robot's blind spots"}
SALT_LAYERS = {"decode1": "last decoder block (64×64)", "bottom": "bottleneck (16×16)"}
ROBOT_GROUPS = {
    "all": "All 25",
    "direction": "One direction",
    "distance": "One distance",
    "reported": "What it switched on",
}
ROBOT_DIRECTIONS = DIRECTIONS
ROBOT_DISTANCES = DISTANCES
ROBOT_VIEWS = 2  # the robot's first two pictures are the views to choose from; the others show where it fails


def story_pictures(story: str) -> list[str]:
    """The keys of a story's pictures, in page order (the tanks' photos, the salt sections)."""
    return [picture.key for picture in story_data.story_pictures(story)]


def robot_views() -> list[str]:
    """The robot pictures its view picker offers."""
    return story_pictures("robot")[:ROBOT_VIEWS]
