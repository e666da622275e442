"""Make every page run through dashboard.py, even when it is the first request after the server starts.

Streamlit treats an app with a `pages/` folder as an old-style multipage app until the entry script has called
`st.navigation` once in the server process (that call clears `PagesManager.uses_pages_directory`). So if the
first request after a start is a deep link such as /layers, or a browser reload on that page, Streamlit runs
pages/layers.py on its own: no page config, no shared sidebar. `ensure_entry()` at the top of each page notices
that, switches the process to st.navigation mode as the entry script would, and reruns, so dashboard.py runs and
routes to the same page. Under AppTest (no runtime) it does nothing: tests run page files on their own on purpose.
"""

from __future__ import annotations

import ctypes

import streamlit as st
from streamlit import runtime
from streamlit.runtime.pages_manager import PagesManager


def ensure_entry() -> None:
    if runtime.exists() and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation does on its first call
        st.rerun()


def tune_malloc(arenas: int = 2, mmap_threshold: int = 1 << 20) -> None:
    """Keep the server's resident memory near its working set (glibc only; a no-op elsewhere).

    Streamlit runs every script run on a fresh thread and glibc gives threads their own malloc arenas (up to 8 per
    core), so tensors freed by one run are not reused by the next. And glibc raises its mmap threshold after large
    frees, so later activation tensors (1–30 MB) come from arenas that never shrink. Capping the arenas (like
    MALLOC_ARENA_MAX=2) and fixing the threshold at 1 MiB (like MALLOC_MMAP_THRESHOLD_) returns big tensors to the
    system when freed: measured here, peak RSS with the default model and resnet50 fell from about 1.9 to 1.5 GB.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, arenas)
        libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
    except (OSError, AttributeError):
        pass


_M_MMAP_THRESHOLD = -3  # glibc malloc.h
_M_ARENA_MAX = -8
