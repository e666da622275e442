"""Static checks on an uploaded ONNX file, made complete rather than pattern lists: every tensor anywhere in the
file, every weight per use and every operation's order, all decided before onnx2torch converts anything; then the
converted module's real weight bytes.

- External data: a TensorProto may say its bytes lie in another file. onnx2torch reads a node attribute's tensor
  whenever one is present, whatever type the attribute declares, so the walk looks at every field that can hold a
  tensor or a graph (`t`, `tensors`, `sparse_tensor(s)`, `g`, `graphs`) with HasField/len, never at `type`, and
  goes into every subgraph, model-local function and training graph.
- Weights per use: onnx2torch copies an initializer into every node that reads it, so a 16 MB weight read by 150
  MatMuls costs 2.4 GB; each use counts its bytes again.
- Order: the nodes must be in the order they run (the ONNX rule onnx2torch relies on); a node reading an output
  that no earlier node, weight or input makes is a loop, a misordering or a dangling name.

What one forward pass would cost is onnx_cost.py's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ModelFileError, shown

if TYPE_CHECKING:
    from torch import nn

EXTERNAL_SENTENCE = (
    "{filename} keeps some of its weights in separate files ('external data'), which an upload must not make the "
    "server open. Upload the model's .onnx file together with the .onnx.data file the exporter wrote beside it "
    "(both at once), or export a single file (for example torch.onnx.export(..., external_data=False), or "
    "onnx.save(model, 'model.onnx', save_as_external_data=False))."
)


# --- walking every tensor ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileParts:
    """Everything in the file that holds nodes or tensors, found in one walk."""

    containers: list[Any]  # the main graph (first), model-local functions, training graphs, and every subgraph
    attributes: list[Any]  # every attribute of their nodes, and the functions' default attribute values


def walk(proto: Any) -> FileParts:
    """The main graph, every model-local function and training graph, and every subgraph inside any of them,
    found through each attribute's fields (HasField/len), whatever type the attribute declares."""
    stack: list[Any] = [proto.graph, *proto.functions]
    for info in proto.training_info:
        stack += [info.initialization, info.algorithm]
    containers, attributes = [], []
    while stack:
        item = stack.pop()
        containers.append(item)
        found = [attribute for node in item.node for attribute in node.attribute]
        found += getattr(item, "attribute_proto", ())
        for attribute in found:
            if attribute.HasField("g"):
                stack.append(attribute.g)
            stack.extend(attribute.graphs)
        attributes += found
    return FileParts(containers, attributes)


def _sparse_of(attribute: Any) -> list[Any]:
    return [*([attribute.sparse_tensor] if attribute.HasField("sparse_tensor") else []), *attribute.sparse_tensors]


def all_tensors(parts: FileParts) -> Iterator[Any]:
    """Every TensorProto in the file: initializers, sparse initializers and attribute tensors of every container."""
    for item in parts.containers:
        yield from getattr(item, "initializer", ())
        for sparse in getattr(item, "sparse_initializer", ()):
            yield from (sparse.values, sparse.indices)
    for attribute in parts.attributes:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        for sparse in _sparse_of(attribute):
            yield from (sparse.values, sparse.indices)


def check_external(parts: FileParts, filename: str) -> None:
    """Refuse any tensor that points to bytes elsewhere, with one sentence whatever it names (no oracle)."""
    import onnx

    for tensor in all_tensors(parts):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0:
            raise ModelFileError(EXTERNAL_SENTENCE.format(filename=filename))


def count_nodes(parts: FileParts) -> int:
    return sum(len(item.node) for item in parts.containers)


# --- weights, per use -------------------------------------------------------------------------------------------


def itemsize(data_type: int) -> int:
    import onnx

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return 1  # strings and unknown types: at least a byte each


def _declared(tensor: Any) -> int:
    return math.prod(max(int(dim), 0) for dim in tensor.dims) * itemsize(tensor.data_type)


def _sparse_declared(sparse: Any) -> int:
    """A sparse tensor as the dense one converting it may make, and at least what it brings."""
    dense = math.prod(max(int(dim), 0) for dim in sparse.dims) * itemsize(sparse.values.data_type)
    return max(dense, _declared(sparse.values) + _declared(sparse.indices))


def weight_bytes(parts: FileParts) -> tuple[int, bool]:
    """`(bytes, shared)`: what converting the file allocates for its weights, each initializer counted once per
    node input that reads it (directly or through an Identity of it), every attribute tensor once; `shared` says
    whether some weight counted more than once."""
    uses: Counter[str] = Counter()
    alias: dict[str, str] = {}
    weights: dict[str, int] = {}  # name -> declared bytes (summed where a name repeats across subgraphs)
    for item in parts.containers:
        for tensor in getattr(item, "initializer", ()):
            weights[tensor.name] = weights.get(tensor.name, 0) + _declared(tensor)
        for sparse in getattr(item, "sparse_initializer", ()):
            weights[sparse.values.name] = weights.get(sparse.values.name, 0) + _sparse_declared(sparse)
        for node in item.node:
            inputs = node.input
            for name in inputs:
                uses[name] += 1
            if node.op_type == "Identity" and len(inputs) == 1 and len(node.output) == 1:
                alias[node.output[0]] = inputs[0]
    for name in list(uses):  # an Identity of a weight hands the weight itself on (see _skip_weight_identities)
        root, seen = name, set()
        while root in alias and root not in seen:
            seen.add(root)
            root = alias[root]
        if root != name and root in weights:
            uses[root] += uses[name]
    total = sum(size * max(uses[name], 1) for name, size in weights.items())
    shared = any(uses[name] > 1 for name in weights)
    for attribute in parts.attributes:
        total += sum(_declared(tensor) for tensor in attribute.tensors)
        total += _declared(attribute.t) if attribute.HasField("t") else 0
        total += sum(_sparse_declared(sparse) for sparse in _sparse_of(attribute))
    return total, shared


