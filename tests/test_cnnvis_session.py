"""cnnvis.show: an IFrame under the cell in a Jupyter kernel, nothing inline in a plain script, where it serves until
Ctrl-C instead of returning (and ending the script and its server)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.request
from pathlib import Path

from cnnvis import session


def fake_ipython(monkeypatch, config: dict) -> list:
    shown = []
    ipython = types.ModuleType("IPython")
    display = types.ModuleType("IPython.display")
    ipython.get_ipython = lambda: types.SimpleNamespace(config=config)
    display.IFrame = lambda src, width, height: ("iframe", src, width, height)
    display.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    return shown


def test_inline_in_a_jupyter_kernel(monkeypatch):
    shown = fake_ipython(monkeypatch, {"IPKernelApp": {}})
    session._display_inline("http://127.0.0.1:8501")
    assert shown == [("iframe", "http://127.0.0.1:8501", "100%", 820)]


def test_nothing_inline_in_a_terminal_ipython_or_a_script(monkeypatch):
    shown = fake_ipython(monkeypatch, {})
    session._display_inline("http://127.0.0.1:8501")
    assert shown == []


SCRIPT = """
import sys
from torch import nn
import cnnvis
net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
cnnvis.show(net, input_size=(16, 16), port=int(sys.argv[1]), inline=False{block})
print("RETURNED", flush=True)
cnnvis.stop()
print("STOPPED", flush=True)
"""


def healthy(url: str) -> bool:
    try:
        return urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok"
    except OSError:
        return False


def start_script(tmp_path, block: str = "") -> tuple[subprocess.Popen, str, threading.Timer]:
    """Run SCRIPT in a fresh `python script.py`; (process, the URL it printed, a watchdog that kills it after 180 s
    so that a hang fails the test instead of holding CI)."""
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.format(block=block))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    watchdog = threading.Timer(180, process.kill)
    watchdog.start()
    assert process.stdout is not None
    line = process.stdout.readline()
    assert " is at " in line, f"the script printed {line!r}"
    return process, line, watchdog


def test_show_at_the_end_of_a_plain_script_serves_until_ctrl_c(tmp_path):
    process, line, watchdog = start_script(tmp_path)
    try:
        assert "serving until Ctrl-C" in line and "block=False" in line  # it says so
        url = line.split(" is at ")[1].split()[0]
        while not healthy(url):  # the watchdog ends a server that never answers
            assert process.poll() is None, "the script ended instead of serving"
            time.sleep(0.2)
        assert process.poll() is None  # still serving: show() has not returned
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=120)[0]
        assert process.returncode == 0 and "RETURNED" in rest  # Ctrl-C stopped the server and show() returned
        assert not healthy(url)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()


def test_block_false_returns_at_once(tmp_path):
    process, line, watchdog = start_script(tmp_path, block=", block=False")
    try:
        assert "cnnvis.stop() ends it" in line
        assert process.stdout.readline().strip() == "RETURNED"  # show() came back while the server runs
        rest = process.communicate(timeout=120)[0]
        assert "STOPPED" in rest and process.returncode == 0, (rest, process.returncode)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()


def test_a_prompt_or_a_notebook_gets_control_back(monkeypatch):
    monkeypatch.delattr(sys, "ps1", raising=False)
    monkeypatch.setitem(sys.modules, "IPython", None)
    assert not session._interactive() or sys.flags.interactive
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    assert session._interactive()
    monkeypatch.delattr(sys, "ps1")
    fake_ipython(monkeypatch, {"IPKernelApp": {}})
    assert session._interactive()
