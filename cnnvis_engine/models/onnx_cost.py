"""What one forward pass of an uploaded ONNX file would cost, decided before onnx2torch converts anything (the
static checks on the file itself are onnx_checks.py's).

The cost comes from onnx's shape inference (data propagation on, strict off) at the model's input size, on a copy
without the file's own shape declarations (which could understate a tensor) and without large weights (their
shapes suffice). Every value then has an exact size or an upper bound from its inputs; an operation whose output
has neither (ConstantOfShape, Expand, Tile, Resize, Range, Pad ... of a size computed from the picture's values)
cannot be bounded and is refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ModelFileError
from .onnx_checks import first_line, itemsize, node_label

# One forward pass at the model's input size, batch 1, as forward_cost counts it (measured on torchvision exports at
# 224×224; docs/RELIABILITY.md, "ONNX uploads: complete static checks"): resnet50 0.11 GB of values and 4.1 G
# multiply-adds, convnext_tiny 0.32 GB and 4.5 G, vit_b_16 0.59 GB and 17.7 G. The limits leave room for models
# 3-10x larger (vit_l_16 is ~61 G multiply-adds, convnext_large 34 G), while a pass at the limit takes ~6 s on two
# CPU cores (resnet50's 4.1 G take 0.13 s, NOTES.md) and a backward pass, which keeps every value, a few GB.
MAX_ACTIVATION_BYTES = 2 * 10**9
MAX_MULTIPLY_ADDS = 200 * 10**9
DEFAULT_SIDE = 224  # a dynamic height or width is bounded at the size the app then uses
_KEEP_VALUES = 4096  # initializers up to this many elements keep their values for shape inference (shapes, scales)

# Operations whose output, when inference cannot size it, is still bounded by their inputs' sizes.
# fmt: off
_AS_FIRST_INPUT = frozenset({
    "Abs", "Acos", "Asin", "Atan", "Cos", "Sin", "Tan", "Tanh", "Ceil", "Floor", "Round", "Sign", "Celu", "Elu", "Selu",
    "Erf", "Exp", "Log", "Neg", "Not", "Reciprocal", "Relu", "LeakyRelu", "Sigmoid", "Softplus", "Softsign",
    "HardSigmoid", "HardSwish", "Sqrt", "IsInf", "IsNaN", "Cast", "Clip", "Dropout", "Identity", "Softmax",
    "LogSoftmax", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "LRN", "CumSum", "PRelu",
    "DepthToSpace", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice", "Split", "TopK", "ArgMax",
    "ArgMin", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "ReduceSumSquare", "GlobalAveragePool", "ScatterND", "EyeLike",
})
_SUM_OF_INPUTS = frozenset({"Concat"})
_PRODUCT_OF_INPUTS = frozenset({  # broadcasting can multiply sizes: [n, 1] + [1, n] is n²
    "Add", "And", "Div", "Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Max", "Min", "Mean", "Mod",
    "Mul", "Or", "Pow", "Sub", "Sum", "Xor", "Where", "MatMul", "Gather", "GatherElements", "GatherND", "Einsum",
})
# Operations on small shape values that _fold computes (each output at most _KEEP_VALUES elements).
_FOLDABLE = frozenset({
    "Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape", "Flatten", "Equal", "Where", "Cast",
    "ConstantOfShape", "Expand", "Add", "Sub", "Mul", "Div", "Mod", "Neg", "Abs", "Floor", "Ceil", "Max", "Min", "Less",
    "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Slice", "Identity", "Constant", "ReduceProd",
    "ReduceSum", "ReduceMax", "ReduceMin",
})
# fmt: on
MAX_FOLDED = 2048  # shape-arithmetic nodes computed per file at most (vit_b_16 needs 150)
FOLD_ROUNDS = 8  # shape inferences per file at most (vit_b_16 takes 3)
_POOLS = frozenset({"MaxPool", "AveragePool", "LpPool"})


@dataclass(frozen=True)
class PassCost:
    """One forward pass, batch 1: every value's bytes summed, multiply-adds, and the largest single value."""

    memory: int
    work: int
    bounded: bool  # some size is an upper bound from its inputs, not inferred
    largest: int
    largest_node: Any = field(repr=False)  # the NodeProto that makes it
    height: int
    width: int


