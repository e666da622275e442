"""An ONNX model uploaded with its external data: `model.onnx` + `model.onnx.data`, as today's exporter writes them
(`torch.onnx.export(model, (x,), "model.onnx")` keeps the weights in `model.onnx.data`).

The weights are resolved in memory, from the uploaded files only: each tensor that says its bytes lie elsewhere
names a file (`location`), an `offset` and a `length`. The location must be exactly the name of one of the uploaded
data files (no folder, no `..`: nothing is ever looked up on disk), and the offset and length must lie inside that
file's bytes and match the tensor's declared size. The bytes are then copied into the tensor and the file is
handed on as one self-contained model, so every later check (onnx_checks: no external data may remain) and the
converter see what a single-file export would be. Nothing here opens a path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ModelFileError, shown
from .onnx_checks import all_tensors, itemsize, walk

if TYPE_CHECKING:  # onnx is imported where it is used: only ONNX uploads need it
    from onnx import TensorProto

_EXTERNAL = 1  # onnx.TensorProto.EXTERNAL


def attach_external_data(data: bytes, filename: str, files: Mapping[str, bytes], *, max_bytes: int) -> bytes:
    """`data` (an ONNX model) with every external tensor's bytes taken from `files` ({uploaded name: bytes}); the
    model re-serialised as one file. ModelFileError with a sentence for every reference it cannot resolve."""
    from .onnx_files import _parse

    for name, blob in files.items():
        if not blob:
            raise ModelFileError(f"{shown(name)} is empty; upload the data file the exporter wrote beside {filename}.")
    proto = _parse(data, filename)
    used: set[str] = set()
    total = 0
    for tensor in all_tensors(walk(proto)):
        if tensor.data_location != _EXTERNAL and not len(tensor.external_data):
            continue
        entry = {item.key: item.value for item in tensor.external_data}
        location = entry.get("location", "")
        stored = files.get(location)
        if stored is None:
            raise ModelFileError(
                f"{filename}'s weight {shown(tensor.name[:80])} lies in a file named {shown(location[:120])}, "
                f"which was not uploaded with it (uploaded: {', '.join(shown(n) for n in files) or 'nothing'}). "
                "Upload the model's .onnx file together with the data file the exporter wrote beside it."
            )
        blob, offset, length = (
            stored,
            _number(entry, "offset", 0, filename) or 0,
            _number(entry, "length", None, filename),
        )
        expected = _declared_bytes(tensor)
        length = expected if length is None else length
        if length != expected:
            raise ModelFileError(
                f"{filename}'s weight {shown(tensor.name[:80])} is {expected:,} bytes by its shape, but its data "
                f"entry says {length:,}; the two files do not belong together."
            )
        if offset + length > len(blob):
            raise ModelFileError(
                f"{filename}'s weight {shown(tensor.name[:80])} would lie at bytes {offset:,}–{offset + length:,} of "
                f"{shown(location)}, which has only {len(blob):,}; the two files do not belong together."
            )
        total += length
        if total > max_bytes:
            raise ModelFileError(f"{filename}'s weights are over {max_bytes / 2**20:,.0f} MB, the limit.")
        tensor.raw_data = blob[offset : offset + length]
        tensor.data_location = 0  # DEFAULT: the bytes are inside now
        del tensor.external_data[:]
        used.add(location)
    unused = [name for name in files if name not in used]
    if unused:
        raise ModelFileError(
            f"{filename} does not use {', '.join(shown(n) for n in unused)}: upload only the model and its own data file."
        )
    serialized: bytes = proto.SerializeToString()
    return serialized


def _number(entry: Mapping[str, str], key: str, default: int | None, filename: str) -> int | None:
    text = entry.get(key)
    if text is None:
        return default
    if not text.isdigit() or len(text) > 15:
        raise ModelFileError(
            f"{filename} gives its external data a {key} that is not a whole number ({shown(text[:40])})."
        )
    return int(text)


def _declared_bytes(tensor: TensorProto) -> int:
    return math.prod(max(int(dim), 0) for dim in tensor.dims) * itemsize(tensor.data_type)
