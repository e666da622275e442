"""Slow jobs inside the dashboard's cached calls: each waits its turn in the server's queue (`jobs.py`), with a
"Waiting for N earlier jobs…" notice where its result will be drawn (`queued`, `slow_job`)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from . import jobs

P = ParamSpec("P")
R = TypeVar("R")


def session_id() -> str:
    """The browser session running this script (Streamlit's id); outside a script run (the bench, the CLI), the
    calling thread stands for a session."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else f"thread-{threading.get_ident()}"


@contextmanager
def queued(label: str) -> Iterator[None]:
    """Around one slow job: waits for its turn in the server's queue (`jobs.gate()`), with "Waiting for N earlier
    jobs…" where its result will be drawn, redrawn as the count falls and every heartbeat (the redraw is where
    Streamlit stops a run that a newer one replaced, which leaves the queue). Used inside cached functions, before
    their own progress bars: a cache hit never waits, and replays the placeholder made and emptied."""
    place = st.empty()

    def show(ahead: int) -> None:
        place.info(jobs.waiting_sentence(ahead, label), icon=":material/hourglass_top:")

    try:
        with jobs.slow(session_id(), label, on_wait=show):
            place.empty()
            yield
    finally:
        place.empty()


def slow_job(label: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the function is a slow job called `label` (`queued`); put it above `threads.sized`, so that a
    session waiting in the queue takes no share of the thread budget."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with queued(label):
                return func(*args, **kwargs)

        return wrapper

    return decorate
