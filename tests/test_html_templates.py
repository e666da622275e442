"""The three HTML documents come from templates/ (one base page, the CSS once): a hostile label shows as text, each
page keeps the structure the str.format code gave it (tests/html_before, apart from the viewport line every page now
has), and the templates ship with the package."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from html_cases import HOSTILE, SNAPSHOTS, audit_page, dom, index_page, report_page
from jinja2 import UndefinedError

from cnnvis_engine.pages import render_page

ROOT = Path(__file__).resolve().parent.parent
VIEWPORT = "<meta content='width=device-width, initial-scale=1' name='viewport'>"


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {"report": report_page(), "audit": audit_page(), "index": index_page(tmp_path_factory.mktemp("index"))}


@pytest.mark.parametrize("name", ["report", "audit", "index"])
def test_a_script_label_shows_as_text(pages: dict[str, str], name: str) -> None:
    page = pages[name]
    items = dom(page)
    assert "<script>" not in items and "<i>" not in items  # no element made from a label
    assert "<script>" not in page and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;quoted&#34;" in page
    assert any(HOSTILE in item for item in items)  # ... and the label reads as written


@pytest.mark.parametrize("name", ["report", "audit", "index"])
def test_structure_and_text_as_before(pages: dict[str, str], name: str) -> None:
    items = dom(pages[name], styles=False)
    assert items.count(VIEWPORT) == 1
    before = (SNAPSHOTS / f"{name}.dom").read_text(encoding="utf-8").splitlines()  # the report had the viewport
    assert [item for item in items if item != VIEWPORT] == [item for item in before if item != VIEWPORT]


def test_one_base_page_and_the_css_once(pages: dict[str, str]) -> None:
    css = (ROOT / "cnnvis_engine" / "templates" / "base.css").read_text(encoding="utf-8").strip()
    for page in pages.values():
        assert page.startswith("<!DOCTYPE html>") and page.count(css) == 1 and page.count("<style>") == 1
        assert page.count("<h1>") == 1 and page.rstrip().endswith("</body></html>")
    report = dom(pages["report"])
    assert report.count("<figure>") == 4 and report.count("<img alt='Grad-CAM' src=data:image/png;base64>") == 1
    assert "No picture." in report and report.count("<div class='empty'>") == 2
    audit = dom(pages["audit"])
    assert audit.count("<section>") == 2 and audit.count("<div class='card flagged'>") == 1
    assert "1 more clusters in clusters.csv." in audit  # one card shown per class, the other listed as hidden
    index = dom(pages["index"])
    assert index.count("<tr>") == 4 and "<a href='cat.html'>" in index
    assert sum(item.startswith("<img") for item in index) == 2  # a thumbnail for each report, none for the failure


def test_a_missing_value_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(UndefinedError):
        render_page("report.html", title="t", rows=[])


def test_templates_ship_with_the_package() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {path.name for path in (ROOT / "cnnvis_engine" / "templates").iterdir()}
    assert shipped == {"base.html", "base.css", "report.html", "audit.html", "index.html"}
    patterns = data["cnnvis_engine"]
    assert all(any(Path(f"templates/{name}").match(p) for p in patterns) for name in shipped)
