"""The dashboard's thin Streamlit layer: cached engine calls (`compute`), session state (`state`), the current
choices (`context`), the shared sidebar, and panel drawing (`panels`, `views`, `controls`)."""
