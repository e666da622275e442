"""What the server accepts from visitors: upload limits it keeps, not only the browser, whether it takes a
TorchScript upload at all (a program: only on a server on loopback, a person's own machine, unless the operator
of an exposed server turns it on), and which models it loads (`model_limits`: a parameter cap everywhere, and on an
exposed server only the models its operator allows).

Streamlit 1.67's upload route (`PUT /_stcore/upload_file/<session>/<file id>`) checks one thing: the body is at
most `server.maxUploadSize`. A widget's `max_upload_size` is enforced by the browser alone, and the route keeps
whatever it is sent, under any file id, until the session shuts down (which for a closed tab is when its
`server.disconnectedSessionTTL` runs out, and later if nothing touches the session store). So:

- `refusal(file, limit_mb)`: every UploadedFile is checked against its own widget's limit before use (a sentence
  when over) and `discard`-ed, so the bytes are freed at once;
- `server.maxUploadSize` (.streamlit/config.toml) is the largest widget limit, MODEL_MB;
- `install()` puts a small `Reaper` on the runtime's MemoryUploadedFileManager instance (not a fork: three of
  its methods are wrapped on that one object): files no widget claims within ORPHAN_SECONDS, files of sessions
  that have been gone GONE_SECONDS, and the oldest unclaimed files beyond UNCLAIMED_BYTES per session are dropped.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st
from streamlit import runtime

from .text import clean

IMAGE_MB = 50  # the image uploader (cnnvis_engine.images.MAX_FILE_BYTES is the same 50 MiB)
MODEL_MB = 500  # the model uploader; also server.maxUploadSize, the route's own cap
LABELS_MB = 10  # the class-names uploader
# The reaper's times; a deployment (or a test) may change them through the environment.
ORPHAN_SECONDS = float(
    os.environ.get("CNNVIS_UPLOAD_ORPHAN_SECONDS", "60")
)  # unclaimed by any widget this long: dropped
GONE_SECONDS = float(os.environ.get("CNNVIS_UPLOAD_GONE_SECONDS", "30"))  # a session disconnected this long: its files
SWEEP_SECONDS = min(5.0, ORPHAN_SECONDS / 4, GONE_SECONDS / 4)  # how often it looks when nothing is uploaded
UNCLAIMED_BYTES = (MODEL_MB + IMAGE_MB + LABELS_MB) * 2**20  # per session, what all three widgets may hold at once


def refusal(file: Any, limit_mb: int) -> str:
    """A sentence when `file` (an UploadedFile) is larger than its widget's `limit_mb`, else ""."""
    if file.size <= limit_mb * 2**20:
        return ""
    return f"{clean(file.name)} was not used: it is {file.size / 2**20:,.1f} MB, and the limit here is {limit_mb} MB."


def discard(file: Any) -> None:
    """Drop `file`'s bytes from the server's upload store now (the widget then shows no file)."""
    manager = _manager()
    ctx = session_id()
    if manager is not None and ctx is not None:
        manager.remove_file(session_id=ctx, file_id=file.file_id)


# Frees what sessions own beyond uploaded files, given `still_there(session id) -> bool`.
Sweeper = Callable[[Callable[[str], bool]], object]


def install(*sweepers: Sweeper) -> Reaper | None:
    """Put the Reaper on the running server's upload store, once per process (None without a server, as under
    AppTest, or when the store is not Streamlit's in-memory one). `sweepers` free what else sessions own (the
    Audit page's unpacked zips): at each sweep each is called with `still_there(session id)`, which is False once
    that session has been gone GONE_SECONDS."""
    manager = _manager()
    if manager is None or not hasattr(manager, "file_storage"):
        return None
    with _INSTALL_LOCK:
        reaper = getattr(manager, "_cnnvis_reaper", None)
        if reaper is None:
            reaper = manager._cnnvis_reaper = Reaper(manager, runtime.get_instance().is_active_session)
            reaper.sweepers.extend(sweepers)
            reaper.start()
    return reaper


