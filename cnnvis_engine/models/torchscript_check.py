"""Read a TorchScript archive without running it: its zip directory, then the code it would run.

A TorchScript archive holds the model's program as Python-syntax source (`<archive>/code/__torch__/**.py`): every
operator call is printed as `torch.<aten op>(...)` or `ops.<namespace>.<op>(...)`. `check_torchscript` parses that
source with `ast` (nothing is executed) and refuses the calls a classifier never needs and a hostile file does:
file input/output (`torch.save`, `torch.load`, `torch.from_file`), operators outside the `aten` and `prim`
namespaces (custom, distributed, profiler and debugging ops: e.g. `debugprims.load_tensor` reads a file),
TorchScript classes bound from C++ (`torch.classes`), background tasks (`torch.jit.fork`), and
`__setstate__`/`__getstate__` methods, which run inside `torch.jit.load` itself. It is the first fence, not the only one: the worker process the model runs in
(contained.py) can open no file even for what this check would miss.

`check_archive` reads only the zip's central directory and refuses a zip whose entries would inflate beyond the
limit (a 2 MB file can hold 2 GB of zeros) or whose names leave the archive.
"""

from __future__ import annotations

import ast
import io
import zipfile

from ..errors import ModelFileError

IO_OPS = frozenset({"save", "load", "from_file", "_load_from_file", "_save_parameters", "_load_for_mobile"})
OP_NAMESPACES = frozenset({"aten", "prim"})
STATE_METHODS = frozenset({"__setstate__", "__getstate__"})
BACKGROUND = frozenset({"fork", "awaitable"})  # torch.jit.fork / torch.jit._awaitable, as TorchScript prints them
MAX_CODE_BYTES = 32 * 2**20  # torchvision's largest scripted models hold well under 1 MB of code


def check_archive(data: bytes, filename: str, max_bytes: int) -> None:
    """Refuse a zip whose uncompressed entries add up to more than `max_bytes`, or that names a path outside the
    archive; the directory is read, nothing is inflated. Not a zip: nothing to check here."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return
    for entry in entries:
        name = entry.filename.replace("\\", "/")
        if name.startswith("/") or ".." in name.split("/") or ":" in name.split("/")[0]:
            raise ModelFileError(f"{filename} names a file outside its own archive ({name[:80]!r}), so it is refused.")
    total = sum(entry.file_size for entry in entries)
    if total > max_bytes:
        raise ModelFileError(
            f"{filename} would unpack to {_mb(total)} (it is {_mb(len(data))} compressed); the limit is "
            f"{_mb(max_bytes)}, so it is refused."
        )


def check_torchscript(data: bytes, filename: str) -> None:
    """Refuse a TorchScript archive whose code does more than compute: see the module's docstring."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        code = [entry for entry in archive.infolist() if "/code/" in entry.filename and entry.filename.endswith(".py")]
        size = sum(entry.file_size for entry in code)
        if size > MAX_CODE_BYTES:  # parsing is done in the server: bound it
            raise ModelFileError(
                f"{filename} holds {_mb(size)} of TorchScript code; the limit is {_mb(MAX_CODE_BYTES)}, so it is refused."
            )
        sources = [(entry.filename, archive.read(entry)) for entry in code]
    for name, source in sources:
        try:
            tree = ast.parse(source.decode("utf-8"), filename=name)
        except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
            raise ModelFileError(f"{filename} holds TorchScript code that cannot be read, so it is refused.") from exc
        for node in ast.walk(tree):
            problem = _problem(node)
            if problem:
                raise ModelFileError(
                    f"{filename} is refused: its code {problem}; a model that only computes needs none of that."
                )


def _problem(node: ast.AST) -> str:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BACKGROUND:
        return f"starts a background task ({node.func.id}), which could go on running after the model answers"
    if isinstance(node, ast.FunctionDef) and node.name in STATE_METHODS:
        return f"defines {node.name}, its own (un)packing code, which runs while the file is being opened"
    if isinstance(node, ast.Attribute):
        parts = _dotted(node)
        if parts[:1] == ["torch"] and len(parts) == 2 and parts[1] in IO_OPS:
            return f"calls torch.{parts[1]} (file access)"
        if parts[:2] == ["torch", "classes"]:
            return f"uses {'.'.join(parts)} (a C++ class)"
        if parts[:1] == ["ops"] or parts[:2] == ["torch", "ops"]:
            rest = parts[parts.index("ops") + 1 :]
            if rest and rest[0] not in OP_NAMESPACES:
                return f"calls the operator {'.'.join(rest)} (outside PyTorch's tensor operators)"
            if len(rest) >= 2 and rest[1] in IO_OPS:
                return f"calls {'.'.join(rest)} (file access)"
    return ""


def _dotted(node: ast.AST) -> list[str]:
    """`torch.ops.aten.save` -> ["torch", "ops", "aten", "save"]; [] when the chain does not start at a name."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return []
    return [node.id, *reversed(parts)]


def _mb(num_bytes: int) -> str:
    return f"{-(-num_bytes // 2**20):,} MB"
