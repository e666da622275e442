"""Methods, one small class each, registered by name in METHODS."""

from . import activations, attributions, cam_variants, cams, gradients, perturbation  # noqa: F401  (importing registers the methods)  # noqa: F401, I001
from .base import METHODS, Method, MethodInputs, MethodOutput, MethodResult, register_method

__all__ = ["METHODS", "Method", "MethodInputs", "MethodOutput", "MethodResult", "register_method"]
