"""The model registry: a plain dict filled at import time by `@register_model` (as torchvision's `models/_api.py`).

Each zoo module (`torchvision_zoo`, `timm_zoo`, `embedded`) registers a builder `weights choice -> ModelBundle`;
`load_model` validates the name and the weights choice, then calls it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ModelError
from .bundle import ModelBundle, TaskKind
from .weights import checkpoint_cached

Builder = Callable[[str], ModelBundle]


@dataclass(frozen=True)
class ModelSpec:
    """What the dashboard shows about a model before loading it, and how to build it."""

    name: str  # registry key, lowercase
    family: str  # e.g. "ResNet (bottleneck blocks)", "EfficientNet-Lite"
    description: str  # one sentence for a non-coder
    task: TaskKind
    weights: tuple[str, ...]  # allowed weight choices, e.g. ("pretrained", "random")
    default_weights: str
    builder: Builder  # weights choice -> bundle
    checkpoint_url: Callable[[], str] | None = None  # where "pretrained" comes from (cached under its file name)


MODELS: dict[str, ModelSpec] = {}
DEFAULT_MODEL = "efficientnet_lite0"


def register_model(
    name: str,
    *,
    family: str,
    description: str,
    task: TaskKind = "classification",
    weights: tuple[str, ...] = ("pretrained", "random"),
    default_weights: str | None = None,
    checkpoint_url: Callable[[], str] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: add `builder` to MODELS under `name`. The first weights choice is the default unless given;
    `checkpoint_url` gives the pretrained checkpoint's URL without loading anything (see `weights_on_disk`)."""
    default = weights[0] if default_weights is None else default_weights
    if name != name.lower() or name in MODELS or default not in weights:
        raise ValueError(f"Bad registration for {name!r}: keys are lowercase and unique, default among {weights}.")

    def decorator(builder: Builder) -> Builder:
        MODELS[name] = ModelSpec(name, family, description, task, tuple(weights), default, builder, checkpoint_url)
        return builder

    return decorator


def list_models(task: TaskKind | None = None) -> list[ModelSpec]:
    """Registered models, the default first, then in registration order; only `task` ones if given."""
    specs = sorted(MODELS.values(), key=lambda spec: spec.name != DEFAULT_MODEL)  # stable: keeps the order
    return [spec for spec in specs if task is None or spec.task == task]


def load_model(name: str, weights: str | None = None) -> ModelBundle:
    """Build the registered model `name` with the weights choice (its default when None), in eval mode."""
    spec = MODELS.get(name.lower())
    if spec is None:
        matches = difflib.get_close_matches(name.lower(), MODELS, n=3)
        names = ", ".join(spec.name for spec in list_models())
        hint = f"Did you mean {_either(matches)}?" if matches else f"Choose one of: {names}."
        raise ModelError(f"There is no model called '{name}'. {hint}")
    choice = spec.default_weights if weights is None else weights
    if choice not in spec.weights:
        raise ModelError(f"{spec.name} has no '{choice}' weights; choose one of: {', '.join(spec.weights)}.")
    return spec.builder(choice)


LOCAL_WEIGHTS = frozenset({"random", "embedded", "demo"})  # made or shipped here: never downloaded


def weights_on_disk(name: str, weights: str) -> bool:
    """Whether `name` with `weights` loads without a download: random and shipped weights always, "pretrained"
    when its checkpoint file is in torch.hub's cache. A file check: nothing is loaded, nothing is fetched."""
    spec = MODELS.get(name.lower())
    if spec is None or weights not in spec.weights:
        return False
    if weights in LOCAL_WEIGHTS:
        return True
    return spec.checkpoint_url is not None and checkpoint_cached(spec.checkpoint_url())


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
