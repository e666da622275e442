"""Models: the registry, its builders (torchvision, timm, the embedded default) and user files. Re-exports only."""

# Importing the zoos fills MODELS; their order is the registration order that list_models keeps.
from . import torchvision_zoo, timm_zoo, embedded  # noqa: F401, I001
from . import demos  # noqa: F401  (the article's stories: tanks and weather, salt U-Net, robot perception)
from .bundle import ModelBundle, Normalization, TaskKind, WeightsSource
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, list_models, load_model, register_model, weights_on_disk
from .user_files import load_model_file, parse_labels
from .weights import weights_cache_dir

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "ModelBundle",
    "ModelSpec",
    "Normalization",
    "TaskKind",
    "WeightsSource",
    "list_models",
    "load_model",
    "load_model_file",
    "parse_labels",
    "register_model",
    "weights_cache_dir",
    "weights_on_disk",
]