# --- order ---------------------------------------------------------------------------------------------------------


def node_label(node: Any) -> str:
    return f"{shown(node.name or node.op_type)} ({shown(node.op_type, 40)[1:-1]})"


def check_order(proto: Any, filename: str) -> None:
    """Every input of a main-graph node is made before it (by a node, a weight or the graph's input), each name is
    made once, and every output of the graph is made."""
    graph = proto.graph
    nodes = graph.node
    made: dict[str, int] = {"": -1}  # name -> index of the node that makes it (-1: an input, a weight, or none)
    made.update((name, -1) for name in [v.name for v in graph.input] + [t.name for t in graph.initializer])
    made.update((s.values.name, -1) for s in graph.sparse_initializer)
    for index, node in enumerate(nodes):
        for name in node.input:
            if name not in made:
                _refuse_unmade(filename, nodes, index, name)
        for name in node.output:
            if name in made and name:
                first = "an input or weight" if made[name] < 0 else f"node {node_label(nodes[made[name]])}"
                raise ModelFileError(
                    f"{filename} cannot be run: {shown(name)} is made twice, by {first} and by node {node_label(node)}."
                )
            made[name] = index
    for value in graph.output:
        if value.name not in made:
            raise ModelFileError(f"{filename} cannot be run: its output {shown(value.name)} is made by no operation.")


def _refuse_unmade(filename: str, nodes: Any, index: int, name: str) -> None:
    """Node `index` reads `name`, which nothing before it made: say whether nothing makes it, the node itself does,
    a later node does from this node's result (a loop), or a later node does (out of order)."""
    node = nodes[index]
    producer: dict[str, int] = {}
    for at, other in enumerate(nodes):
        for output in other.output:
            producer.setdefault(output, at)
    later = producer.get(name)
    if later is None:
        raise ModelFileError(
            f"{filename} cannot be run: node {node_label(node)} needs {shown(name)}, which no operation, weight or input "
            "in the file makes."
        )
    if later == index:
        raise ModelFileError(
            f"{filename} cannot be run: its operations form a loop: node {node_label(node)} needs its own output "
            f"{shown(name)}."
        )
    if _depends_on(nodes, producer, later, index):
        raise ModelFileError(
            f"{filename} cannot be run: its operations form a loop: node {node_label(node)} needs {shown(name)}, which "
            f"node {node_label(nodes[later])} makes from its result."
        )
    raise ModelFileError(
        f"{filename} cannot be run: node {node_label(node)} needs {shown(name)} before node {node_label(nodes[later])} makes "
        "it (its operations are not in the order they run)."
    )


def _depends_on(nodes: Any, producer: dict[str, int], start: int, target: int) -> bool:
    """Whether node `start` reads, through any chain of nodes, an output of node `target`."""
    stack, seen = [start], {start}
    while stack:
        for name in nodes[stack.pop()].input:
            index = producer.get(name)
            if index == target:
                return True
            if index is not None and index not in seen:
                seen.add(index)
                stack.append(index)
    return False


# --- after conversion ----------------------------------------------------------------------------------------------


def check_converted(module: nn.Module, filename: str, max_bytes: int) -> None:
    """Refuse a converted module whose parameters and buffers hold more than `max_bytes`, each tensor object
    counted (so copies of one weight count per copy): the backstop behind `weight_bytes`."""
    tensors = [*module.parameters(), *module.buffers()]  # each object once, as nn.Module de-duplicates
    total = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    if total > max_bytes:
        raise ModelFileError(
            f"{filename} became {total / 2**20:,.0f} MB of weights once converted to PyTorch (a weight several "
            f"operations share is copied for each); the limit is {max_bytes / 2**20:,.0f} MB."
        )


# --- the converter's own failures ----------------------------------------------------------------------------------


def conversion_sentence(filename: str, exc: BaseException) -> str:
    """A sentence for an exception from onnx2torch or onnx, naming the node being converted where there was one."""
    node = None
    traceback = exc.__traceback__
    while traceback is not None:  # onnx2torch.converter.convert's loop holds the node in `onnx_node`
        frame = traceback.tb_frame
        if frame.f_globals.get("__name__") == "onnx2torch.converter" and "onnx_node" in frame.f_locals:
            node = frame.f_locals["onnx_node"].proto
        traceback = traceback.tb_next
    if isinstance(exc, KeyError):
        problem = f"it refers to {shown(exc.args[0] if exc.args else '')}, which the converter could not find"
    elif isinstance(exc, IndexError):
        problem = "it lacks an input or a setting it needs"
    else:
        problem = f"{type(exc).__name__}: {first_line(exc)}"
    where = f"node {node_label(node)}: " if node is not None else ""
    return f"{filename} could not be converted to PyTorch: {where}{problem}."


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")[:300]