class Reaper:
    """Frees uploads nothing will use. It wraps `add_file` (note the arrival, enforce UNCLAIMED_BYTES),
    `get_files` (a widget's value names the file: it is claimed) and `remove_file` / `remove_session_files`
    (forget them) on one MemoryUploadedFileManager, and sweeps every SWEEP_SECONDS on a daemon thread."""

    def __init__(self, manager: Any, is_active: Callable[[str], bool], clock: Callable[[], float] = time.monotonic):
        self.manager, self.is_active, self.clock = manager, is_active, clock
        self.arrived: dict[tuple[str, str], float] = {}  # unclaimed files: (session, file id) -> arrival
        self.gone_since: dict[str, float] = {}  # sessions with files, not connected: session -> first seen so
        self.sweepers: list[Sweeper] = []  # what else sessions own, freed with still_there (see install)
        self.freed_files = self.freed_bytes = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._add, self._get = manager.add_file, manager.get_files
        self._remove, self._remove_session = manager.remove_file, manager.remove_session_files
        manager.add_file, manager.get_files = self.add_file, self.get_files
        manager.remove_file, manager.remove_session_files = self.remove_file, self.remove_session_files

    # ----- the wrapped methods ---------------------------------------------------------------------------------
    def add_file(self, session_id: str, file: Any) -> None:
        self._add(session_id=session_id, file=file)
        with self._lock:
            self.arrived[(session_id, file.file_id)] = self.clock()
        self._limit_session(session_id)

    def get_files(self, session_id: str, file_ids: Any) -> list:
        files = self._get(session_id, file_ids)
        with self._lock:
            for record in files:
                self.arrived.pop((session_id, record.file_id), None)
        return files

    def remove_file(self, session_id: str, file_id: str) -> None:
        self._remove(session_id=session_id, file_id=file_id)
        with self._lock:
            self.arrived.pop((session_id, file_id), None)

    def remove_session_files(self, session_id: str) -> None:
        self._remove_session(session_id)
        with self._lock:
            for key in [key for key in self.arrived if key[0] == session_id]:
                del self.arrived[key]
            self.gone_since.pop(session_id, None)

    # ----- sweeping --------------------------------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._run, name="cnnvis-upload-reaper", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_SECONDS):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001, S112 - the sweeper must outlive any one odd state; the next sweep retries
                continue

    def sweep(self) -> tuple[int, int]:
        """Drop what is due now; (files, bytes) dropped."""
        now = self.clock()
        sessions = list(self.manager.file_storage)
        gone = []
        with self._lock:
            for session in sessions:
                if self.is_active(session):
                    self.gone_since.pop(session, None)
                elif now - self.gone_since.setdefault(session, now) >= GONE_SECONDS:
                    gone.append(session)
            late = [key for key, arrival in self.arrived.items() if now - arrival >= ORPHAN_SECONDS]
        dropped = [self._drop_session(session) for session in gone]
        dropped += [self._drop(*key) for key in late]
        for sweeper in self.sweepers:
            sweeper(lambda session: self.still_there(session, now))
        return len([d for d in dropped if d]), sum(dropped)

    def still_there(self, session: str, now: float) -> bool:
        """Whether `session` is connected, or has been gone less than GONE_SECONDS (a reload reconnects)."""
        with self._lock:
            if self.is_active(session):
                self.gone_since.pop(session, None)
                return True
            if now - self.gone_since.setdefault(session, now) < GONE_SECONDS:
                return True
            del self.gone_since[session]  # it is gone: the caller frees what it owned
            return False

    def _limit_session(self, session_id: str) -> None:
        """Drop the session's oldest unclaimed files while they hold more than UNCLAIMED_BYTES."""
        with self._lock:
            mine = sorted(
                (arrival, file_id) for (session, file_id), arrival in self.arrived.items() if session == session_id
            )
        storage = self.manager.file_storage.get(session_id, {})
        sizes = {file_id: len(record.data) for file_id, record in list(storage.items())}
        total = sum(sizes.get(file_id, 0) for _, file_id in mine)
        for _, file_id in mine:
            if total <= UNCLAIMED_BYTES:
                break
            total -= self._drop(session_id, file_id)

    def _drop(self, session_id: str, file_id: str) -> int:
        record = self.manager.file_storage.get(session_id, {}).get(file_id)
        self.remove_file(session_id, file_id)
        size = len(record.data) if record is not None else 0
        self._count(1 if record is not None else 0, size)
        return size

    def _drop_session(self, session_id: str) -> int:
        records = list(self.manager.file_storage.get(session_id, {}).values())
        self.remove_session_files(session_id)
        size = sum(len(record.data) for record in records)
        self._count(len(records), size)
        return size

    def _count(self, files: int, size: int) -> None:
        with self._lock:
            self.freed_files += files
            self.freed_bytes += size


