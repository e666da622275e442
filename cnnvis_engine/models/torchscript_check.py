"""Read a TorchScript archive without running it: its zip directory, then the code it would run.

A TorchScript archive holds the model's program as Python-syntax source (`<archive>/code/__torch__/**.py`): every
operator call is printed as `torch.<aten op>(...)` or `ops.<namespace>.<op>(...)`. `check_torchscript` parses that
source with `ast` (nothing is executed) and refuses the calls a classifier never needs and a hostile file does:
file input/output (`torch.save`, `torch.load`, `torch.from_file`), operators outside the `aten` and `prim`
namespaces (custom, distributed, profiler and debugging ops: e.g. `debugprims.load_tensor` reads a file),
TorchScript classes bound from C++ (`torch.classes`), background tasks (`torch.jit.fork`),
`__setstate__`/`__getstate__` methods, which run inside `torch.jit.load` itself, and every way of reaching a
function by a name the check does not see as a dotted call: `getattr(torch, "save")(...)` loads and runs (the
archive's code is compiled on load, so it need not be what the compiler printed), as would `setattr`, `hasattr`,
`__dict__`, `__class__` chains, `eval` and the like. The compiler itself prints one such form, `getattr(blocks,
"0")` on a local for a submodule whose name is no identifier (2,460 of them in torchvision's scripted models), and
only that form is let through. `torch` and `ops` may only be called through (`t = torch` would hide `t.save`). It is the first fence, not the only one: the worker process the model runs in
(contained.py) can open no file even for what this check would miss.

`check_archive` reads only the zip's central directory and refuses a zip whose entries would inflate beyond the
limit (a 2 MB file can hold 2 GB of zeros) or whose names leave the archive.
"""

from __future__ import annotations

import ast
import io
import zipfile
from typing import TypeGuard

from ..errors import ModelFileError

IO_OPS = frozenset({"save", "load", "from_file", "_load_from_file", "_save_parameters", "_load_for_mobile"})
OP_NAMESPACES = frozenset({"aten", "prim"})
STATE_METHODS = frozenset({"__setstate__", "__getstate__"})
BACKGROUND = frozenset({"fork", "awaitable"})  # torch.jit.fork / torch.jit._awaitable, as TorchScript prints them
# Names and attributes that reach functions or objects' insides by name; a compiled model's code holds none.
DYNAMIC_NAMES = frozenset(
    {"setattr", "delattr", "hasattr", "vars", "globals", "locals", "__import__", "eval", "exec", "compile"}
    | {"__builtins__", "builtins", "__builtin__"}
)
DYNAMIC_ATTRS = frozenset(
    {"__getattribute__", "__getattr__", "__setattr__", "__delattr__", "__dict__", "__class__", "__subclasses__"}
    | {"__mro__", "__bases__", "__base__", "__globals__", "__builtins__", "__code__", "__closure__", "__func__"}
    | {"__self__", "__module__", "__import__", "__loader__", "__spec__", "__init_subclass__", "__reduce_ex__"}
)
OPERATOR_ROOTS = frozenset({"torch", "ops"})  # compiled code only ever calls through these, never holds them
MODULE_ROOTS = OPERATOR_ROOTS | {"__torch__", "math", "builtins", "__builtins__", "CONSTANTS"}
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
        nodes = list(ast.walk(tree))
        printed = {id(node.func) for node in nodes if _printed_getattr(node)}
        called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
        inner = {id(node.value) for node in nodes if isinstance(node, ast.Attribute)}
        for node in nodes:
            problem = _problem(node) or _dynamic(node, printed) or _held(node, called, inner)
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


def _printed_getattr(node: ast.AST) -> TypeGuard[ast.Call]:
    """`getattr(self, "0")`: the one dynamic look-up TorchScript prints, for a submodule whose name is no identifier."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "getattr"
        and not node.keywords
        and len(node.args) == 2
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id not in MODULE_ROOTS
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
        and not node.args[1].value.startswith("__")
    )


def _dynamic(node: ast.AST, printed: set[int]) -> str:
    """A look-up by name (see the module's docstring); `printed` holds the `getattr` names of the compiler's form."""
    around = "which could reach file access or any other function around this check"
    call = node.func if isinstance(node, ast.Call) else None
    if isinstance(call, ast.Name) and call.id == "getattr" and id(call) not in printed:
        return f"looks an attribute up by name ({_shown(node)}), {around}"
    if isinstance(node, ast.Name) and node.id == "getattr" and id(node) not in printed:
        return f"passes getattr around as a value, {around}"
    if isinstance(node, ast.Name) and node.id in DYNAMIC_NAMES:
        return f"uses {node.id}, {around}"
    if isinstance(node, ast.Attribute) and node.attr in DYNAMIC_ATTRS:
        return f"reaches into an object by name ({_shown(node)}), {around}"
    return ""


def _held(node: ast.AST, called: set[int], inner: set[int]) -> str:
    """`torch` or `ops` (or a chain from them) held as a value, `t = torch.ops`, so that `t.debugprims.load_tensor`
    no longer reads as an operator call; compiled code only ever calls through them."""
    if id(node) in inner or id(node) in called or not isinstance(node, (ast.Name, ast.Attribute)):
        return ""
    parts = _dotted(node)
    if parts[:1] and parts[0] in OPERATOR_ROOTS:
        return f"holds {'.'.join(parts)} as a value instead of calling it, which hides what it calls from this check"
    return ""


def _shown(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


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
