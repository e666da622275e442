"""Fixed inputs for the three HTML documents (the report, the audit report, the CLI index), built by hand with no
model, and a normal form of a page's DOM for comparing two renderings: tags, attributes and text, whitespace collapsed,
data URIs reduced to their kind. tests/test_html_templates.py uses both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from cnnvis_engine.audit.analysis import Audit, ClassView, Cluster
from cnnvis_engine.audit.dataset import Skipped
from cnnvis_engine.folder_report import Row, _write_index
from cnnvis_engine.render import ReportPanel
from cnnvis_engine.report import ReportStamp, render_report_html

HOSTILE = "<script>alert('x')</script> & \"quoted\""  # a label a page must show as text


def report_page() -> str:
    picture = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    panels = [
        ReportPanel(f"Image {HOSTILE}", picture, caption=f"tabby · 81.0% {HOSTILE}"),
        ReportPanel("Grad-CAM", picture[::-1].copy(), caption="layer4 · tabby (class 281)"),
        ReportPanel("CAM", None, note=f"CAM needs a global-average-pool head {HOSTILE}"),
        ReportPanel("Saliency", None),
    ]
    stamp = ReportStamp(
        model=f"resnet18 {HOSTILE}",
        weights="random initialisation (seed 0)",
        layer="layer4",
        target="tabby (class 281)",
        image="cat.jpg",
        settings={"Colormap": "jet", "Opacity": "0.5", HOSTILE: HOSTILE},
        versions={"python": "3.11.7", "torch": "2.14.1"},
        created=datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
        title=f"cnnvis report {HOSTILE}",
    )
    return render_report_html(panels, stamp)


def audit_result() -> Audit:
    """Two classes, five pictures (one unread), three clusters (one flagged), notes and skipped files."""
    size = 4
    maps = np.full((5, size, size), 1 / size**2, np.float16)
    maps[0, 0, 0] = maps[1, 0, 0] = 0.5
    spot = np.zeros((size, size), np.float32)
    spot[0, 0] = 1.0
    flat = np.full((size, size), 1 / size**2, np.float32)
    clusters = [
        Cluster(HOSTILE, 0, (0, 1), 0.9, spot, 0.5, 2 / 3, 0.1, (0, 1)),
        Cluster(HOSTILE, 1, (2,), 0.1, flat, 1.0, 1 / 3, 0.8, (2,)),
        Cluster("dog", 0, (3, 4), 0.0, flat, None, 1.0, 0.0, (3,), pointing=1.0, mass_inside=0.5),
    ]
    classes = {
        HOSTILE: ClassView(HOSTILE, (0, 1, 2), np.zeros((3, 2), np.float32), np.array([0, 0, 1]), np.zeros(3)),
        "dog": ClassView("dog", (3, 4), np.zeros((2, 2), np.float32), np.array([0, 0]), np.zeros(2)),
    }
    names = ("cat/a.png", "cat/b <i>.png", "cat/c.png", "dog/d.png", "dog/e.png")
    return Audit(
        names=names,
        paths=tuple(f"/nonexistent/{n}" for n in names),
        labels=(HOSTILE, HOSTILE, HOSTILE, "dog", None),
        read=np.array([True, True, True, True, False]),
        predicted=np.array([0, 0, 1, 1, -1]),
        probability=np.array([0.9, 0.8, 0.6, 0.7, 0.0], np.float32),
        target=np.array([0, 0, 1, 1, 0]),
        correct=np.array([1.0, 0.0, 1.0, 1.0, np.nan]),
        maps=maps,
        pointing=np.full(5, np.nan),
        mass_inside=np.full(5, np.nan),
        clusters=clusters,
        classes=classes,
        class_names=("cat", "dog"),
        model=f"shapes {HOSTILE}",
        method="gradcam",
        layer=None,
        size=size,
        group="true",
        skipped=(Skipped("notes.txt", f"not a picture {HOSTILE}"),),
        notes=(f"One picture could not be read {HOSTILE}",),
    )


def audit_page() -> str:
    from cnnvis_engine.audit.report import render_audit_html

    return render_audit_html(audit_result(), shown_per_class=1)


@dataclass(frozen=True)
class _Bundle:
    name: str


def index_page(out: Path) -> str:
    """`cli._write_index` on three rows (a failure, a report with scores, one without), read back."""
    rows = [
        Row(image="broken.png", error=f"This file is not a picture {HOSTILE}"),
        Row("cat.jpg", "tabby", 0.81, "tabby (class 281)", "layer4", 0.12, 0.7, 0.05, "cat.png", "cat.html"),
        Row(f"x{HOSTILE}.jpg", "espresso", 0.9, "espresso", "layer4", png="x.png", html="x.html"),
    ]
    _write_index(out, rows, _Bundle(f"resnet18 {HOSTILE}"))  # type: ignore[arg-type]  # only .name is read
    return (out / "index.html").read_text(encoding="utf-8")


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        shown = " ".join(f"{k}={_attr(v)}" for k, v in sorted(attrs))
        self.items.append(f"<{tag}{' ' + shown if shown else ''}>")

    def handle_endtag(self, tag: str) -> None:
        self.items.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text:
            self.items.append(text)


def _attr(value: str | None) -> str:
    if value is not None and value.startswith("data:"):
        return value.split(",", 1)[0]
    return repr(value)


def dom(page: str, *, styles: bool = True) -> list[str]:
    """The page as a list of start tags (attributes sorted), end tags and text runs (whitespace collapsed)."""
    parser = _Dom()
    parser.feed(page)
    parser.close()
    items = parser.items
    if not styles:  # drop the text of <style> elements
        items = [item for i, item in enumerate(items) if i == 0 or items[i - 1] != "<style>" or item.startswith("<")]
    return items


SNAPSHOTS = Path(__file__).parent / "html_before"  # dom(..., styles=False) of each page as the str.format code wrote it


if __name__ == "__main__":  # rewrite the snapshots after an intended change: python tests/html_cases.py
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        pages = {"report": report_page(), "audit": audit_page(), "index": index_page(Path(folder))}
    for name, page in pages.items():
        (SNAPSHOTS / f"{name}.dom").write_text("\n".join(dom(page, styles=False)), encoding="utf-8")
