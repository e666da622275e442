"""Models: the registry, its builders (torchvision, timm, the embedded default) and user files. Re-exports only."""

# Importing the zoos fills MODELS; their order is the registration order that list_models keeps.
from . import torchvision_zoo, timm_zoo, embedded  # noqa: F401, I001
from . import demos  # noqa: F401  (the article's stories: tanks and weather, salt U-Net, robot perception)
from .bundle import ModelBundle, Normalization, TaskKind, WeightsSource
from .registry import (
    DEFAULT_MODEL,
    MODELS,
    ModelSpec,
    check_model_allowed,
    check_model_size,
    find_spec,
    list_models,
    load_model,
    offer_model,
    register_model,
    registered_names,
    weights_on_disk,
    withdraw_model,
)
from .python_models import wrap_module
from .zoo import parameter_count, zoo_names
from .labels import parse_labels
from .user_files import load_model_file
from .weights import weights_cache_dir

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelBundle",
    "ModelSpec",
    "Normalization",
    "TaskKind",
    "WeightsSource",
    "check_model_allowed",
    "check_model_size",
    "find_spec",
    "list_models",
    "load_model",
    "load_model_file",
    "offer_model",
    "parameter_count",
    "parse_labels",
    "register_model",
    "registered_names",
    "weights_cache_dir",
    "weights_on_disk",
    "withdraw_model",
    "wrap_module",
    "zoo_names",
]
