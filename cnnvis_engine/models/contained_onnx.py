"""An uploaded ONNX model in its worker: the whole engine call runs there (`ContainedOnnxModel.call`), where every
layer of the converted model is in sight; `in_worker` marks the engine functions that send themselves, `shippable`
says how their image arguments travel (contained.py runs the worker itself)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import weakref
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast

import torch
from torch import nn

from .contained import ContainedModel, Worker

_P = ParamSpec("_P")
_R = TypeVar("_R")

# The ModelBundle fields an ONNX worker gets (all but the module, which it converted itself, and the lock).
BUNDLE_FIELDS = (
    "name",
    "class_names",
    "task",
    "input_size",
    "normalization",
    "weights_source",
    "weights_detail",
    "description",
    "output_names",
)
BUNDLES_KEPT = 4  # bundle settings a worker keeps (a bundle and its copy with cleaned class names, a sanity copy)


class ContainedOnnxModel(ContainedModel):
    """An uploaded ONNX model, converted and run in its worker process. (N, C, H, W) -> its output, like
    ContainedModel; besides, `Explainer(bundle)` over it is a `ContainedExplainer` and the engine functions marked
    `in_worker` run whole in the worker (`call`), where every layer of the converted model is in sight."""

    runs_torchscript = False
    runs_in_worker = True

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker)
        # each bundle's settings key (bundles are frozen), so a call does not encode 1,000 class names again
        self._keys: weakref.WeakKeyDictionary[Any, dict[int, tuple[str, Any, list[torch.Tensor]]]] = (
            weakref.WeakKeyDictionary()
        )

    def call(
        self,
        bundle: Any,
        name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        cache_size: int = 2,
    ) -> Any:
        """`name(*args, **kwargs)` of the worker's Explainer for `bundle`'s settings (or of the engine function
        `name` with that bundle first), its result rebuilt here (contained_codec). A `progress` callable in
        `kwargs` is called here as the worker reports."""
        from .contained_codec import decode, encode

        kwargs = dict(kwargs or {})
        progress = kwargs.pop("progress", None)
        key = self._bundle_key(bundle, cache_size)
        structure, tensors = encode({"args": list(args), "kwargs": kwargs})
        header = {"op": "call", "key": key, "name": name, "arguments": structure, "progress": progress is not None}

        def report(reply: dict[str, Any], out: list[torch.Tensor]) -> None:
            progress(*decode(reply["progress"], out))

        reply, out = self.worker.request(header, tuple(tensors), report if progress is not None else None)
        return decode(reply.get("result"), out)

    def _bundle_key(self, bundle: Any, cache_size: int) -> str:
        """The key of `bundle`'s settings in the worker, sent there first if it does not know them."""
        from .contained_codec import encode

        known = self._keys.setdefault(bundle, {})
        if cache_size not in known:
            settings, tensors = encode({name: getattr(bundle, name) for name in BUNDLE_FIELDS})
            key = hashlib.sha256(json.dumps([settings, cache_size]).encode()).hexdigest()
            known[cache_size] = (key, settings, tensors)
        key, settings, tensors = known[cache_size]
        if not self.worker.knows(key):
            header = {"op": "bundle", "key": key, "settings": settings, "cache_size": cache_size}
            self.worker.set_up(key, header, tuple(tensors), BUNDLES_KEPT)
        return key


def runs_in_worker(module: nn.Module) -> bool:
    """Whether `module` stands for a model whose engine calls run whole in its worker (an ONNX upload)."""
    return bool(getattr(module, "runs_in_worker", False))


def shippable(bundle: Any, image: Any) -> Any:
    """An image argument as it goes to the worker: decoded here (a path is the caller's to read, never the
    worker's), its picture already resized to the model's input (what the worker's engine would make of it,
    a fraction of the bytes). A ready tensor batch and lists go as they are, their images shipped one by one."""
    from ..images import DecodedImage, decode_image

    if isinstance(image, torch.Tensor):
        return image
    if isinstance(image, (list, tuple)):
        return [shippable(bundle, item) for item in image]
    decoded = image if isinstance(image, DecodedImage) else decode_image(image)
    from PIL import Image

    return dataclasses.replace(decoded, image=Image.fromarray(bundle.resize(decoded.image)))


def in_worker(*, images: tuple[str, ...] = ()) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Mark an engine function whose first argument is a ModelBundle: for a model that runs in a worker, the
    whole call runs there (by the function's name, which onnx_worker.CALLS must list), with the arguments named
    in `images` shipped as `shippable` says; for any other model it runs here as written."""

    def decorate(function: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            bundle = args[0]  # every marked function takes the ModelBundle first
            module = getattr(bundle, "module", None)
            if not isinstance(module, ContainedOnnxModel) or not runs_in_worker(module):
                return function(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            arguments: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(value)
                else:
                    arguments[name] = shippable(bundle, value) if name in images else value
            return cast(_R, module.call(bundle, function.__name__, (), arguments))  # the worker sends back an _R

        return wrapper

    return decorate
