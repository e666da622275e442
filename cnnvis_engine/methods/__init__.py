"""Methods, one small class each, registered by name in METHODS."""

# Importing registers the methods, in the order every list shows them: the article's first (layer outputs,
# kernels, CAM, Grad-CAM, guided Grad-CAM, saliency, guided backprop), then their successors.
# isort: off
from . import activations  # noqa: F401
from . import cams  # noqa: F401
from . import gradients  # noqa: F401
from . import attributions  # noqa: F401
from . import cam_variants  # noqa: F401
from . import perturbation  # noqa: F401
from . import rollout  # noqa: F401

# isort: on
from .base import (
    METHODS,
    Method,
    MethodInputs,
    MethodOutput,
    MethodResult,
    default_layer,
    layers_for,
    method_names,
    methods_at,
    register_method,
)

__all__ = [
    "METHODS",
    "Method",
    "MethodInputs",
    "MethodOutput",
    "MethodResult",
    "default_layer",
    "layers_for",
    "method_names",
    "methods_at",
    "register_method",
]
