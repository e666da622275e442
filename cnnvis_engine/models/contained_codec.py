"""The arguments and results of engine calls between the server and an uploaded ONNX model's worker, without pickle.

`encode(value)` turns a value into a JSON-able structure plus a list of tensors (which travel as raw bytes in
the wire format of contained_worker.py, their dtype and shape checked there); `decode` rebuilds it. What can
cross: None, bools, numbers, strings, lists, tuples, frozensets, dicts with string keys, numpy arrays, torch
tensors, RGB PIL images, and the dataclasses of the engine named in `_allowed()` — rebuilt field by field from
exactly their constructor's fields, never from a type name chosen by the sender. Anything else is refused with
a CodecError, and so is a structure deeper than MAX_DEPTH, with more than MAX_NODES values or a string longer
than MAX_STRING. Nothing here imports or calls anything a message names.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ModelError
from .contained_worker import DTYPE_NAMES

MAX_DEPTH = 24
MAX_NODES = 2_000_000
MAX_STRING = 1 << 20


class CodecError(ModelError):
    """A value that cannot cross to or from the worker (a function, an unknown type, a malformed message)."""


@functools.cache
def _allowed() -> dict[str, type]:
    """The engine's result and argument types, by class name. Imported when first needed: they live in modules
    above this one."""
    from ..concepts.results import ConceptResult
    from ..explainer import Explanation
    from ..faithfulness import Curve, Faithfulness
    from ..featurevis.results import FeatureVisResult, FeatureVisSettings
    from ..featurevis.transforms import TransformSettings
    from ..images import DecodedImage
    from ..layouts import Layout
    from ..methods import MethodResult
    from ..sanity import RandomisationStep
    from ..targets import ClassTarget, Prediction, RegressionTarget, SegmentationTarget
    from ..tracing import CamSite, LayerInfo, Trace
    from .bundle import Normalization

    types = (
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
    return {cls.__name__: cls for cls in types}


def _init_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


class _Encoder:
    def __init__(self) -> None:
        self.tensors: list[torch.Tensor] = []
        self.nodes = 0

    def tensor(self, tensor: torch.Tensor) -> int:
        if tensor.dtype not in DTYPE_NAMES:
            raise CodecError(f"A tensor of {tensor.dtype} cannot be sent.")
        self.tensors.append(tensor.detach().cpu())
        return len(self.tensors) - 1

    def encode(self, value: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise CodecError("The value is too deeply nested or too large to send.")
        if value is None or isinstance(value, (bool, str)):
            if isinstance(value, str) and len(value) > MAX_STRING:
                raise CodecError("A text is too long to send.")
            return value
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, (float, np.floating)):
            number = float(value)
            return number if math.isfinite(number) else {"$float": repr(number)}
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.ndarray):
            if value.dtype == object:
                raise CodecError("An array of Python objects cannot be sent.")
            return {"$np": self.tensor(torch.from_numpy(np.array(value, copy=True, order="C")))}
        if isinstance(value, torch.Tensor):
            return {"$pt": self.tensor(value)}
        if isinstance(value, Image.Image):
            if value.mode != "RGB":
                raise CodecError(f"A {value.mode} picture cannot be sent; only RGB.")
            return {"$pil": self.tensor(torch.from_numpy(np.asarray(value).copy()))}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            name = type(value).__name__
            if _allowed().get(name) is not type(value):
                raise CodecError(f"A {name} cannot be sent to or from the model's process.")
            fields = {key: self.encode(getattr(value, key), depth + 1) for key in _init_fields(type(value))}
            return {"$dc": name, "f": fields}
        if isinstance(value, tuple):
            return {"$tuple": [self.encode(item, depth + 1) for item in value]}
        if isinstance(value, frozenset):
            return {"$frozenset": [self.encode(item, depth + 1) for item in sorted(value, key=repr)]}
        if isinstance(value, list):
            return [self.encode(item, depth + 1) for item in value]
        if isinstance(value, dict):
            if not all(isinstance(key, str) for key in value):
                raise CodecError("Only dictionaries with text keys can be sent.")
            return {"$d": {key: self.encode(item, depth + 1) for key, item in value.items()}}
        raise CodecError(f"A {type(value).__name__} cannot be sent to or from the model's process.")


def encode(value: Any) -> tuple[Any, list[torch.Tensor]]:
    """`(structure, tensors)`: JSON-able `structure` refers to `tensors` by index. CodecError for what cannot go."""
    encoder = _Encoder()
    return encoder.encode(value), encoder.tensors


class _Decoder:
    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self.tensors = tensors
        self.nodes = 0

    def tensor(self, index: Any) -> torch.Tensor:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.tensors):
            raise CodecError("The message refers to a tensor it does not hold.")
        return self.tensors[index]

    def decode(self, value: Any, depth: int = 0) -> Any:
        self.nodes += 1
        if depth > MAX_DEPTH or self.nodes > MAX_NODES:
            raise CodecError("The message is too deeply nested or too large.")
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise CodecError("A text in the message is too long.")
            return value
        if isinstance(value, list):
            return [self.decode(item, depth + 1) for item in value]
        if not isinstance(value, dict) or len(value) not in (1, 2):
            raise CodecError("The message holds a value of no known form.")
        if "$dc" in value:
            return self.dataclass(value, depth)
        ((kind, body),) = value.items()
        if kind == "$float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if kind == "$np":
            return self.tensor(body).numpy()
        if kind == "$pt":
            return self.tensor(body)
        if kind == "$pil":
            pixels = self.tensor(body)
            if pixels.dtype != torch.uint8 or pixels.dim() != 3 or pixels.shape[2] != 3:
                raise CodecError("A picture in the message is not (H, W, 3) bytes.")
            return Image.fromarray(pixels.numpy(), "RGB")
        if kind in ("$tuple", "$frozenset") and isinstance(body, list):
            items = [self.decode(item, depth + 1) for item in body]
            return tuple(items) if kind == "$tuple" else frozenset(items)
        if kind == "$d" and isinstance(body, dict):
            return {key: self.decode(item, depth + 1) for key, item in body.items()}
        raise CodecError("The message holds a value of no known form.")

    def dataclass(self, value: dict[str, Any], depth: int) -> Any:
        cls = _allowed().get(value["$dc"]) if isinstance(value["$dc"], str) else None
        fields = value.get("f")
        if cls is None or not isinstance(fields, dict) or sorted(fields) != sorted(_init_fields(cls)):
            raise CodecError("The message holds a value of a type that may not cross.")
        try:
            return cls(**{key: self.decode(item, depth + 1) for key, item in fields.items()})
        except (TypeError, ValueError) as exc:  # a __post_init__ refusing its fields
            raise CodecError(f"A {cls.__name__} in the message is malformed.") from exc


def decode(structure: Any, tensors: list[torch.Tensor]) -> Any:
    """The value `encode` was given; CodecError for anything else."""
    return _Decoder(tensors).decode(structure)
