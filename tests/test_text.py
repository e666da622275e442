"""User text shown as typed (`cnnvis_ui.text`): no Markdown, no autolink, no entity, no list; bidirectional
controls dropped, control characters as spaces, invisible-only names as "(unnamed)". What the browser makes of
it is checked in test_limits_browser.py (no <a>, no request off the machine)."""

from __future__ import annotations

import pytest

from cnnvis_ui.text import UNNAMED, clean, code_span, plain, visible


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("tabby cat", "tabby cat"),
        ("conv_stem", "conv_stem"),
        ("**a** _b_", "\\*\\*a\\*\\* \\_b\\_"),
        ("![x](pixel.png)", "\\!\\[x\\](pixel.png)"),
        (":red[a] :cat: $x$", "\\:red\\[a\\] \\:cat\\: \\$x\\$"),
        ("&copy; &amp; &#65;", "\\&copy; \\&amp; \\&\\#65;"),
        ("- item", "\\- item"),
        ("+ item", "\\+ item"),
        ("1. first", "1\\. first"),
        ("12) twelfth", "12\\) twelfth"),
        ("a - b 1. c", "a - b 1. c"),  # only a line's start makes a list
        ("<b>bold</b>", "\\<b\\>bold\\<\\/b\\>"),
    ],
)
def test_markdown_is_escaped(text, shown):
    assert plain(text) == shown


@pytest.mark.parametrize(
    "text",
    [
        "www.evil.example/login",
        "WWW.Evil.Example",
        "http://203.0.113.9/p.png",
        "see https://x.example",
        "me@evil.example",
        "mailto:me@x.example",
        "xmpp:me@x.example",
        "![x](https://203.0.113.9/p.png).pt",
    ],
)
def test_what_would_be_an_autolink_becomes_a_code_span(text):
    """Streamlit's Markdown finds autolinks in the text after escapes are resolved: `www\\.x` is still linked
    (seen in Chromium), so such text goes in a code span, where nothing is parsed."""
    assert plain(text) == f"`{text}`"


def test_code_spans_survive_backticks_and_edge_spaces():
    assert code_span("a`b") == "``a`b``"
    assert code_span("``x") == "``` ``x ```"
    assert code_span(" x") == "`  x `"
    assert plain("www.x.example `y`") == "`` www.x.example `y` ``"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\u202egnp.exe", "gnp.exe"),  # RIGHT-TO-LEFT OVERRIDE: would show as exe.png
        ("a\u2066b\u2069c\u200ed\u200fe\u061cf\u202ag\u202bh\u202ci\u202dj", "abcdefghij"),
        ("two\nlines\tand\x00nul", "two lines and nul"),
        ("\u200b", UNNAMED),
        ("\u200b\u200c\u200d\u2060\ufeff", UNNAMED),
        ("   ", UNNAMED),
        ("\u3164\u2800", UNNAMED),
        ("\u202e", UNNAMED),
        ("", ""),
        ("a\u200db", "a\u200db"),  # a joiner inside a visible name stays (emoji sequences need it)
        ("名前", "名前"),
        ("شبكة", "شبكة"),
    ],
)
def test_bidi_controls_and_invisible_names(text, shown):
    assert clean(text) == shown
    assert plain(text) == shown


def test_visible():
    assert visible("a") and visible("\u200ba") and not visible("\u200b \u00ad") and not visible("")
