"""ONNX uploads: a `.onnx` file (exported from PyTorch, Keras, TensorFlow or JAX) turned into PyTorch modules
with onnx2torch, so every layer is an `nn.Module` named after its ONNX node ("features/0/Conv" ...) and every
method, layer panels included, works on it.

ONNX is a data format: a graph of standard operations and their weights; nothing in it runs as Python. What
could still reach outside the upload is "external data", tensors whose bytes lie in other files named by
path (the path-traversal CVEs of 2024): the file is parsed from its bytes alone and any tensor that points
elsewhere is refused before anything reads it. These checks, and those in onnx_checks.py (the weights the
conversion allocates, the order of the operations, the memory and work of one forward pass), run in the server's
process before anything is converted (`check_onnx`); the conversion itself and every pass of an upload run in a
locked-in worker (models.contained, onnx_worker.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from torch import fx, nn

from ..errors import ModelFileError
from .onnx_checks import (
    check_converted,
    check_external,
    check_order,
    conversion_sentence,
    count_nodes,
    walk,
    weight_bytes,
)
from .onnx_cost import check_forward_cost

if TYPE_CHECKING:  # onnx is imported where it is used: only ONNX uploads need it
    from onnx import ModelProto

MAX_NODES = 20_000
# The newest default-domain opset onnx2torch 1.5 converts completely: it lacks ReduceMean 18 and Constant, Reshape
# and ReduceMean 19-21, which today's exporters write (the TorchScript exporter defaults to opset 20, the dynamo
# exporter to 18+). Files at a newer opset whose operations it lacks are brought down with onnx's version converter.
CONVERTER_OPSET = 17
_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}  # onnx.TensorProto element types


@dataclass(frozen=True)
class OnnxInput:
    """What the ONNX graph says about its image input; None where an axis is dynamic (or unnamed)."""

    channels: int | None
    height: int | None
    width: int | None
    channels_last: bool  # (N, H, W, C), as Keras and TensorFlow exports usually are


def is_onnx(data: bytes, filename: str) -> bool:
    """A `.onnx` name, or bytes that parse as an ONNX model with a graph (zips and pickles never do)."""
    if filename.lower().endswith(".onnx"):
        return True
    if data[:2] == b"PK" or data[:1] == b"\x80":
        return False
    try:
        proto = _parse(data)
    except ModelFileError:
        return False
    return proto.ir_version > 0 and len(proto.graph.node) > 0


def read_input(data: bytes) -> OnnxInput | None:
    """The input shape the file declares (for the preprocessing defaults), or None if it is not ONNX."""
    try:
        return _input_spec(_parse(data), "the file")
    except ModelFileError:
        return None


def load_onnx(data: bytes, filename: str, *, max_bytes: int) -> tuple[nn.Module, OnnxInput]:
    """`(module, input)`: the converted model, which takes `(N, C, H, W)` whatever layout the file had, and what
    the file says about its input, in this process (`check_onnx`, then `convert_onnx`). An upload is converted
    in its worker instead (models.contained). Raises ModelFileError with a sentence for every refusal."""
    checked = check_onnx(data, filename, max_bytes=max_bytes)
    module = convert_onnx(checked.data, filename, channels_last=checked.input.channels_last, max_bytes=max_bytes)
    return module, checked.input


class CheckedOnnx(NamedTuple):
    """A file that passed `check_onnx`: what it says about its input, and the bytes to convert (the file itself,
    or the file brought down to CONVERTER_OPSET where the converter lacks some of its newer operations)."""

    input: OnnxInput
    data: bytes
    note: str = ""  # said to the person where the file was brought down to an older opset


def check_onnx(data: bytes, filename: str, *, max_bytes: int) -> CheckedOnnx:
    """Every check that needs no conversion (parsing, external data, sizes, the input, operations the converter
    lacks): quick, and safe in the server's process. A file at a newer opset than onnx2torch converts (today's
    exporters write 18-21) is brought down to CONVERTER_OPSET with onnx's own version converter, after the checks
    passed on the file as uploaded. Raises ModelFileError with a sentence."""
    proto = _parse(data, filename)
    _check_safe(proto, filename, max_bytes)
    spec = _input_spec(proto, filename)
    unsupported = _unsupported_ops(proto)
    if not unsupported:
        return CheckedOnnx(spec, data)
    older = _older_opset(proto)
    if older is None or _unsupported_ops(older):
        raise ModelFileError(_unsupported_sentence(filename, unsupported))
    version = _default_opset(proto)
    return CheckedOnnx(
        spec,
        older.SerializeToString(),
        f"{filename} uses operator set {version}; it was converted to operator set {CONVERTER_OPSET} (with onnx's "
        "version converter) for the ONNX-to-PyTorch converter, which lacks some newer operations.",
    )


def _default_opset(proto: ModelProto) -> int:
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _older_opset(proto: ModelProto) -> ModelProto | None:
    """`proto` at CONVERTER_OPSET (a copy), or None where it is not newer or onnx cannot convert it."""
    if _default_opset(proto) <= CONVERTER_OPSET:
        return None
    from onnx import version_converter

    try:
        converted: ModelProto = version_converter.convert_version(proto, CONVERTER_OPSET)
        return converted
    except Exception:  # noqa: BLE001 - onnx raises many kinds on a graph it cannot convert; the refusal names the ops
        return None


def convert_onnx(
    data: bytes, filename: str, *, channels_last: bool = False, max_bytes: int | None = None
) -> fx.GraphModule:
    """The converted model in eval mode, taking `(N, C, H, W)` (a `channels_last` graph gets a permute first).
    The conversion allocates every weight (onnx2torch copies a weight per node that uses it): an upload's runs
    in its worker, under its memory limit and deadline, after `check_onnx` passed in the server. With `max_bytes`,
    the converted module's real weight bytes (a copy per node that uses a shared weight) are checked against it."""
    import onnx2torch  # imported here: only ONNX uploads need it

    proto = _parse(data, filename)
    _skip_weight_identities(proto)
    try:
        module = onnx2torch.convert(proto)
    except NotImplementedError as exc:
        raise ModelFileError(_unsupported_sentence(filename, [str(exc).strip() or "an operation"])) from exc
    except Exception as exc:  # onnx2torch and onnx's shape inference raise many kinds on malformed graphs
        raise ModelFileError(conversion_sentence(filename, exc)) from exc
    if channels_last:
        _take_channels_first(module)
    if max_bytes is not None:
        check_converted(module, filename, max_bytes)
    converted_module: fx.GraphModule = module.eval()
    return converted_module


