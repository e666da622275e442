"""ONNX files for the tests: a small custom network exported from PyTorch (dynamic batch axis), a channels-last
one (as Keras and TensorFlow export), and hand-built graphs the loader must refuse."""

from __future__ import annotations

import io
import warnings

import numpy as np
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


# --- hostile files for the complete static checks (tests/test_onnx_checks.py) -------------------------------------


def _external(name: str, location: str, dims: tuple[int, ...] = (3, 3)) -> TensorProto:
    """A float tensor whose bytes are said to lie in the file `location`."""
    tensor = _empty_tensor(name, list(dims))
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    tensor.external_data.add(key="length", value=str(4 * int(np.prod(dims))))
    return tensor


def _head(weight: str = "weight") -> list:
    """Pool → Flatten → MatMul with `weight` (3 × 3): the logits."""
    return [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", weight], ["logits"], name="matmul"),
    ]


def _constant_holding(attribute: onnx.AttributeProto) -> onnx.NodeProto:
    node = helper.make_node("Constant", [], ["weight"], name="constant")
    node.attribute.append(attribute)
    return node


def _mistyped(location: str, declared: int) -> bytes:
    """A Constant whose `value` attribute declares the type `declared` but holds an external tensor in `t`, which
    onnx2torch reads whatever the type says."""
    attribute = onnx.AttributeProto(name="value", type=declared)
    attribute.t.CopyFrom(_external("", location))
    return _model([_constant_holding(attribute), *_head()]).SerializeToString()


def _sparse_under_tensor(location: str) -> bytes:
    """A TENSOR-typed `value` attribute whose sparse_tensor field holds external values."""
    attribute = onnx.AttributeProto(name="value", type=onnx.AttributeProto.TENSOR)
    attribute.t.CopyFrom(helper.make_tensor("", TensorProto.FLOAT, [3, 3], [0.0] * 9))
    sparse = attribute.sparse_tensor
    sparse.values.CopyFrom(_external("values", location, (1,)))
    sparse.indices.CopyFrom(helper.make_tensor("indices", TensorProto.INT64, [1], [0]))
    sparse.dims.extend([3, 3])
    return _model([_constant_holding(attribute), *_head()]).SerializeToString()


def _branch(location: str, name: str) -> onnx.GraphProto:
    """A subgraph whose one output is an external tensor through a Constant."""
    return helper.make_graph(
        [helper.make_node("Constant", [], [name], value=_external("", location))],
        f"{name}_graph",
        [],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [3, 3])],
    )


def _in_if_branch(location: str) -> bytes:
    """An If whose then-branch makes the weight from external data (the else-branch from values in the file)."""
    inside = helper.make_graph(
        [
            helper.make_node(
                "Constant", [], ["other"], value=helper.make_tensor("", TensorProto.FLOAT, [3, 3], [0.0] * 9)
            )
        ],
        "else_graph",
        [],
        [helper.make_tensor_value_info("other", TensorProto.FLOAT, [3, 3])],
    )
    condition = helper.make_tensor("condition", TensorProto.BOOL, [], [True])
    branch = helper.make_node(
        "If", ["condition"], ["weight"], name="choose", then_branch=_branch(location, "then"), else_branch=inside
    )
    return _model([branch, *_head()], [condition]).SerializeToString()


def _graph_under_float(location: str) -> bytes:
    """A Relu with an extra attribute declared FLOAT whose `g` field holds a subgraph with external data."""
    attribute = onnx.AttributeProto(name="extra", type=onnx.AttributeProto.FLOAT, f=1.0)
    attribute.g.CopyFrom(_branch(location, "hidden"))
    relu = helper.make_node("Relu", ["flat"], ["relu"], name="relu")
    relu.attribute.append(attribute)
    nodes = _head()
    nodes[2].input[0] = "relu"
    initial = helper.make_tensor("weight", TensorProto.FLOAT, [3, 3], [0.0] * 9)
    return _model([*nodes[:2], relu, nodes[2]], [initial]).SerializeToString()


def _with_function(body: list) -> bytes:
    """The head's weight made by a model-local function `local.MakeWeight` whose nodes are `body`."""
    function = helper.make_function(
        "local", "MakeWeight", [], ["weight"], body, opset_imports=[helper.make_opsetid("", 17)]
    )
    call = helper.make_node("MakeWeight", [], ["weight"], name="make_weight", domain="local")
    model = _model([call, *_head()])
    model.opset_import.append(helper.make_opsetid("local", 1))
    model.functions.append(function)
    return model.SerializeToString()


def _in_function(location: str) -> bytes:
    return _with_function([helper.make_node("Constant", [], ["weight"], value=_external("", location))])


def _in_function_subgraph(location: str) -> bytes:
    """The function's own If holds the external tensor in a branch."""
    condition = helper.make_node("Constant", [], ["yes"], value=helper.make_tensor("", TensorProto.BOOL, [], [True]))
    choose = helper.make_node(
        "If", ["yes"], ["weight"], then_branch=_branch(location, "then"), else_branch=_branch(location, "else")
    )
    return _with_function([condition, choose])


HIDDEN_EXTERNAL = {
    "float-typed": lambda location: _mistyped(location, onnx.AttributeProto.FLOAT),
    "ints-typed": lambda location: _mistyped(location, onnx.AttributeProto.INTS),
    "tensors-typed": lambda location: _mistyped(location, onnx.AttributeProto.TENSORS),
    "graph-typed": lambda location: _mistyped(location, onnx.AttributeProto.GRAPH),
    "sparse-under-tensor": _sparse_under_tensor,
    "if-branch": _in_if_branch,
    "graph-under-float": _graph_under_float,
    "function": _in_function,
    "function-subgraph": _in_function_subgraph,
}