_INSTALL_LOCK = threading.Lock()


def _manager() -> Any:
    return runtime.get_instance().uploaded_file_mgr if runtime.exists() else None


def session_id() -> str | None:
    """This browser session's id (what its uploads are kept under), or None outside a script run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


# ----- TorchScript on this deployment ------------------------------------------------------------------------
ALLOW_TORCHSCRIPT = "CNNVIS_ALLOW_TORCHSCRIPT"  # "1": accept TorchScript uploads anyway; "0": never


def is_loopback(address: str | None) -> bool:
    """127.x, ::1 and localhost. None or "" means every interface (Streamlit's default without our config)."""
    if not address:
        return False
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:  # a host name: it resolves to who knows what
        return False


def torchscript_allowed(address: str | None, environ: Mapping[str, str] = os.environ) -> bool:
    """TorchScript uploads: CNNVIS_ALLOW_TORCHSCRIPT=1 or =0 decides when set (=0 is for a loopback server behind a
    reverse proxy, which is exposed though its address is not); unset, on for loopback only."""
    choice = environ.get(ALLOW_TORCHSCRIPT, "").strip().lower()
    if choice in ("1", "true", "yes", "on"):
        return True
    if choice in ("0", "false", "no", "off"):
        return False
    return is_loopback(address)


def server_allows_torchscript() -> bool:
    """For this server (its `server.address` option)."""
    return torchscript_allowed(st.get_option("server.address"))


# ----- models on this deployment -------------------------------------------------------------------------------
MAX_MODEL_PARAMS = "CNNVIS_MAX_MODEL_PARAMS"  # parameters of the largest zoo model loaded: 150000000, 150M, or 0
MODEL_ALLOWLIST = "CNNVIS_MODEL_ALLOWLIST"  # comma-separated model names; "*": every model
# 150 million parameters: every registered model fits (the largest, vgg16, has 138 M) and so do the zoo classifiers
# people try first (resnet50 25.6 M, vit_b_16 86.6 M, convnext_base 88.6 M, wide_resnet101_2 126.9 M); vit_l_16
# (304 M, 1.2 GB of float32 weights: the server went from 1.05 to 2.57 GB loading it) and the billion-parameter timm
# models do not. An explanation holds the weights, a recorded forward pass and its gradients: on a shared 2-core
# demo server with a few GB, 150 M parameters (600 MB of weights) is about the most that several sessions can use.
DEFAULT_MAX_PARAMS = 150_000_000
_SUFFIXES = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "b": 1_000_000_000}


def max_model_params(environ: Mapping[str, str] = os.environ) -> int | None:
    """CNNVIS_MAX_MODEL_PARAMS as a count (150000000, 150M or 1.5G; 0 or "none": no cap); unset or unreadable:
    DEFAULT_MAX_PARAMS."""
    text = environ.get(MAX_MODEL_PARAMS, "").strip().lower().replace("_", "")
    if text in ("0", "none", "off"):
        return None
    scale = _SUFFIXES.get(text[-1:], 1)
    try:
        value = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        return DEFAULT_MAX_PARAMS
    return int(value) if value > 0 and value < float("inf") else DEFAULT_MAX_PARAMS


def model_allowlist(
    address: str | None, registered: frozenset[str], environ: Mapping[str, str] = os.environ
) -> frozenset[str] | None:
    """The models this server may load (None: every one). CNNVIS_MODEL_ALLOWLIST decides when set ("*": every
    model; set on a loopback server behind a reverse proxy, which is exposed though its address is not); unset,
    every model on loopback and only the `registered` ones on an exposed server: no zoo model, no download but
    theirs."""
    text = environ.get(MODEL_ALLOWLIST)
    if text is not None and text.strip():
        names = frozenset(name.strip() for name in text.split(",") if name.strip())
        return None if "*" in names else names
    return None if is_loopback(address) else registered


def server_model_limits(registered: frozenset[str]) -> tuple[frozenset[str] | None, int | None]:
    """(allowlist, parameter cap) for this server (its `server.address` option and environment)."""
    return model_allowlist(st.get_option("server.address"), registered), max_model_params()
