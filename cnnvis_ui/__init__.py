"""The dashboard's thin Streamlit layer: cached models and engine calls (`model_cache`, `result_cache`), session state (`state`), the current
choices (`context`), the shared sidebar, and panel drawing (`panels`, `views`, `controls`)."""
