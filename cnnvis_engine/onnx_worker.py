"""The worker side of an uploaded ONNX model: conversion and every pass happen here, in the locked-in process of
models/contained_worker.py, never in the server.

`warm_up` runs before the worker locks itself in: it imports onnx, onnx2torch and the engine, and converts and
explains a small model of its own, so that every module and library loaded lazily is loaded while files can
still be opened. `OnnxServer` then answers, besides the TorchScript worker's "forward" / "backward" / "forget":

- "load": the ONNX bytes, converted with `onnx_files.convert_onnx` (under the memory limit and the deadline);
- "bundle": a ModelBundle's settings (name, class names, input size, normalisation, ...) under a key; an
  `Explainer` over the converted model with those settings is kept for that key (the last BUNDLES_KEPT);
- "call": one of CALLS (the Explainer's public methods, and the engine functions that take a bundle: the
  randomisation test, faithfulness scores, feature visualisation) with arguments and results in
  models/contained_codec.py's form. A `progress` argument becomes messages sent back while the call runs.

An EngineError raised here goes back as its class name and sentence, and the server raises the same class.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch

from .errors import EngineError
from .explainer import Explainer
from .faithfulness import evaluate_maps
from .featurevis import channel_count, render_channels
from .models import contained_worker as wire
from .models.bundle import ModelBundle
from .models.contained_codec import decode, encode
from .models.contained_onnx import BUNDLE_FIELDS, BUNDLES_KEPT
from .models.onnx_files import convert_onnx
from .sanity import randomisation_layers, randomisation_test

EXPLAINER_CALLS = frozenset({"trace", "layers", "predict", "explain", "explain_batch", "concepts", "sub_concepts"})
CALLS: dict[str, Callable[..., Any]] = {  # engine functions whose first argument is the bundle
    "randomisation_test": randomisation_test,
    "randomisation_layers": randomisation_layers,
    "evaluate_maps": evaluate_maps,
    "render_channels": render_channels,
    "channel_count": channel_count,
}


def warm_up() -> None:
    """Convert and explain a small ONNX network of our own with every method the dashboard offers, and run its
    checks, so that what the engine, onnx and onnx2torch import lazily is imported before locking in."""
    from PIL import Image

    from .explainer import ARTICLE_METHODS
    from .images import decode_image
    from .methods import METHODS
    from .models.onnx_files import load_onnx

    module, _ = load_onnx(_warm_up_model(), "warm-up.onnx", max_bytes=2**20)
    bundle = ModelBundle(name="warm-up", module=module, class_names=("a", "b", "c"), input_size=(64, 64))
    image = decode_image(Image.new("RGB", (72, 64), (120, 60, 30)))
    explainer = Explainer(bundle)
    every = explainer.explain(image, methods=list(METHODS), options={m: METHODS[m].quick_options() for m in METHODS})
    batch = explainer.explain_batch([image, image], methods=list(ARTICLE_METHODS))
    concepts = explainer.concepts(image, top=2), explainer.concepts(image, top=1, groups=2, region=(0, 0, 32, 32))
    steps = randomisation_test(bundle, image, "gradcam")
    scores = evaluate_maps(bundle, [image], [steps[0].map], steps=2)
    gallery = render_channels(bundle, randomisation_layers(bundle, image)[-1], 2, size=16, steps=2)
    for result in (
        every,
        batch,
        steps,
        scores,
        gallery,
        explainer.trace(image),
        concepts,
    ):  # every method's result can cross
        decode(*encode(result))


def _warm_up_model() -> bytes:
    """(N, 3, 64, 64) -> (N, 3): Conv, BatchNormalization, Relu, MaxPool, Conv, Relu, GlobalAveragePool, Flatten,
    Gemm, built with onnx.helper (torch's exporter would import torch._dynamo, which wants files at exit)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    generator = np.random.default_rng(0)

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(generator.normal(0, 0.3, shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "scale", "shift", "mean", "var"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
    ]
    ones = numpy_helper.from_array(np.ones(4, np.float32), "scale")
    initializers = [weight("w1", 4, 3, 3, 3), weight("b1", 4), ones, weight("shift", 4), weight("mean", 4)]
    initializers += [numpy_helper.from_array(np.ones(4, np.float32), "var"), weight("w2", 4, 4, 3, 3)]
    initializers += [weight("b2", 4), weight("w3", 3, 4), weight("b3", 3)]
    graph = helper.make_graph(
        nodes,
        "warm-up",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializers,
    )
    model: bytes = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    return model


class OnnxServer(wire._Server):
    """The requests of an uploaded ONNX model's worker (see the module's docstring)."""

    def __init__(self, replies: int, cpu_s: float) -> None:
        super().__init__()
        self.replies, self.cpu_s = replies, cpu_s
        self.explainers: OrderedDict[str, Explainer] = OrderedDict()

    def load(self, header: dict[str, Any], data: bytes) -> torch.nn.Module:
        self.explainers.clear()
        limit = header.get("max_bytes")
        return convert_onnx(
            data,
            str(header["filename"]),
            channels_last=bool(header["channels_last"]),
            max_bytes=int(limit) if isinstance(limit, int) else None,
        )

    def handle(
        self, header: dict[str, Any], tensors: list[torch.Tensor]
    ) -> tuple[dict[str, Any], tuple[torch.Tensor, ...]]:
        op = header["op"]
        try:
            if op == "bundle":
                return self._bundle(header, tensors)
            if op == "call":
                return self._call(header, tensors)
            return super().handle(header, tensors)
        except EngineError as exc:
            if wire.out_of_memory(exc):
                raise MemoryError(str(exc)) from exc
            return {"ok": False, "kind": "engine", "type": type(exc).__name__, "error": str(exc)[:4000]}, ()

    def _bundle(
        self, header: dict[str, Any], tensors: list[torch.Tensor]
    ) -> tuple[dict[str, Any], tuple[torch.Tensor, ...]]:
        if self.module is None:
            raise RuntimeError("no model loaded")
        settings = decode(header["settings"], tensors)
        if not isinstance(settings, dict) or sorted(settings) != sorted(BUNDLE_FIELDS):
            raise TypeError("malformed bundle settings")
        bundle = ModelBundle(module=self.module, **settings)
        self.explainers[header["key"]] = Explainer(bundle, cache_size=int(header["cache_size"]))
        self.explainers.move_to_end(header["key"])
        while len(self.explainers) > BUNDLES_KEPT:
            self.explainers.popitem(last=False)
        return {"ok": True}, ()

    def _call(
        self, header: dict[str, Any], tensors: list[torch.Tensor]
    ) -> tuple[dict[str, Any], tuple[torch.Tensor, ...]]:
        explainer = self.explainers.get(header["key"])
        if explainer is None:
            raise RuntimeError("unknown bundle")
        name = header["name"]
        arguments = decode(header["arguments"], tensors)
        if not isinstance(arguments, dict) or not isinstance(arguments.get("args"), list):
            raise TypeError("malformed arguments")
        args, kwargs = arguments["args"], arguments["kwargs"]
        if header.get("progress"):
            kwargs["progress"] = self._progress
        if name in EXPLAINER_CALLS:
            result = getattr(explainer, name)(*args, **kwargs)
        elif name in CALLS:
            result = CALLS[name](explainer.bundle, *args, **kwargs)
        else:
            raise RuntimeError(f"unknown call {name!r}")
        structure, out = encode(result)
        return {"ok": True, "result": structure}, tuple(out)

    def _progress(self, *args: Any) -> None:
        """Tell the server how far the call is; a new CPU ceiling starts from here, as the server's deadline does."""
        structure, out = encode(list(args))
        wire.write_message(self.replies, {"ok": True, "progress": structure}, tuple(out))
        wire._set_cpu_ceiling(self.cpu_s)
