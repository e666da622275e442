"""`cnnvis.show(model)` and `cnnvis.stop()`: the dashboard on an in-memory model, from a notebook or a script.

The model is handed to the dashboard inside this process (the engine's `offer_model`; the server runs on a thread
here, see `cnnvis.server`), so what is trusted is only what you pass in: no file is written or read for the
hand-off, and the browser can choose among the offered models but never make the server import anything.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torch import nn

from cnnvis_engine.models import ModelBundle, offer_model, withdraw_model, wrap_module

from . import server

_shown: list[str] = []  # names offered by show() in this process, withdrawn by stop()


def show(
    model: nn.Module | ModelBundle,
    *,
    labels: Sequence[str] | str | None = None,
    input_size: tuple[int, int] | int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    name: str | None = None,
    port: int | None = None,
    inline: bool = True,
    block: bool | None = None,
) -> str:
    """Start (or reuse) the dashboard with `model` first and selected for new browser sessions; print and return
    its URL, and show it inline when running in Jupyter. `model` is a classifier `(N, 3, H, W) -> (N, K)`, K >= 2
    (in eval mode afterwards); `labels` names its K classes (a list, or a text file with one per line);
    `input_size` is (height, width), 224×224 by default; `mean`/`std` apply to RGB / `scale` (255: pixels in
    [0, 1]), ImageNet's by default. Raises EngineError with a sentence when the model cannot be explained.

    `block`: wait here until Ctrl-C or `cnnvis.stop()` (from another thread) before returning. By default it
    blocks in a plain `python script.py`, where returning would end the script and the server with it, and returns
    at once in an interactive session (the Python or IPython prompt, `python -i`, a notebook)."""
    bundle = (
        model
        if isinstance(model, ModelBundle)
        else wrap_module(
            model,
            name=name or type(model).__name__,
            labels=labels,
            input_size=input_size,
            mean=mean,
            std=std,
            scale=scale,
            weights_source="file",
            weights_detail=f"the {type(model).__name__} given to cnnvis.show",
            description=f"{name or type(model).__name__}, given to cnnvis.show in this Python process.",
        )
    )
    replaced = bundle.name.lower() in _shown
    spec = offer_model(bundle)
    if replaced:
        _forget_cached_models()  # a model shown earlier under this name must not be served from the caches
    else:
        _shown.append(spec.name)
    address = server.start(port)
    if block is None:
        block = not _interactive()
    if block:
        print(f"cnnvis: {bundle.name} is at {address}  (serving until Ctrl-C; show(..., block=False) returns at once)")
    else:
        print(f"cnnvis: {bundle.name} is at {address}  (cnnvis.stop() ends it)")
    if inline:
        _display_inline(address)
    if block:
        server.wait()
    return address


def _interactive() -> bool:
    """A prompt is waiting for the person after this call: the Python REPL, `python -i`, IPython or Jupyter."""
    if hasattr(sys, "ps1") or sys.flags.interactive:
        return True
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None


def stop() -> None:
    """Stop the dashboard that `show` started and forget the models it was shown."""
    server.stop()
    for name in _shown:
        withdraw_model(name)
    _shown.clear()
    _forget_cached_models()


def _forget_cached_models() -> None:
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()


def _display_inline(address: str) -> None:
    """An IFrame under the cell, in a Jupyter kernel only (a plain `python script.py` has no display)."""
    try:
        from IPython import get_ipython
        from IPython.display import IFrame, display
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return
    display(IFrame(address, width="100%", height=820))
