"""cnnvis: what a convolutional neural network looks at. Run with `streamlit run dashboard.py`."""

import streamlit as st

from cnnvis_ui import audit_folders, context, panels, sidebar, threads, uploads

threads.tune_malloc()
# The server frees uploads no widget claims and those of closed sessions, and their Audit zips with them.
uploads.install(audit_folders.remove_uploads_of_gone_sessions)

st.set_page_config(page_title="cnnvis — what a CNN looks at", page_icon=panels.app_icon(), layout="wide")
page = st.navigation(
    [
        st.Page("pages/explore.py", title="Explore", icon=":material/visibility:", default=True),
        st.Page("pages/layers.py", title="Layers", icon=":material/layers:"),
        st.Page("pages/concepts.py", title="Concepts", icon=":material/category:"),
        st.Page("pages/compare.py", title="Compare", icon=":material/grid_view:"),
        st.Page("pages/sanity.py", title="Sanity", icon=":material/fact_check:"),
        st.Page("pages/stories.py", title="Stories", icon=":material/auto_stories:"),
        st.Page("pages/audit.py", title="Audit", icon=":material/troubleshoot:"),
    ]
)
context.hand_over(sidebar.render())  # the page's context.current() takes it: one Context per script run
try:
    page.run()
finally:
    context.hand_over(None)  # never left for a later run (a page that stopped before taking it)
