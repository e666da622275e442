"""What may cross between the server and an uploaded ONNX model's worker: the engine's argument and result
dataclasses, in one list (`models.contained_codec` rebuilds exactly these, field by field, and nothing else).

The codec sits below the modules that define these types, so they are handed to it from here; the package runs
this module on import, in the server and in the worker alike.
"""

from __future__ import annotations

from .concepts.results import ConceptResult
from .explainer import Explanation
from .faithfulness import Curve, Faithfulness
from .featurevis.results import FeatureVisResult, FeatureVisSettings
from .featurevis.transforms import TransformSettings
from .images import DecodedImage
from .layouts import Layout
from .methods import MethodResult
from .models.bundle import Normalization
from .models.contained_codec import allow_crossing
from .sanity import RandomisationStep
from .targets import ClassTarget, Prediction, RegressionTarget, SegmentationTarget
from .tracing import CamSite, LayerInfo, Trace

CROSSING: tuple[type, ...] = (
    Explanation,
    MethodResult,
    Prediction,
    ClassTarget,
    SegmentationTarget,
    RegressionTarget,
    LayerInfo,
    Layout,
    CamSite,
    Trace,
    DecodedImage,
    Normalization,
    Faithfulness,
    Curve,
    RandomisationStep,
    FeatureVisResult,
    FeatureVisSettings,
    TransformSettings,
    ConceptResult,
)

allow_crossing(*CROSSING)
