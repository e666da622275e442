"""The process an uploaded TorchScript or ONNX model runs in, and the wire format both sides speak.

`python -I contained_worker.py '<limits as JSON>'` imports torch, warms TorchScript up on a model of its own (in
"onnx" mode: imports onnx, onnx2torch and the engine from the project root the JSON names, and converts and
explains a model of its own: cnnvis_engine/onnx_worker.py), then
locks itself in (see `_lock_in`): no file can be opened (RLIMIT_NOFILE at the lowest free descriptor, so neither
reads nor writes nor sockets), no file can grow (RLIMIT_FSIZE 0), at most `memory` bytes more address space
(RLIMIT_AS), a CPU-time ceiling moved forward before each request (RLIMIT_CPU), one thread, an empty working
folder, and as root the `nobody` user (so the limits cannot be raised again). Only then does it read the model's
bytes from its pipe and `torch.jit.load` them: a `__setstate__` that runs during loading is already inside.

The wire format is deliberately not pickle: the server must never unpickle what a process running a stranger's
code sends it. A message is a 4-byte length, a JSON header, then the raw bytes of the tensors the header declares
(dtype and shape). `read_message` checks every declared size before it reads anything.

This file imports only the standard library and torch, so a TorchScript worker starts without the rest of the
engine.
"""

from __future__ import annotations

import io
import json
import os
import select
import struct
import sys
import time
from collections import OrderedDict
from typing import Any

import torch

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}
MAX_HEADER = 16 << 20  # JSON: engine results (onnx mode) and class names, never the bulk of tensors
GRAPHS_KEPT = 4  # autograd graphs the worker keeps for backward requests; older ones are recomputed


class WireError(Exception):
    """The other side sent something that is not a message, or nothing before the deadline."""


class Timeout(WireError):
    pass


class Closed(WireError):
    pass


# ----- the wire format ---------------------------------------------------------------------------------------
def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    # numpy's stubs here do not declare ndarray a Buffer, though it is one (no copy is made)
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else memoryview(b"")  # type: ignore[arg-type]


