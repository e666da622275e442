"""Make every page run through dashboard.py, even when it is the first request after the server starts.

Streamlit treats an app with a `pages/` folder as an old-style multipage app until the entry script has called
`st.navigation` once in the server process (that call clears `PagesManager.uses_pages_directory`). So if the
first request after a start is a deep link such as /layers, or a browser reload on that page, Streamlit runs
pages/layers.py on its own: no page config, no shared sidebar. `ensure_entry()` at the top of each page notices
that, switches the process to st.navigation mode as the entry script would, and reruns, so dashboard.py runs and
routes to the same page. Under AppTest (no runtime) it does nothing: tests run page files on their own on purpose.
"""

from __future__ import annotations

import streamlit as st
from streamlit import runtime
from streamlit.runtime.pages_manager import PagesManager


def ensure_entry() -> None:
    if runtime.exists() and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation does on its first call
        st.rerun()
