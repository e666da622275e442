"""The dashboard's Streamlit server, run inside this Python process, on a background thread.

`cnnvis.show(model)` and `cnnvis serve --model ...` both end here, so the model never leaves the process that
loaded it: no file is written, nothing is pickled, and a class defined in a notebook's or a script's `__main__`
works as it is. The model reaches the dashboard through the engine's registry (`offer_model`), which the
dashboard's scripts read in the same process.

One server per process (Streamlit's `Runtime` is a singleton); `stop()` ends it and frees its port. The options
are those of the project's `.streamlit/config.toml` (loopback only, no usage statistics, no file watcher), passed
as flags, so they hold wherever the command is run from.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # streamlit is imported when a dashboard starts
    from streamlit.web.server import Server

ROOT = Path(__file__).resolve().parent.parent  # where dashboard.py, pages/ and assets/ lie (checkout or install)
DASHBOARD = ROOT / "dashboard.py"
DEFAULT_PORT = 8501
# The same settings as .streamlit/config.toml (tests/test_serve_browser.py checks that they agree).
OPTIONS = {
    "server.address": "127.0.0.1",
    "server.headless": True,
    "server.maxUploadSize": 500,
    "server.fileWatcherType": "none",
    "browser.gatherUsageStats": False,
    "client.toolbarMode": "viewer",
    "client.showErrorDetails": "none",
}
START_TIMEOUT = 60.0


@dataclass
class _Running:
    server: Server
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    url: str


_running: _Running | None = None  # the one server this process runs (Streamlit allows one runtime per process)
_lock = threading.Lock()


def url() -> str | None:
    """The running dashboard's address, or None."""
    return _running.url if _running is not None else None


def start(port: int | None = None) -> str:
    """Start the dashboard on 127.0.0.1:`port` (8501, or a free port when that is taken) unless it runs already;
    return its URL once it answers its health check."""
    global _running
    with _lock:
        if _running is not None and _running.thread.is_alive():
            return _running.url
        from streamlit.runtime import Runtime
        from streamlit.web import bootstrap
        from streamlit.web.server import Server

        chosen = _choose_port(port)
        bootstrap.load_config_options(
            {
                name.replace(".", "_"): value
                for name, value in {
                    **OPTIONS,
                    "server.port": chosen,
                }.items()
            }
        )
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))  # pages import cnnvis_ui, as under `streamlit run`
        Runtime._instance = None  # a stopped server leaves its runtime behind
        server = Server(str(DASHBOARD), is_hello=False)
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            try:
                await server.start()
            except BaseException as exc:  # noqa: BLE001 - reported to the caller below
                failure.append(exc)
                started.set()
                return
            started.set()
            await server.stopped

        thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="cnnvis-server", daemon=True)
        thread.start()
        if not started.wait(START_TIMEOUT) or failure:
            reason = failure[0] if failure else "timeout"
            raise RuntimeError(f"The dashboard could not start on port {chosen}: {reason}")
        from streamlit import config

        address = f"http://127.0.0.1:{config.get_option('server.port')}"
        _wait_healthy(address)
        _running = _Running(server, loop, thread, address)
        return address


def stop(timeout: float = 15.0) -> None:
    """Stop the dashboard started by `start` (if any) and wait until its port is free."""
    global _running
    with _lock:
        running, _running = _running, None
        if running is None:
            return
        running.loop.call_soon_threadsafe(running.server.stop)
        running.thread.join(timeout)
        from streamlit.runtime import Runtime

        Runtime._instance = None


def wait() -> None:
    """Block until the server stops; Ctrl-C stops it."""
    running = _running
    if running is None:
        return
    try:
        while running.thread.is_alive():
            running.thread.join(0.5)
    except KeyboardInterrupt:
        stop()


def _choose_port(port: int | None) -> int:
    if port is not None:
        return port
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a just-stopped port is free
        try:
            sock.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError:
            return 0  # taken: the system picks a free one
    return DEFAULT_PORT


def _wait_healthy(address: str, timeout: float = START_TIMEOUT) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{address}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"The dashboard at {address} did not answer within {timeout:.0f} s.")