def write_message(
    fd: int, header: dict[str, Any], tensors: tuple[torch.Tensor, ...] = (), *, deadline: float | None = None
) -> None:
    """Timeout when the other side has not taken it all by `deadline` (a `time.monotonic()` value)."""
    tensors = tuple(t.detach().cpu().contiguous() for t in tensors)
    header = {**header, "tensors": [{"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape)} for t in tensors]}
    encoded = json.dumps(header).encode()
    _write_all(fd, struct.pack(">I", len(encoded)) + encoded, deadline)
    for tensor in tensors:
        _write_all(fd, tensor_bytes(tensor), deadline)


def read_message(
    fd: int, *, deadline: float | None = None, max_bytes: int
) -> tuple[dict[str, Any], list[torch.Tensor]]:
    """One message; WireError for anything malformed or larger than `max_bytes`, Timeout after `deadline`
    (a `time.monotonic()` value), Closed when the other side has gone."""
    (length,) = struct.unpack(">I", _read_exact(fd, 4, deadline))
    if length > MAX_HEADER:
        raise WireError(f"header of {length} bytes")
    try:
        header = json.loads(_read_exact(fd, length, deadline))
        specs = header.pop("tensors")
        sizes = [_nbytes(spec) for spec in specs]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"malformed header: {exc}") from exc
    if not isinstance(header, dict) or sum(sizes) > max_bytes:
        raise WireError(f"a message of {sum(sizes)} bytes")
    tensors = []
    for spec, size in zip(specs, sizes):
        dtype, shape = DTYPES[spec["dtype"]], tuple(spec["shape"])
        if size == 0:
            tensors.append(torch.empty(shape, dtype=dtype))
        else:
            tensors.append(torch.frombuffer(bytearray(_read_exact(fd, size, deadline)), dtype=dtype).reshape(shape))
    return header, tensors


def _nbytes(spec: dict[str, Any]) -> int:
    dtype, shape = DTYPES[spec["dtype"]], spec["shape"]
    if not isinstance(shape, list) or len(shape) > 8 or not all(isinstance(n, int) and 0 <= n < 2**40 for n in shape):
        raise ValueError(f"shape {shape!r}")
    count = 1
    for n in shape:
        count *= n
    return count * dtype.itemsize


def _write_all(fd: int, data: bytes | memoryview, deadline: float | None) -> None:
    view = memoryview(data).cast("B")
    if deadline is None:
        while view:
            view = view[os.write(fd, view) :]
        return
    os.set_blocking(fd, False)  # a write takes what the pipe has room for and returns; never waits past the deadline
    try:
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                raise Timeout("the other side took nothing before the deadline")
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
    finally:
        os.set_blocking(fd, True)


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks, left = [], size
    while left:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise Timeout("no answer before the deadline")
        chunk = os.read(fd, min(left, 1 << 22))
        if not chunk:
            raise Closed("the other side closed the pipe")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ----- the worker --------------------------------------------------------------------------------------------
def _warm_up() -> None:
    """Load and run a scripted model of our own, so that every module and library TorchScript loads lazily is
    loaded while files can still be opened."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Dropout(),
        torch.nn.Linear(4, 5),
    ).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net), buffer)
    loaded = torch.jit.load(io.BytesIO(buffer.getvalue()), map_location="cpu")
    x = torch.zeros(2, 3, 16, 16, requires_grad=True)
    output = torch.softmax(loaded(x).mean(1, keepdim=True) + loaded(x), 1)
    torch.autograd.grad((output * torch.ones_like(output)).sum(), x)  # as `_Server` asks for gradients


def _lowest_free_fd() -> int:
    fd = 0
    while True:
        try:
            os.fstat(fd)
        except OSError:
            return fd
        fd += 1


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def _memory(status_fd: int) -> dict[str, float]:
    """This process's peak resident memory (VmHWM: with the pages of torch's libraries, shared with every
    process that maps them) and its own memory now (RssAnon), in MiB, from /proc/self/status opened before
    locking in."""
    found = {}
    for line in os.pread(status_fd, 8192, 0).decode().splitlines():
        for key, name in (("VmHWM:", "peak_mib"), ("RssAnon:", "anon_mib")):
            if line.startswith(key):
                found[name] = int(line.split()[1]) / 1024
    return found


def _lock_in(limits: dict[str, Any]) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing us
    os.chdir(limits["folder"])
    if os.geteuid() == 0:  # root could raise its hard limits again; nobody cannot
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (_address_space() + limits["memory"],) * 2)
    free = _lowest_free_fd()
    resource.setrlimit(resource.RLIMIT_NOFILE, (free, free))


def _set_cpu_ceiling(seconds: float) -> None:
    """SIGXCPU (which ends the process) once this request has used `seconds` of CPU: the backstop for a loop
    when nobody is waiting for the answer any more (the server gone)."""
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(used.ru_utime + used.ru_stime + seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, resource.RLIM_INFINITY))


def _describe(output: object) -> str:
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape ({', '.join(str(n) for n in output.shape)})"
    if isinstance(output, (tuple, list, dict)):
        return f"a {type(output).__name__} of {len(output)} items"
    return f"a {type(output).__name__}"


def _error(exc: BaseException) -> dict[str, Any]:
    text = f"{type(exc).__name__}: {exc}"
    return {"ok": False, "kind": "memory" if out_of_memory(exc) else "error", "error": text[-4000:]}


def out_of_memory(exc: BaseException | None) -> bool:
    """Whether `exc`, or an error it was raised from, is an allocation that the memory limit refused."""
    while exc is not None:
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError) or any(
            words in text for words in ("can't allocate memory", "bad_alloc", "Cannot allocate memory", "out of memory")
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _Server:
    """Answers "load", "forward", "backward" and "forget" requests for one model."""

    def __init__(self) -> None:
        self.module: torch.nn.Module | None = None
        self.graphs: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def load(self, header: dict[str, Any], data: bytes) -> torch.nn.Module:
        module: torch.nn.Module = torch.jit.load(io.BytesIO(data), map_location="cpu")
        return module

    def handle(
        self, header: dict[str, Any], tensors: list[torch.Tensor]
    ) -> tuple[dict[str, Any], tuple[torch.Tensor, ...]]:
        op = header["op"]
        if op == "load":
            self.module = self.load(header, tensors[0].numpy().tobytes())
            self.module.eval()
            self.graphs.clear()
            return {"ok": True}, ()
        if self.module is None:
            raise RuntimeError("no model loaded")
        if op == "forward":
            x = tensors[0].requires_grad_(bool(header["grad"]))
            with torch.set_grad_enabled(bool(header["grad"])):
                output = self.module(x)
            if not isinstance(output, torch.Tensor):
                return {"ok": True, "returned": _describe(output)}, ()
            if header["grad"] and output.requires_grad:
                self.graphs[header["id"]] = (x, output)
                while len(self.graphs) > GRAPHS_KEPT:
                    self.graphs.popitem(last=False)
            return {"ok": True, "requires_grad": output.requires_grad}, (output.detach(),)
        if op == "backward":
            x, grad_output = tensors
            if header["id"] in self.graphs:
                x, output = self.graphs[header["id"]]
            else:  # recorded long ago, or by a worker that was stopped since: the same forward again
                x = x.requires_grad_(True)
                output = self.module(x)
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return {"ok": True, "connected": False}, ()
            # <output, grad_output> as a scalar: the same vector-Jacobian product, without passing a gradient
            # tensor, which makes torch import its symbolic-shape checker (and sympy: a second and 60 MB)
            score = (output * grad_output.to(output.dtype)).sum()
            (gradient,) = torch.autograd.grad(score, x, retain_graph=True, allow_unused=True)
            if gradient is None:
                return {"ok": True, "connected": False}, ()
            return {"ok": True, "connected": True}, (gradient,)
        if op == "forget":
            self.graphs.clear()
            return {"ok": True}, ()
        raise RuntimeError(f"unknown request {op!r}")


def main() -> None:
    limits = json.loads(sys.argv[1])
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):  # what the model prints (TorchScript's print writes to stdout) goes nowhere, not on the wire
        os.dup2(devnull, fd)
    os.close(devnull)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    if limits.get("mode") == "onnx":  # the engine itself, from the project's root: `-I` keeps cwd off the path
        sys.path.insert(0, limits["root"])
        from cnnvis_engine.onnx_worker import OnnxServer, warm_up

        warm_up()
        server: _Server = OnnxServer(replies, limits["cpu"])
    else:
        _warm_up()
        server = _Server()
    status = os.open("/proc/self/status", os.O_RDONLY)  # kept open: the only file readable after locking in
    _lock_in(limits)
    write_message(replies, {"ok": True, "pid": os.getpid(), **_memory(status)})
    while True:
        try:
            header, tensors = read_message(requests, max_bytes=limits["message"])
        except Closed:  # the server is done with us; no atexit handlers (torch._dynamo's imports, and can open no file)
            os._exit(0)
        _set_cpu_ceiling(limits["cpu"])
        try:
            reply, out = server.handle(header, tensors)
        except BaseException as exc:  # noqa: BLE001 - the model's own errors, our limits' errors: all go back as text
            reply, out = _error(exc), ()
        del header, tensors
        reply.update(_memory(status))
        try:
            write_message(replies, reply, out)
        except BaseException as exc:  # noqa: BLE001 - e.g. an output the wire cannot carry (a complex tensor)
            write_message(replies, _error(exc))


if __name__ == "__main__":
    main()
