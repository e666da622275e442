"""An uploaded TorchScript model is a program: it runs here only in a locked-in worker process. So does an
uploaded ONNX model, whose conversion and passes run there too (`contained_onnx.ContainedOnnxModel`).

`ContainedModel` is an `nn.Module` whose forward sends the input batch to the worker (`contained_worker.py`) and
returns its output, as a `torch.autograd.Function`: its backward sends the output's gradient and gets the
gradient at the input back (the worker keeps the last few graphs, or runs the forward again). So everything the
engine computes from a model's output and its input gradient (predictions, saliency, integrated gradients,
SmoothGrad, occlusion, faithfulness) works unchanged on an uploaded model, while the model's own code can open no
file, write nothing, use at most `Limits.memory_bytes` more memory, and is stopped after `Limits.timeout_s`.

Requests go one at a time (a lock per worker). A worker that timed out, ran out of memory or died is stopped; the
next request starts a fresh one and loads the model again. The worker is stopped when the last model holding it
is garbage (`weakref.finalize`, which also runs at interpreter exit), or by `ContainedModel.close()`.

For an ONNX model (`contained_onnx.py`) the worker converts the file and keeps an Explainer of its own: the
engine's calls run there whole (`Explainer(bundle)` is then a `contained_explainer.ContainedExplainer`, and the
functions marked `in_worker` send themselves), their arguments and results in `contained_codec`'s form.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from .. import errors
from ..errors import EngineError, ModelError
from . import contained_worker as wire

WORKER = Path(__file__).with_name("contained_worker.py")
ROOT = Path(__file__).resolve().parents[2]  # the folder holding cnnvis_engine, put on the ONNX worker's path
# The errors an engine call in the worker may raise, by name: the only classes its answers can make us raise.
ENGINE_ERRORS: dict[str, type[EngineError]] = {
    name: cls
    for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, EngineError) and cls.__module__ == errors.__name__
}
MAX_REPLY_BYTES = 256 * 2**20  # an output or an input gradient; a classifier's (N, K) is far smaller


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    """What one uploaded model may use. Defaults from CNNVIS_MODEL_TIMEOUT_S (20) and CNNVIS_MODEL_MEMORY_MB
    (4096) when set."""

    timeout_s: float = field(default_factory=lambda: _env_float("CNNVIS_MODEL_TIMEOUT_S", 20.0))
    memory_bytes: int = field(default_factory=lambda: int(_env_float("CNNVIS_MODEL_MEMORY_MB", 4096) * 2**20))
    start_timeout_s: float = 120.0  # importing torch in the new process; under load it can take tens of seconds

    @property
    def cpu_s(self) -> float:
        """CPU seconds per request after which the worker ends itself (one thread: CPU time ≤ wall time)."""
        return 2 * self.timeout_s + 5

    def memory_words(self) -> str:
        gib = self.memory_bytes / 2**30
        return f"{gib:g} GB" if gib >= 1 else f"{self.memory_bytes / 2**20:g} MB"


class ContainedError(ModelError):
    """A request to the worker failed. `kind`: "timeout", "memory", "died" or "error" (the model raised);
    `detail`: the model's own error text for "error"."""

    def __init__(self, message: str, kind: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail


@dataclass
class _Process:
    popen: subprocess.Popen[bytes] | None = None
    folder: str = ""
    pid: int | None = None


def _stop(process: _Process) -> None:
    """Kill the worker (it may be in a loop: no polite request) and reap it; remove its empty folder."""
    popen, process.popen, process.pid = process.popen, None, None
    if popen is not None:
        popen.kill()
        popen.wait()
        for pipe in (popen.stdin, popen.stdout):
            if pipe is not None:
                pipe.close()
    if process.folder:
        shutil.rmtree(process.folder, ignore_errors=True)
        process.folder = ""


class Worker:
    """A handle on the worker process for one model file; starts it (and loads the model) on first use.

    `mode` "torchscript" loads the file with `torch.jit.load`; "onnx" converts it (`load` adds "filename" and
    "channels_last" to the load request) and answers engine calls (onnx_worker.py). Messages in `setup` (a
    bundle's settings) are sent again, in order, after every start."""

    def __init__(
        self,
        data: bytes,
        limits: Limits | None = None,
        *,
        mode: str = "torchscript",
        load: dict[str, Any] | None = None,
    ) -> None:
        self.data = data
        self.limits = limits or Limits()
        self.mode = mode
        self.load = dict(load or {})
        self.setup: OrderedDict[str, tuple[dict[str, Any], tuple[torch.Tensor, ...]]] = OrderedDict()
        self._process = _Process()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._finalizer = weakref.finalize(self, _stop, self._process)
        self.peak_mib = 0.0  # the worker's peak resident memory as of its last answer (VmHWM)
        self.anon_mib = 0.0  # and its own (anonymous) memory then, without the shared library pages

    def __deepcopy__(self, memo: dict[int, object]) -> Worker:
        return self  # a handle on a process, shared by copies (e.g. the sanity check's copy of the model)

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs, else None."""
        return self._process.pid

    def close(self) -> None:
        with self._lock:
            _stop(self._process)

    def new_id(self) -> int:
        return next(self._ids)

    def request(
        self,
        header: dict[str, Any],
        tensors: tuple[torch.Tensor, ...] = (),
        progress: Callable[[dict[str, Any], list[torch.Tensor]], None] | None = None,
    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        """Send one request and wait for its answer; ContainedError with a sentence on any failure. Messages the
        worker sends on the way (with a "progress" key) go to `progress`; each starts the deadline again."""
        with self._lock:
            if self._process.popen is None:
                self._start()
            return self._exchange(header, tensors, self.limits.timeout_s, progress)

    def set_up(self, key: str, header: dict[str, Any], tensors: tuple[torch.Tensor, ...], kept: int) -> None:
        """Send `header` now if the worker runs, and after every start from now on (the last `kept` of them)."""
        with self._lock:
            self.setup[key] = (header, tensors)
            self.setup.move_to_end(key)
            while len(self.setup) > kept:
                self.setup.popitem(last=False)
            if self._process.popen is not None:
                self._exchange(header, tensors, self.limits.timeout_s)

    def knows(self, key: str) -> bool:
        return key in self.setup

    def _start(self) -> None:
        folder = tempfile.mkdtemp(prefix="cnnvis-model-")
        limits = {
            "memory": self.limits.memory_bytes,
            "cpu": self.limits.cpu_s,
            "folder": folder,
            "message": len(self.data) + (MAX_REPLY_BYTES if self.mode == "onnx" else 2**20),
            "mode": self.mode,
            "root": str(ROOT),
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        if "LD_LIBRARY_PATH" in os.environ:
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        self._process.folder = folder
        self._process.popen = subprocess.Popen(
            [sys.executable, "-I", str(WORKER), json.dumps(limits)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=folder,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        try:
            reply, _ = self._read(time.monotonic() + self.limits.start_timeout_s, starting=True)
            self._process.pid = int(reply["pid"])
            self._exchange(
                {"op": "load", **self.load},
                (torch.frombuffer(bytearray(self.data), dtype=torch.uint8),),
                self.limits.timeout_s,
            )
            for header, tensors in self.setup.values():
                self._exchange(header, tensors, self.limits.timeout_s)
        except BaseException:
            _stop(self._process)
            raise

    def _exchange(
        self,
        header: dict[str, Any],
        tensors: tuple[torch.Tensor, ...],
        timeout: float,
        progress: Callable[[dict[str, Any], list[torch.Tensor]], None] | None = None,
    ) -> tuple[dict[str, Any], list[torch.Tensor]]:
        popen = self._process.popen
        assert popen is not None and popen.stdin is not None
        deadline = time.monotonic() + timeout
        try:
            wire.write_message(popen.stdin.fileno(), header, tensors, deadline=deadline)
        except wire.Timeout as exc:  # alive but not reading: stuck in something the model started
            _stop(self._process)
            raise ContainedError(
                f"The model did not answer within {self.limits.timeout_s:g} s, so it was stopped.", "timeout"
            ) from exc
        except OSError as exc:  # the pipe broke: the worker is gone
            _stop(self._process)
            raise self._died() from exc
        reply, out = self._read(deadline)
        while "progress" in reply and reply.get("ok") is True:  # a long engine call telling how far it is
            try:
                if progress is not None:
                    progress(reply, out)
            except BaseException:  # the caller gave up (a rerun): the rest of the answer would be read by no one
                _stop(self._process)
                raise
            reply, out = self._read(time.monotonic() + timeout)
        if isinstance(reply.get("peak_mib"), (int, float)) and isinstance(reply.get("anon_mib"), (int, float)):
            self.peak_mib, self.anon_mib = float(reply["peak_mib"]), float(reply["anon_mib"])
        if reply.get("ok") is True:
            return reply, out
        kind, detail = reply.get("kind"), str(reply.get("error", ""))
        if kind == "engine":  # the engine's own refusal in the worker (onnx mode): the same class, the same sentence
            raise ENGINE_ERRORS.get(str(reply.get("type")), ModelError)(detail)
        if kind == "memory":
            _stop(self._process)  # free what it holds; the next request starts afresh
            raise ContainedError(
                f"The model needed more than {self.limits.memory_words()} of memory, the limit for an uploaded model, "
                "so it was stopped.",
                "memory",
                detail,
            )
        raise ContainedError(f"The model failed: {summary(detail)}.", "error", detail)

    def _read(self, deadline: float, *, starting: bool = False) -> tuple[dict[str, Any], list[torch.Tensor]]:
        popen = self._process.popen
        assert popen is not None and popen.stdout is not None
        try:
            return wire.read_message(popen.stdout.fileno(), deadline=deadline, max_bytes=MAX_REPLY_BYTES)
        except wire.Timeout as exc:
            _stop(self._process)
            if starting:
                raise ContainedError(
                    f"The process for the uploaded model did not start within {self.limits.start_timeout_s:g} s "
                    "(the server is very busy); try again.",
                    "timeout",
                ) from exc
            raise ContainedError(
                f"The model did not answer within {self.limits.timeout_s:g} s, so it was stopped.", "timeout"
            ) from exc
        except wire.WireError as exc:
            _stop(self._process)
            if starting:
                raise ContainedError("The process for the uploaded model could not be started.", "died") from exc
            raise self._died() from exc

    def _died(self) -> ContainedError:
        return ContainedError(
            "The model's process ended unexpectedly (a crash, or more CPU time than allowed), so it was stopped.",
            "died",
        )

    def forward(self, x: torch.Tensor, grad: bool, graph_id: int = -1) -> tuple[torch.Tensor | None, dict[str, Any]]:
        """The model's output for the batch `x` (None when it returned something else, described in the reply's
        "returned"); with `grad`, the worker keeps the graph under `graph_id` for `backward`."""
        reply, out = self.request({"op": "forward", "grad": grad, "id": graph_id}, (x,))
        return (out[0] if out else None), reply

    def backward(self, graph_id: int, x: torch.Tensor, grad_output: torch.Tensor) -> torch.Tensor | None:
        """The gradient at the input `x` of <output, grad_output>; None when the output does not depend on `x`."""
        reply, out = self.request({"op": "backward", "id": graph_id}, (x, grad_output))
        if not reply.get("connected") or not out:
            return None
        gradient = out[0]
        if gradient.shape != x.shape or not gradient.is_floating_point():
            raise ContainedError("The model's gradient at the input has the wrong shape.", "error")
        return gradient.to(x.dtype)


class _Remote(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, worker: Worker, graph: bool, x: torch.Tensor) -> torch.Tensor:
        ctx.worker, ctx.graph_id = worker, worker.new_id()
        output, reply = worker.forward(x.detach(), graph, ctx.graph_id)
        if output is None:
            raise ContainedError(f"The model returned {reply.get('returned', 'no tensor')}, not one tensor.", "error")
        if not output.is_floating_point():
            raise ContainedError("The model returned whole numbers, not scores, so nothing can be explained.", "error")
        if graph:
            ctx.save_for_backward(x.detach())
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        (x,) = ctx.saved_tensors
        gradient = ctx.worker.backward(ctx.graph_id, x, grad_output)
        if gradient is None:
            raise ContainedError(
                "The model's output does not depend on its input image, so no gradient reaches the image.", "error"
            )
        return None, None, gradient


class ContainedModel(nn.Module):
    """An uploaded TorchScript model, run in its worker process. (N, 3, H, W) -> the model's (N, K) output."""

    runs_torchscript = True  # its layers and ReLUs are out of the engine's sight, like a ScriptModule's

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        graph = torch.is_grad_enabled() and x.requires_grad  # else the worker keeps no graph
        output: torch.Tensor = _Remote.apply(self.worker, graph, x)
        return output

    def close(self) -> None:
        """Stop the worker now (it starts again on the next call)."""
        self.worker.close()


def summary(text: str) -> str:
    """One readable line of an error text: TorchScript puts its traceback first and the real error last."""
    lines = [re.sub(r"^(\w+\.)*\w+(Error|Exception): ", "", line.strip()) for line in text.strip().splitlines()]
    lines = [line for line in lines if line] or ["unknown error"]
    traceback = lines[0].startswith(("The following operation failed", "Traceback"))
    line = (lines[-1] if traceback else lines[0]).rstrip(".")
    return line if len(line) <= 300 else line[:297] + "..."
