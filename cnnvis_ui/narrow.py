"""A usable page at phone width (≤ 640 px), where Streamlit folds the sidebar away behind a small » at the top
left: a button at the top of the page opens it (the model, picture, layer and class are chosen there), and the
page's margins and title shrink so that the panels, which Streamlit stacks one per row there, get the width, and
the sidebar's sample photos stay two by two.

Fixed markup and script (no user input); on wider screens none of it shows or changes anything.
"""

from __future__ import annotations

import streamlit as st

MENU_BUTTON_ID = "cnnvis-open-menu"
_HTML = f"""
<style>
  #{MENU_BUTTON_ID} {{ display: none; }}
  @media (max-width: 640px) {{
    #{MENU_BUTTON_ID} {{
      display: block; width: 100%; padding: 0.55rem 0.75rem; border-radius: 0.5rem; font: inherit;
      border: 1px solid rgba(49, 51, 63, 0.25); background: rgba(240, 242, 246, 0.9); color: inherit;
      cursor: pointer; text-align: left;
    }}
    [data-testid="stMainBlockContainer"] {{ padding-left: 0.9rem; padding-right: 0.9rem; padding-top: 4.2rem; }}
    [data-testid="stMainBlockContainer"] h1 {{ font-size: 1.75rem; line-height: 1.2; }}
    /* the sidebar's sample photos stay two by two (Streamlit stacks columns at this width: four screens of photos) */
    [data-testid="stSidebar"] [data-testid="stHorizontalBlock"] {{ flex-wrap: nowrap !important; }}
    [data-testid="stSidebar"] [data-testid="stColumn"] {{ min-width: 0 !important; flex: 1 1 0 !important; }}
  }}
</style>
<button type="button" id="{MENU_BUTTON_ID}" aria-label="Open the menu: model, picture, layer and class">
  &#9776;&nbsp; Choose the model, picture, layer and class
</button>
<script>
(function () {{
  // One listener for the page (the button is drawn again on every rerun): open Streamlit's folded sidebar.
  if (window.cnnvisOpenMenu) return;
  window.cnnvisOpenMenu = true;
  document.addEventListener("click", function (event) {{
    if (!(event.target.closest && event.target.closest("#{MENU_BUTTON_ID}"))) return;
    const expand = document.querySelector('[data-testid="stExpandSidebarButton"]');
    const button = expand && (expand.tagName === "BUTTON" ? expand : expand.querySelector("button") || expand);
    if (button) button.click();
  }});
}})();
</script>
"""


def menu_button() -> None:
    """The phone-width button that opens the sidebar, and the narrow-screen layout; nothing shows when wider."""
    st.html(_HTML, unsafe_allow_javascript=True)
