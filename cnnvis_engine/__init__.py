"""cnnvis_engine: what a convolutional network looks at, computed right, fast and safely shared.

Public API (re-exports only)::

    from cnnvis_engine import load_model, Explainer, EngineError
    bundle = load_model("efficientnet_lite0")
    ex = Explainer(bundle)
    res = ex.explain(image, layer=None, target=None, methods=["gradcam", "cam"])
"""

from . import contained_explainer, crossing  # noqa: F401  (register the worker's Explainer and what crosses to it)
from .concepts import ConceptResult
from .errors import EngineError, ImageError, LayerError, MethodError, ModelError, ModelFileError, TargetError
from .explainer import ARTICLE_METHODS, Explainer, Explanation
from .images import UPLOAD_EXTENSIONS, DecodedImage, decode_image
from .methods import METHODS, MethodResult
from .models import DEFAULT_MODEL, ModelBundle, ModelSpec, list_models, load_model, load_model_file
from .samples import Sample, list_samples, sample_path
from .targets import ClassTarget, Prediction, RegressionTarget, SegmentationTarget, Target
from .tracing import LayerInfo, Trace

__all__ = [
    "ARTICLE_METHODS",
    "DEFAULT_MODEL",
    "METHODS",
    "UPLOAD_EXTENSIONS",
    "ClassTarget",
    "ConceptResult",
    "DecodedImage",
    "EngineError",
    "Explainer",
    "Explanation",
    "ImageError",
    "LayerError",
    "LayerInfo",
    "MethodError",
    "MethodResult",
    "ModelBundle",
    "ModelError",
    "ModelFileError",
    "ModelSpec",
    "Prediction",
    "RegressionTarget",
    "Sample",
    "SegmentationTarget",
    "Target",
    "TargetError",
    "Trace",
    "decode_image",
    "list_models",
    "list_samples",
    "load_model",
    "load_model_file",
    "sample_path",
]
