"""Text that people supply (class names from a labels file, file names) shown exactly as typed.

Streamlit renders Markdown in `st.markdown`, captions, alerts and button labels: a class name such as
`![x](http://host/pixel.png)` would make every viewer's browser fetch that URL, and `**a**`, `:red[a]`, `:cat:` or
`$x$` would be restyled. Raw HTML is never rendered there, but its characters must stay visible too.
"""

from __future__ import annotations

import re

# What starts Markdown, Streamlit's directives (:red[..], :cat:, :material/..:) or LaTeX; `_` only where it could
# open or close emphasis (not inside a word such as conv_stem). Dots, dashes and parentheses stay as they are.
_MARKDOWN = re.compile(r"[\\`*\[\]!<>$:~#|/]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def plain(text: str) -> str:
    """`text` with its Markdown-special characters backslash-escaped (CommonMark escapes), so it shows as is."""
    return _MARKDOWN.sub(lambda match: "\\" + match.group(0), str(text))