def forward_cost(proto: Any, filename: str, spec: Any) -> PassCost:
    """What one forward pass costs at the input size `spec` gives (DEFAULT_SIDE where dynamic), from onnx's shape
    inference on a copy of the main graph without its large weights (nothing else is allocated). Raises
    ModelFileError where a size can be neither inferred nor bounded."""
    shape = _input_shape(spec)
    light, shapes = _shape_model(proto, shape)
    held = set(shapes)  # what the file itself holds keeps its declared shape
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 17)
    budget = [MAX_FOLDED]
    for _ in range(FOLD_ROUNDS):  # infer; compute the small shape values inference could not; infer again with them
        shapes.update((name, value) for name, value in _infer(light, filename).items() if name not in held)
        if not _fold(light, shapes, opset, budget):
            break
    del light
    sizes: dict[str, int] = {name: _count(dims) or 0 for name, (dims, _) in shapes.items() if name in held}
    memory = work = largest = 0
    bounded, largest_node = False, None
    for node in proto.graph.node:
        ins = [sizes.get(name, 0) for name in node.input if name]
        outs = []
        for name in node.output:
            if not name:
                continue
            dims, item = shapes.get(name, (None, 4))
            count = _count(dims)
            if count is None:
                count = _bound(node, ins, shapes)
                if count is None:
                    raise ModelFileError(
                        f"{filename}'s shapes cannot be bounded before it runs: node {node_label(node)} makes a tensor "
                        "whose size depends on values computed from the picture, so the memory it needs is unknown."
                    )
                bounded = True
            sizes[name] = count
            outs.append(count)
            memory += count * item
            if count * item > largest:
                largest, largest_node = count * item, node
        work += _work(node, outs, sizes, shapes)
    height, width = shape[1:3] if spec.channels_last else shape[2:4]
    return PassCost(memory, work, bounded, largest, largest_node, height, width)


def _infer(light: Any, filename: str) -> dict[str, tuple[list[int | None] | None, int]]:
    """The shapes onnx's inference gives every value of `light` (the inferred copy is dropped on return)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # onnx raises InferenceError, ValidationError or RuntimeError on malformed graphs
        raise ModelFileError(
            f"{filename}'s shapes could not be worked out ({first_line(exc)}), so the memory one picture needs "
            "cannot be bounded."
        ) from exc
    return {value.name: _shape(value.type) for value in [*inferred.graph.value_info, *inferred.graph.output]}


def check_forward_cost(proto: Any, filename: str, spec: Any) -> None:
    """Refuse a file whose one forward pass would hold more than MAX_ACTIVATION_BYTES of values or do more than
    MAX_MULTIPLY_ADDS, or whose sizes cannot be bounded (see forward_cost)."""
    cost = forward_cost(proto, filename, spec)
    about, picture = ("up to" if cost.bounded else "about"), f"one picture ({cost.height}×{cost.width}"
    if cost.memory > MAX_ACTIVATION_BYTES:
        raise ModelFileError(
            f"{filename}'s operations would need {about} {_gb(cost.memory)} of memory for {picture}; node "
            f"{node_label(cost.largest_node)} alone makes {_gb(cost.largest)}); the limit is {_gb(MAX_ACTIVATION_BYTES)}."
        )
    if cost.work > MAX_MULTIPLY_ADDS:
        raise ModelFileError(
            f"{filename}'s operations would take {about} {cost.work / 1e9:,.0f} billion multiply-adds for {picture}); "
            f"the limit is {MAX_MULTIPLY_ADDS / 1e9:,.0f} billion, so that explaining it stays quick."
        )


def _gb(count: int) -> str:
    return f"{count / 1e9:,.1f} GB" if count >= 10**8 else f"{count / 1e6:,.0f} MB"


def _input_shape(spec: Any) -> list[int]:
    """(1, C, H, W), or (1, H, W, C) for a channels-last file: the file's sizes, DEFAULT_SIDE where dynamic."""
    channels = spec.channels or 3
    height, width = spec.height or DEFAULT_SIDE, spec.width or DEFAULT_SIDE
    return [1, height, width, channels] if spec.channels_last else [1, channels, height, width]


# name -> (its dimensions, None where unknown, or None for no shape; bytes per element)
_Shapes = dict[str, tuple[list[int | None] | None, int]]


