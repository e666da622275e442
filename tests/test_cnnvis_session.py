"""cnnvis.show's inline display: an IFrame under the cell in a Jupyter kernel, nothing in a plain script."""

from __future__ import annotations

import sys
import types

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
