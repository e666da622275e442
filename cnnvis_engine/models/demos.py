"""The demo models that retell the article's stories, trained here and shipped in `assets/models/`.

Each is a small architecture from `cnnvis_engine.demos` with a state_dict loaded with `weights_only=True`;
the model card beside the weights says how it was trained and how well it does on fresh data.
Retrain with `python scripts/train_demos.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..demos.catalog import DEMO_NORMALIZATION, DEMOS, DemoSpec
from ..errors import ModelError
from .bundle import ModelBundle
from .registry import register_model

RETRAIN = "python scripts/train_demos.py --only {name}"


def demo_bundle(name: str, module: nn.Module | None = None) -> ModelBundle:
    """The demo `name` with its shipped weights, or wrapped around `module` (a freshly trained one) if given."""
    spec = DEMOS[name]
    if module is None:
        module = _load(spec)
        detail = (
            f"assets/models/{spec.weights_file.name} (trained by scripts/train_demos.py; card: {spec.card_file.name})"
        )
    else:
        detail = "trained in this process"
    module.eval()
    return ModelBundle(
        name=spec.name,
        module=module,
        class_names=spec.class_names,
        task=spec.task,
        input_size=spec.input_size,
        normalization=DEMO_NORMALIZATION,
        weights_source="demo",
        weights_detail=detail,
        description=spec.description,
        output_names=spec.output_names,
    )


def _load(spec: DemoSpec) -> nn.Module:
    path = spec.weights_file
    if not path.is_file():
        raise ModelError(f"The demo weights {path} are missing; make them with: {RETRAIN.format(name=spec.name)}")
    module = spec.make_module()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state, strict=True)
    except Exception as exc:  # a damaged or outdated file: say how to remake it
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ModelError(
            f"The demo weights {path.name} could not be loaded ({first_line}); remake them with: "
            f"{RETRAIN.format(name=spec.name)}"
        ) from exc
    return module


def _register(spec: DemoSpec) -> None:
    @register_model(
        spec.name,
        family=spec.family,
        description=spec.description,
        task=spec.task,
        weights=("demo",),
        default_weights="demo",
    )
    def build(weights: str) -> ModelBundle:
        return demo_bundle(spec.name)


for _spec in DEMOS.values():
    _register(_spec)
