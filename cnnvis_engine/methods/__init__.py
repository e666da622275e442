"""Methods, one small class each, registered by name in METHODS."""

from . import activations, cams, gradients  # noqa: F401  (importing registers the methods)
from . import attributions, cam_variants, perturbation  # noqa: F401, I001
from .base import METHODS, Method, MethodInputs, MethodOutput, MethodResult, register_method

__all__ = ["METHODS", "Method", "MethodInputs", "MethodOutput", "MethodResult", "register_method"]