def _parse(data: bytes, filename: str = "the file") -> ModelProto:
    """The ModelProto, parsed from the bytes alone: `load_model_from_string` has no folder to look for external
    data in, so it never opens another file."""
    import onnx

    try:
        return onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf's DecodeError, or a RuntimeWarning-turned-error on truncated input
        raise ModelFileError(f"{filename} is not an ONNX model file ({_first_line(exc)}).") from exc


def _check_safe(proto: ModelProto, filename: str, max_bytes: int) -> None:
    """Refuse, before anything is converted: external data anywhere in the file; more than MAX_NODES nodes; weights
    that declare more than `max_bytes`, each counted once per node that reads it (the converter copies it for
    each; a tensor's declared shape, not the bytes it brought, decides what converting it costs); operations out
    of the order they run; and a forward pass whose memory or work is too large or cannot be bounded."""
    parts = walk(proto)
    check_external(parts, filename)
    nodes = count_nodes(parts)
    if nodes > MAX_NODES:
        raise ModelFileError(
            f"{filename} has {nodes:,} operations; the limit is {MAX_NODES:,}, so that converting it stays quick."
        )
    declared, shared = weight_bytes(parts)
    if declared > max_bytes:
        raise ModelFileError(
            f"{filename}'s weights declare {declared / 2**20:,.0f} MB in all; the limit is {max_bytes / 2**20:,.0f} MB"
            + (" (a weight several operations read counts once for each, as converting copies it)." if shared else ".")
        )
    check_order(proto, filename)
    if not _unsupported_ops(proto):  # otherwise load_onnx refuses the file next, naming them, before converting
        check_forward_cost(proto, filename, _input_spec(proto, filename))


