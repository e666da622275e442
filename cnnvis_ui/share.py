"""Sharing the view: the "Copy link" button and what an opened link could not bring back; a link to any page
running through the entry script (`ensure_entry`); and the one-line hint at the top of every page that says where
the choices are (the sidebar hides behind its toggle on a phone).

The view itself lives in the URL (`state.URL_PARAMS`): every change writes it, so the address bar always holds the
link. The button copies that address; where the browser refuses the clipboard (a page served over plain http
from another machine), it shows the link selected, ready to copy by hand.
"""

from __future__ import annotations

import streamlit as st
from streamlit import runtime
from streamlit.runtime.pages_manager import PagesManager

from . import state
from .text import plain


def ensure_entry() -> None:
    """Make every page run through dashboard.py, even when it is the first request after the server starts.

    Streamlit treats an app with a `pages/` folder as an old-style multipage app until the entry script has called
    `st.navigation` once in the server process (that call clears `PagesManager.uses_pages_directory`). So if the
    first request after a start is a deep link such as /layers, or a browser reload on that page, Streamlit runs
    pages/layers.py on its own: no page config, no shared sidebar. Called at the top of each page, this notices
    that, switches the process to st.navigation mode as the entry script would, and reruns, so dashboard.py runs
    and routes to the same page. Under AppTest (no runtime) it does nothing: tests run page files on their own on
    purpose."""
    if runtime.exists() and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation does on its first call
        st.rerun()


# The browser's current address, not one the server computed: it is right even after back/forward. The fixed
# text is this module's own (no user input reaches the script).
_COPY_LINK_HTML = """
<div class="cnnvis-share">
<button type="button" id="cnnvis-copy-link" title="Copies this page's address: it reopens this exact view
(page, model, image, layer, class, methods and display settings) in any browser that can reach this server."
 style="width:100%;padding:0.35rem 0.75rem;border-radius:0.5rem;border:1px solid rgba(49,51,63,0.2);
 background:transparent;cursor:pointer;font:inherit;color:inherit">Copy link to this view</button>
<input id="cnnvis-link-text" readonly aria-label="Link to this view"
 style="display:none;width:100%;margin-top:0.3rem;font-size:0.8rem">
</div>
<script>
(function () {
  // One listener for the page, on the document: the button may be drawn after this script runs, and again on
  // every rerun.
  if (window.cnnvisCopyLink) return;
  window.cnnvisCopyLink = true;
  document.addEventListener("click", async function (event) {
    const button = event.target.closest && event.target.closest("#cnnvis-copy-link");
    if (!button) return;
    const field = document.getElementById("cnnvis-link-text");
    const link = window.location.href;
    try {
      await navigator.clipboard.writeText(link);
      button.textContent = "\u2713 Link copied";
    } catch (error) {
      field.style.display = "block";
      field.value = link;
      field.select();
      button.textContent = "Copy the link below";
    }
    setTimeout(function () { button.innerHTML = 'Copy link to this view'; }, 2500);
  });
})();
</script>
"""  # no inline <svg> icon: with one in the body, Streamlit did not run the script


def copy_link_button() -> None:
    """The "Copy link" button (in the sidebar, on every page)."""
    st.html(_COPY_LINK_HTML, unsafe_allow_javascript=True)


def link_notice() -> None:
    """What an opened link asked for that this server could not give, once, with the way out."""
    notice = state.get(state.LINK_NOTICE)
    if notice:
        st.warning(plain(notice), icon=":material/link_off:")
        state.put(state.LINK_NOTICE, "")


# Fixed text (no user input): one line for wide screens, another for phones, where the sidebar starts folded away.
_WHERE_HTML = """
<style>
  .cnnvis-where { font-size: 0.85rem; opacity: 0.75; margin: 0 0 -0.5rem 0; }
  .cnnvis-where .narrow { display: none; }
  @media (max-width: 640px) {
    .cnnvis-where .wide { display: none; }
    .cnnvis-where .narrow { display: inline; }
  }
</style>
<p class="cnnvis-where">
  <span class="wide">Model, picture, layer and class are chosen in the sidebar on the left; to try your own
  picture, use <b>Or upload your own</b> under the sample photos there.</span>
  <span class="narrow">Tap <b>&#187;</b> at the top left to choose the model, the picture (or upload your own),
  the layer and the class.</span>
</p>
"""


def where_things_are() -> None:
    """The hint line at the top of a page's main area."""
    st.html(_WHERE_HTML)


# ----- at phone width (≤ 640 px) ---------------------------------------------------------------------------
# Streamlit folds the sidebar away behind a small » at the top left: a button at the top of the page opens it (the
# model, picture, layer and class are chosen there), and the page's margins and title shrink so that the panels,
# which Streamlit stacks one per row there, get the width, and the sidebar's sample photos stay two by two. Fixed
# markup and script (no user input); on wider screens none of it shows or changes anything.
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
