"""The model registry: a plain dict filled at import time by `@register_model` (as torchvision's `models/_api.py`).

Each zoo module (`torchvision_zoo`, `timm_zoo`, `embedded`) registers a builder `weights choice -> ModelBundle`;
`load_model` validates the name and the weights choice, then calls it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Collection, Sequence
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
    served: bool = False  # offered by `offer_model` (cnnvis serve, cnnvis.show): listed first
    title: str = ""  # an offered model's own name, as its owner spelled it (`name` is lowercased)
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
        MODELS[name] = ModelSpec(
            name, family, description, task, tuple(weights), default, builder, checkpoint_url=checkpoint_url
        )
        return builder

    return decorator


SERVED_WEIGHTS = "yours"  # the one weights choice of an offered model: whatever it came with


def offer_model(bundle: ModelBundle, *, family: str = "Your model") -> ModelSpec:
    """Register an already loaded model (`cnnvis serve --model`, `cnnvis.show`) under its lowercased name, replacing
    one offered earlier under that name (a registered architecture's name is refused). Listed first."""
    key = bundle.name.lower()
    earlier = MODELS.get(key)
    if earlier is not None and not earlier.served:
        raise ModelError(f"'{bundle.name}' is the name of a built-in model; give yours another name.")
    spec = ModelSpec(
        key,
        family,
        bundle.description,
        bundle.task,
        (SERVED_WEIGHTS,),
        SERVED_WEIGHTS,
        lambda weights: bundle,
        served=True,
        title=bundle.name,
    )
    MODELS.pop(key, None)  # re-offered: it moves to the end of the served ones
    MODELS[key] = spec
    return spec


def withdraw_model(name: str) -> None:
    """Forget a model `offer_model` added (cnnvis.stop); registered architectures stay."""
    spec = MODELS.get(name.lower())
    if spec is not None and spec.served:
        del MODELS[spec.name]


def list_models(task: TaskKind | None = None) -> list[ModelSpec]:
    """Offered models (newest first), then the registered ones, the default first, in registration order;
    only `task` ones if given."""
    served = [spec for spec in reversed(MODELS.values()) if spec.served]
    others = sorted((s for s in MODELS.values() if not s.served), key=lambda spec: spec.name != DEFAULT_MODEL)
    return [spec for spec in served + others if task is None or spec.task == task]


def find_spec(name: str) -> ModelSpec | None:
    """The spec of a registered or offered model, or of a "torchvision:"/"timm:" zoo name; None if unknown."""
    spec = MODELS.get(name.lower())
    if spec is not None:
        return spec
    from .zoo import is_zoo_name, zoo_spec

    if is_zoo_name(name):
        try:
            return zoo_spec(name)
        except ModelError:
            return None
    return None


def registered_names() -> frozenset[str]:
    """The models this package registers (not those offered by `cnnvis serve` / `cnnvis.show`)."""
    return frozenset(spec.name for spec in MODELS.values() if not spec.served)


def check_model_allowed(name: str, allowed: Collection[str] | None) -> None:
    """Refuse `name` unless `allowed` lists it (None: every model). A served model (`offer_model`) is always
    allowed: whoever runs the server gave it. Raises ModelError."""
    spec = MODELS.get(name.lower())
    if allowed is None or (spec is not None and spec.served) or name in allowed or name.lower() in allowed:
        return
    raise ModelError(
        f"{name} is not among the models this server offers. Choose one from the Network list (its operator "
        "decides which models it loads)."
    )


def check_model_size(name: str, max_params: int | None) -> None:
    """Refuse a torchvision or timm zoo model with more than `max_params` parameters (None: no limit), before
    anything is built or downloaded (`zoo.parameter_count`). Registered and served models are not counted: the
    registered ones are this package's own list (the largest, vgg16, has 138 million), a served one is already
    loaded. Raises ModelError."""
    from .zoo import is_zoo_name, parameter_count

    if max_params is None or not is_zoo_name(name) or name.lower() in MODELS:
        return
    count = parameter_count(name)
    if count > max_params:
        raise ModelError(
            f"{name} has {_millions(count)} parameters; this server loads models of up to {_millions(max_params)} "
            f"(about {max(1, round(count * 4 / 1e9))} GB of memory for the weights alone, and more to explain them). "
            "Choose a smaller model."
        )


def _millions(count: int) -> str:
    return f"{count / 1e6:,.0f} million" if count >= 1e6 else f"{count:,}"


def load_model(
    name: str,
    weights: str | None = None,
    *,
    labels: Sequence[str] | str | os.PathLike[str] | None = None,
    input_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
) -> ModelBundle:
    """Build a model, in eval mode:

    - a registered name (`resnet50`) with a weights choice (its default when None);
    - a zoo name, `torchvision:<name>` or `timm:<name>`, with "pretrained" (the default where the library has
      weights) or "random" (see `zoo`);
    - your own Python model, `path/to/net.py:attr` or `package.module:attr`, with `weights` a state_dict file (or
      None: as the code builds it), `labels` a file or a list of names, and its own `input_size` (height, width),
      `mean`, `std` and `scale` (see `python_models`).
    """
    from .python_models import is_python_spec, load_python_model
    from .zoo import build_zoo, is_zoo_name, zoo_spec

    if is_zoo_name(name):
        zoo = zoo_spec(name)
        choice = zoo.default_weights if weights is None else weights
        if choice not in zoo.weights:
            raise ModelError(f"{zoo.name} has no '{choice}' weights; choose one of: {', '.join(zoo.weights)}.")
        return build_zoo(name, choice)
    if name.lower() not in MODELS and is_python_spec(name):
        return load_python_model(name, weights, labels=labels, input_size=input_size, mean=mean, std=std, scale=scale)
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


# Made or shipped here, or handed over in memory (a served model's own): never downloaded.
LOCAL_WEIGHTS = frozenset({"random", "embedded", "demo", SERVED_WEIGHTS})


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