def _input_spec(proto: ModelProto, filename: str) -> OnnxInput:
    """The one image input: (N, C, H, W) or (N, H, W, C) floats; its static sizes where the graph gives them."""
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value for value in proto.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ModelFileError(
            f"{filename} takes {len(inputs)} inputs; an image classifier here takes one, the image batch."
        )
    tensor_type = inputs[0].type.tensor_type
    if tensor_type.elem_type not in _FLOAT_TYPES:
        raise ModelFileError(
            f"{filename}'s input is not a floating-point tensor (ONNX element type {tensor_type.elem_type}); "
            "export the model with a float32 image input."
        )
    if not tensor_type.HasField("shape"):
        return OnnxInput(None, None, None, channels_last=False)
    dims = [dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None for dim in tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelFileError(
            f"{filename}'s input has {len(dims)} axes; an image model takes 4: (batch, channels, height, width) "
            "or (batch, height, width, channels)."
        )
    _, second, third, last = dims
    if last in (1, 3) and second not in (1, 3):  # (N, H, W, C)
        return OnnxInput(last, second, third, channels_last=True)
    return OnnxInput(second, third, last, channels_last=False)


def _skip_weight_identities(proto: ModelProto) -> None:
    """Let nodes read shared weights directly. PyTorch's exporter stores equal weights once and hands out
    copies through Identity nodes (a resnet50's zero biases after folding batch norms, say); onnx2torch wants a
    convolution's weight and bias to be initializers themselves, so such Identity nodes are taken out."""
    graph = proto.graph
    initializers = {tensor.name for tensor in graph.initializer}
    outputs = {value.name for value in graph.output}
    alias = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity"
        and node.domain in ("", "ai.onnx")
        and len(node.input) == 1
        and node.input[0] in initializers
        and node.output[0] not in outputs
    }
    if not alias:
        return
    kept = [n for n in graph.node if not (n.op_type == "Identity" and len(n.output) == 1 and n.output[0] in alias)]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in alias:
                node.input[i] = alias[name]
    del graph.node[:]
    graph.node.extend(kept)


def _unsupported_ops(proto: ModelProto) -> list[str]:
    """The operations (domain, type, opset) of the main graph that onnx2torch has no converter for."""
    from onnx2torch.node_converters import get_converter

    opsets = {opset.domain: opset.version for opset in proto.opset_import}
    missing: dict[str, None] = {}
    for domain, op_type in dict.fromkeys((node.domain or "", node.op_type) for node in proto.graph.node):
        version = opsets.get(domain, opsets.get("ai.onnx" if domain == "" else domain))
        label = f"{op_type}" + (f" (domain {domain})" if domain not in ("", "ai.onnx") else "")
        if version is None:
            missing[f"{label}, whose operator set the file does not declare"] = None
            continue
        try:
            get_converter(domain=domain, operation_type=op_type, version=version)
        except NotImplementedError:
            missing[f"{label} (opset {version})"] = None
    return list(missing)


def _unsupported_sentence(filename: str, ops: list[str]) -> str:
    shown = ", ".join(op[:120] for op in ops[:5]) + (f" and {len(ops) - 5} more" if len(ops) > 5 else "")
    return (
        f"{filename} uses operations the ONNX-to-PyTorch converter (onnx2torch) cannot handle: {shown}. Export "
        "the model with standard operations (a newer or older opset may help), or upload it as TorchScript."
    )


def _take_channels_first(module: fx.GraphModule) -> None:
    """Make a channels-last graph take (N, C, H, W), as every other model here: permute its input first."""
    graph = module.graph
    placeholder = next(node for node in graph.nodes if node.op == "placeholder")
    with graph.inserting_after(placeholder):
        permuted = graph.call_method("permute", (placeholder, 0, 2, 3, 1))
    placeholder.replace_all_uses_with(permuted, delete_user_cb=lambda user: user is not permuted)
    graph.lint()
    module.recompile()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")[:300]
