"""ONNX files for the tests: a small custom network exported from PyTorch (dynamic batch axis), a channels-last
one (as Keras and TensorFlow export), and hand-built graphs the loader must refuse."""

from __future__ import annotations

import io
import warnings

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

CLASSES = ("circle", "square", "triangle", "star")


class SmallCNN(nn.Module):
    """(N, C, 40, 48) -> (N, 4): three convolutions (the last at 10×12), global average pool, one Linear."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class ChannelsLast(nn.Module):
    """`inner` taking (N, H, W, C), as a Keras model exported with tf2onnx does."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


def small_cnn(seed: int = 0, channels: int = 3) -> SmallCNN:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SmallCNN(channels).eval()


def export(
    module: nn.Module, shape: tuple[int, ...], *, dynamic_batch: bool = True, dynamic_size: bool = False
) -> bytes:
    """`module` as ONNX bytes (the TorchScript-based exporter, opset 17)."""
    axes = {0: "batch"} if dynamic_batch else {}
    if dynamic_size:
        axes |= {2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            torch.zeros(shape),
            buffer,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": axes, "logits": {0: "batch"}} if axes else None,
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def _model(nodes: list, initializers: list | None = None, inputs: list | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "case",
        inputs or [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=initializers or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _empty_tensor(name: str, dims: list[int]) -> TensorProto:
    """A float tensor that declares `dims` and holds no values (helper.make_tensor insists on them)."""
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT)
    tensor.dims.extend(dims)
    return tensor


def unsupported_op() -> bytes:
    """Pool → Flatten → Hardmax: onnx2torch has no converter for Hardmax."""
    return _model(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
            helper.make_node("Hardmax", ["flat"], ["logits"], name="hardmax"),
        ]
    ).SerializeToString()


def external_data(location: str) -> bytes:
    """Pool → Flatten → MatMul with a weight whose bytes are said to lie in the file `location`."""
    weight = _empty_tensor("weight", [3, 3])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value=location)
    weight.external_data.add(key="length", value="36")
    return _model(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
            helper.make_node("MatMul", ["flat", "weight"], ["logits"], name="matmul"),
        ],
        [weight],
    ).SerializeToString()


def declared_huge() -> bytes:
    """A weight that declares 10^6 × 10^6 floats (4 TB) and brings none."""
    weight = _empty_tensor("weight", [10**6, 10**6])
    return _model(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
            helper.make_node("MatMul", ["flat", "weight"], ["logits"], name="matmul"),
        ],
        [weight],
    ).SerializeToString()


def two_inputs() -> bytes:
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 8, 8]) for name in ("input", "other")]
    return _model(
        [
            helper.make_node("Add", ["input", "other"], ["sum"], name="add"),
            helper.make_node("GlobalAveragePool", ["sum"], ["pooled"], name="pool"),
            helper.make_node("Flatten", ["pooled"], ["logits"], name="flatten"),
        ],
        inputs=inputs,
    ).SerializeToString()