def _shape_model(proto: Any, shape: list[int]) -> tuple[Any, _Shapes]:
    """A copy of the main graph for shape inference, and the shapes of its inputs and weights: the image input at
    `shape`; large initializers and Constant tensors as inputs of their declared shape (their values are not
    needed); no value_info and untyped outputs, so that nothing the file declares about its values is believed."""
    import onnx
    from onnx import helper

    graph = proto.graph
    light = onnx.ModelProto(ir_version=proto.ir_version)
    light.opset_import.extend(proto.opset_import)
    target = light.graph
    inputs: _Shapes = {}

    def as_input(name: str, data_type: int, declared: Iterable[int]) -> None:
        dims: list[int | None] = [max(int(d), 0) for d in declared]
        target.input.append(helper.make_tensor_value_info(name, data_type, dims))
        inputs[name] = (dims, itemsize(data_type))

    weights = {t.name for t in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    for value in graph.input:
        if value.name not in weights:
            as_input(value.name, value.type.tensor_type.elem_type or onnx.TensorProto.FLOAT, shape)
    for tensor in graph.initializer:
        if math.prod(max(int(d), 0) for d in tensor.dims) <= _KEEP_VALUES:
            target.initializer.append(tensor)
            inputs[tensor.name] = ([max(int(d), 0) for d in tensor.dims], itemsize(tensor.data_type))
        else:
            as_input(tensor.name, tensor.data_type, tensor.dims)
    for sparse in graph.sparse_initializer:
        as_input(sparse.values.name, sparse.values.data_type, sparse.dims)
    for node in graph.node:
        value = next((a for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if node.op_type == "Constant" and value is not None and len(node.output) == 1 and node.ByteSize() > 4096:
            as_input(node.output[0], value.t.data_type, value.t.dims)
        else:
            target.node.append(node)
    target.output.extend(onnx.ValueInfoProto(name=value.name) for value in graph.output)
    return light, inputs


def _fold(light: Any, shapes: _Shapes, opset: int, budget: list[int]) -> bool:
    """Compute, with onnx's reference implementation, the small values (every output at most _KEEP_VALUES
    elements) that feed the first operations whose output shape inference left unknown, where they come from
    shapes and constants only (torch's exporter writes `h // p` as Div and Cast, and `expand(n, -1, -1)` as Equal
    and Where, where onnx's data propagation stops), and put them into `light` as initializers in place of the
    nodes that made them. At most `budget` nodes in all are computed. Whether anything changed."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    counts = {name: _count(dims) for name, (dims, _) in shapes.items()}

    def sized(name: str, limit: float = math.inf) -> bool:
        count = counts.get(name)
        return count is not None and count <= limit

    graph = light.graph
    unsized = [node for node in graph.node if not all(map(sized, filter(None, node.output)))]
    if not unsized:
        return False
    producer = {name: node for node in graph.node for name in node.output}
    # the first unsized operations: all they read is sized, so their inputs' values may settle their shapes
    stack = [name for node in unsized if all(map(sized, filter(None, node.input))) for name in node.input]
    wanted: set[str] = set()
    while stack:  # their foldable ancestors, back to shapes, constants and small weights
        name = stack.pop()
        node = producer.get(name)
        if name in wanted or node is None or node.op_type not in _FOLDABLE:
            continue
        if not all(sized(out, _KEEP_VALUES) for out in node.output):
            continue
        wanted.add(name)
        if node.op_type != "Shape":
            stack.extend(node.input)
    known = {tensor.name for tensor in graph.initializer}
    feeds: dict[str, Any] = {}
    nodes: list[Any] = []  # onnx NodeProtos
    for node in graph.node:  # in order: what can be computed from shapes, constants and small weights
        if not set(node.output) & wanted or len(node.output) != 1 or len(nodes) >= budget[0]:
            continue
        if node.op_type == "Shape":
            dims = shapes.get(node.input[0], (None, 4))[0]
            if dims is not None and None not in dims:
                start = next((a.i for a in node.attribute if a.name == "start"), 0)
                end = next((a.i for a in node.attribute if a.name == "end"), len(dims))
                feeds[node.output[0]] = np.array(dims[slice(start, end)], dtype=np.int64)
        elif all(name in known or name in feeds or name == "" for name in node.input):
            nodes.append(node)
            known.add(node.output[0])
    if not nodes:
        return False
    budget[0] -= len(nodes)
    small = [t for t in graph.initializer if any(t.name in n.input for n in nodes)]
    sub = helper.make_graph(
        nodes,
        "shapes",
        [
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape)
            for name, value in feeds.items()
        ],
        [helper.make_value_info(n.output[0], onnx.TypeProto()) for n in nodes],
        initializer=small,
    )
    try:
        results = ReferenceEvaluator(sub, opsets={"": opset}).run(None, feeds)
    except Exception:  # noqa: BLE001 - values it cannot compute stay unknown, and the check refuses if they matter
        return False
    computed = {n.output[0]: np.asarray(r) for n, r in zip(nodes, results, strict=True)}
    if any(value.size > _KEEP_VALUES for value in computed.values()):
        return False
    for node in graph.node:
        if node.op_type == "Shape" and node.output[0] in feeds:
            computed[node.output[0]] = feeds[node.output[0]]
    for node in [n for n in graph.node if len(n.output) == 1 and n.output[0] in computed]:
        graph.node.remove(node)
        graph.initializer.append(numpy_helper.from_array(computed[node.output[0]], node.output[0]))
    return True


def _shape(type_proto: Any) -> tuple[list[int | None] | None, int]:
    """(dims with None where unknown, or None without a shape; the element size) of a tensor type."""
    if not type_proto.HasField("tensor_type"):
        return None, 4
    tensor = type_proto.tensor_type
    item = itemsize(tensor.elem_type) if tensor.elem_type else 4
    if not tensor.HasField("shape"):
        return None, item
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in tensor.shape.dim]
    return dims, item


def _count(dims: list[int | None] | None) -> int | None:
    if dims is None or any(d is None for d in dims):
        return None
    return math.prod(dims)  # type: ignore[arg-type]


def _bound(node: Any, ins: list[int], shapes: _Shapes) -> int | None:
    """An upper bound on the element count of one output of `node` from its inputs' counts, where one holds."""
    op = node.op_type
    if not ins:
        return None
    if op in _AS_FIRST_INPUT:
        return ins[0]
    if op in _SUM_OF_INPUTS:
        return sum(ins)
    if op in _PRODUCT_OF_INPUTS:
        return math.prod(max(n, 1) for n in ins)
    if op == "NonZero":  # (rank, number of non-zeros)
        dims, _ = shapes.get(node.input[0], (None, 4))
        return None if dims is None else max(len(dims), 1) * ins[0]
    return None


def _work(node: Any, outs: list[int], sizes: dict[str, int], shapes: _Shapes) -> int:
    """Multiply-adds of MatMul, Gemm, Conv, ConvTranspose and Einsum, a pooling window per output, and the output's
    element count for every other operation; an upper bound where a shape is not known."""
    op, out = node.op_type, sum(outs)

    def dims(index: int) -> list[int | None] | None:
        return shapes.get(node.input[index], (None, 4))[0] if len(node.input) > index else None

    def size(index: int) -> int:
        return sizes.get(node.input[index], 0) if len(node.input) > index else 0

    if op == "MatMul":
        a = dims(0)
        return out * (a[-1] if a and a[-1] is not None else max(size(1), 1))
    if op == "Gemm":
        a = dims(0)
        trans = any(attr.name == "transA" and attr.i for attr in node.attribute)
        inner = a[0 if trans else 1] if a and len(a) == 2 else None
        return out * (inner if inner is not None else max(size(1), 1))
    if op in ("Conv", "ConvTranspose"):
        w = dims(1)
        per = _count(w[1:]) if w else None
        per = per if per is not None else max(size(1), 1)
        return (out if op == "Conv" else size(0)) * per
    if op == "Einsum":
        return _einsum_work(node, [dims(i) for i in range(len(node.input))], [size(i) for i in range(len(node.input))])
    if op in _POOLS:
        kernel: list[int] = next((list(attr.ints) for attr in node.attribute if attr.name == "kernel_shape"), [])
        return out * max(math.prod(kernel), 1)
    return out


def _einsum_work(node: Any, dims: list[list[int | None] | None], sizes: list[int]) -> int:
    """The product of every index's size (each index letter once), or the product of the inputs' sizes where the
    equation or a shape is not plain."""
    equation = next((attr.s.decode(errors="replace") for attr in node.attribute if attr.name == "equation"), "")
    terms = equation.replace(" ", "").split("->")[0].split(",")
    fallback = math.prod(max(n, 1) for n in sizes)
    if "..." in equation or len(terms) != len(dims):
        return fallback
    letters: dict[str, int] = {}
    for term, shape in zip(terms, dims, strict=True):
        known = [d for d in shape or () if d is not None]
        if shape is None or len(known) != len(term) or len(known) != len(shape):
            return fallback
        for letter, dim in zip(term, known, strict=True):
            letters[letter] = max(letters.get(letter, 1), dim)
    return math.prod(letters.values())