def _raw(name: str, dims: list[int]) -> TensorProto:
    """Zeros of shape `dims` stored as raw bytes (fast to build at any size)."""
    return helper.make_tensor(name, TensorProto.FLOAT, dims, np.zeros(dims, np.float32).tobytes(), raw=True)


def _int64s(name: str, values: list[int]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def constant_of_shape_bomb() -> bytes:
    """Some 300 bytes whose ConstantOfShape makes 600 million floats (2.4 GB) on every forward pass."""
    nodes = [
        helper.make_node("ConstantOfShape", ["size"], ["big"], name="big"),
        helper.make_node("ReduceSum", ["big"], ["total"], name="total"),
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Add", ["flat", "total"], ["logits"], name="add"),
    ]
    return _model(nodes, [_int64s("size", [600_000_000])]).SerializeToString()


def shared_weight_bomb(side: int = 2048, uses: int = 150) -> bytes:
    """One `side`² weight (16 MB) read by `uses` MatMuls; onnx2torch copies it into each (2.4 GB)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "widen"], ["v0"], name="widen"),
    ]
    nodes += [helper.make_node("MatMul", [f"v{i}", "shared"], [f"v{i + 1}"], name=f"use{i}") for i in range(uses)]
    nodes.append(helper.make_node("MatMul", [f"v{uses}", "narrow"], ["logits"], name="narrow"))
    weights = [_raw("widen", [3, side]), _raw("shared", [side, side]), _raw("narrow", [side, 3])]
    return _model(nodes, weights).SerializeToString()


def matmul_chain_bomb(side: int = 8192, length: int = 19_987) -> bytes:
    """A 0.6 MB file: a `side`² matrix made by ConstantOfShape (268 MB, within the memory limit) multiplied into a
    vector `length` times: 1.3 trillion multiply-adds, hours of CPU, for each forward pass."""
    nodes = [
        helper.make_node("ConstantOfShape", ["size"], ["matrix"], name="matrix"),
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "widen"], ["v0"], name="widen"),
    ]
    nodes += [helper.make_node("MatMul", [f"v{i}", "matrix"], [f"v{i + 1}"], name=f"m{i}") for i in range(length)]
    nodes.append(helper.make_node("MatMul", [f"v{length}", "narrow"], ["logits"], name="narrow"))
    weights = [_int64s("size", [side, side]), _raw("widen", [3, side]), _raw("narrow", [side, 3])]
    return _model(nodes, weights).SerializeToString()


VALUE_SIZED_OPS = ("ConstantOfShape", "Expand", "Tile", "Range", "Resize")


def value_sized(op: str = "ConstantOfShape") -> bytes:
    """`op` making a tensor of a size computed from the picture's brightest pixel (× 10⁹): no bound before it
    runs. The node is named 'big'."""
    maker = {
        "ConstantOfShape": helper.make_node("ConstantOfShape", ["size"], ["big"], name="big"),
        "Expand": helper.make_node("Expand", ["unit", "size"], ["big"], name="big"),
        "Tile": helper.make_node("Tile", ["unit", "size"], ["big"], name="big"),
        "Range": helper.make_node("Range", ["zero", "scaled", "step"], ["big"], name="big"),
        "Resize": helper.make_node("Resize", ["square", "", "", "sizes"], ["big"], name="big"),
    }[op]
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["brightest"], name="brightest", keepdims=0),
        helper.make_node("Mul", ["brightest", "billion"], ["scaled"], name="scale"),
        helper.make_node("Cast", ["scaled"], ["count"], name="count", to=TensorProto.INT64),
        helper.make_node("Reshape", ["count", "one"], ["size"], name="size"),
        helper.make_node("Concat", ["three_ones", "size"], ["sizes"], name="sizes", axis=0),
        maker,
        helper.make_node("ReduceSum", ["big"], ["total"], name="total"),
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Add", ["flat", "total"], ["logits"], name="add"),
    ]
    weights = [
        helper.make_tensor("billion", TensorProto.FLOAT, [], [1e9]),
        helper.make_tensor("unit", TensorProto.FLOAT, [1], [1.0]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("step", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("square", TensorProto.FLOAT, [1, 1, 1, 1], [1.0]),
        _int64s("one", [1]),
        _int64s("three_ones", [1, 1, 1]),
    ]
    return _model(nodes, weights).SerializeToString()


def relu_loop() -> bytes:
    """relu1 reads its own output."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Relu", ["looped"], ["looped"], name="relu1"),
        helper.make_node("Add", ["flat", "looped"], ["sum"], name="add"),
        helper.make_node("Identity", ["sum"], ["logits"], name="out"),
    ]
    return _model(nodes).SerializeToString()


def two_node_loop() -> bytes:
    """add needs relu's output, and relu needs add's."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Add", ["flat", "back"], ["sum"], name="add"),
        helper.make_node("Relu", ["sum"], ["back"], name="relu"),
        helper.make_node("Identity", ["sum"], ["logits"], name="out"),
    ]
    return _model(nodes).SerializeToString()


def dangling() -> bytes:
    """matmul reads 'missing_weight', which nothing in the file makes."""
    return _model(_head("missing_weight")).SerializeToString()
