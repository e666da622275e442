"""Sharing the view: the "Copy link" button and what an opened link could not bring back; and the one-line hint
at the top of every page that says where the choices are (the sidebar hides behind its toggle on a phone).

The view itself lives in the URL (`state.URL_PARAMS`): every change writes it, so the address bar always holds the
link. The button copies that address; where the browser refuses the clipboard (a page served over plain http
from another machine), it shows the link selected, ready to copy by hand.
"""

from __future__ import annotations

import streamlit as st

from . import state
from .text import plain

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
