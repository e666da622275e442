"""A panel set -> one labelled PNG grid and one self-contained HTML page, stamped with what made them.

Pure numpy/PIL: the dashboard renders each panel to an (H, W, 3) uint8 picture exactly as shown on screen,
then hands the pictures here. A panel whose method does not apply carries its reason instead of a picture,
so a report never shows a blank square or a wrong map. The HTML embeds every picture as a base64 PNG data
URI and all styling inline, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import io
import math
import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import EngineError
from .pages import render_page
from .render import ReportPanel

VERSION_PACKAGES = ("cnnvis", "torch", "torchvision", "timm", "numpy", "pillow", "opencv-python-headless", "streamlit")

_BACKGROUND = (255, 255, 255)
_INK = (38, 39, 48)
_MUTED = (110, 112, 122)
_EMPTY = (240, 242, 246)
_RULE = (214, 217, 224)
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont  # DejaVu Sans, or Pillow's bundled font


@dataclass(frozen=True)
class ReportStamp:
    """What produced the panels. `settings` are the method and display settings, by name."""

    model: str
    weights: str  # where the weights came from: "pretrained (torchvision …)", "random initialisation (…)"
    layer: str
    target: str
    image: str = ""  # which picture: a sample's title or an upload's file name
    settings: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    title: str = "cnnvis report"

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) lines in display order; empty values left out."""
        rows = [
            ("Model", self.model),
            ("Weights", self.weights),
            ("Image", self.image),
            ("Layer", self.layer),
            ("Target", self.target),
            *[(name, str(value)) for name, value in self.settings.items()],
            ("Versions", ", ".join(f"{name} {version}" for name, version in self.versions.items())),
            ("Date", self.created.strftime("%Y-%m-%d %H:%M %Z").strip()),
        ]
        return [(label, value) for label, value in rows if value]


def library_versions(packages: Iterable[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Installed versions of `packages` (those not installed are left out) and Python's."""
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions


def render_report_png(panels: Sequence[ReportPanel], stamp: ReportStamp, *, columns: int = 3, tile: int = 320) -> bytes:
    """The panels as a labelled grid under a header with the stamp, encoded as PNG bytes.

    Each cell is `tile` pixels wide: the title, the picture scaled to fit a tile × tile square (aspect kept),
    then the caption; a panel without a picture shows its note on grey instead.
    """
    if not panels:
        raise EngineError("There is nothing to put in the report: no panels were given.")
    columns = max(1, min(columns, len(panels)))
    fonts = _Fonts()
    pad, gap = 24, 20
    width = 2 * pad + columns * tile + (columns - 1) * gap

    header = _header_lines(stamp, fonts, width - 2 * pad)
    header_height = sum(height for _, _, height, _ in header) + 12
    cell_heights = [_cell_height(panel, fonts, tile) for panel in panels]
    rows = math.ceil(len(panels) / columns)
    row_heights = [max(cell_heights[r * columns : (r + 1) * columns]) for r in range(rows)]
    height = pad + header_height + gap + sum(row_heights) + (rows - 1) * gap + pad

    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = pad
    for text, font, line_height, color in header:
        draw.text((pad, y), text, font=font, fill=color)
        y += line_height
    y += 12
    draw.line([(pad, y - 6), (width - pad, y - 6)], fill=_RULE, width=1)
    y += gap - 6
    for index, panel in enumerate(panels):
        row, column = divmod(index, columns)
        top = y + sum(row_heights[:row]) + row * gap
        left = pad + column * (tile + gap)
        _draw_cell(canvas, draw, panel, fonts, left, top, tile)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def render_panel_png(panel: ReportPanel, *, pad: int = 12) -> bytes:
    """One panel as a PNG: its title above the picture at its own size (not resampled) and its caption below,
    wrapped to the picture's width, so a saved panel still says what it shows."""
    if panel.picture is None:
        raise EngineError("This panel has no picture to save.")
    fonts = _Fonts()
    tile = max(panel.picture.shape[:2])
    canvas = Image.new("RGB", (tile + 2 * pad, _cell_height(panel, fonts, tile) + 2 * pad), _BACKGROUND)
    _draw_cell(canvas, ImageDraw.Draw(canvas), panel, fonts, pad, pad, tile)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def render_report_html(panels: Sequence[ReportPanel], stamp: ReportStamp) -> str:
    """One self-contained HTML page (templates/report.html): inline CSS, every picture a base64 PNG data URI, all
    text escaped."""
    if not panels:
        raise EngineError("There is nothing to put in the report: no panels were given.")
    figures = [(panel, "" if panel.picture is None else _png_data_uri(panel.picture)) for panel in panels]
    return render_page("report.html", title=stamp.title, rows=stamp.rows(), figures=figures)


class _Fonts:
    """DejaVu Sans where installed (it has ×, ·, accents and Greek), else Pillow's bundled font, in three sizes."""

    def __init__(self) -> None:
        self.heading = _font(22)
        self.title = _font(17)
        self.body = _font(14)


def _font(size: int) -> _Font:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _line_height(font: _Font) -> int:
    box = font.getbbox("Ag|")
    return int(box[3] - box[1]) + 7


def _wrap(text: str, font: _Font, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a single over-long word is cut with an ellipsis."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words = paragraph.split()
        line = ""
        for word in words:
            candidate = f"{line} {word}".strip()
            if font.getlength(candidate) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return [_fit(line, font, width) for line in lines]


def _fit(text: str, font: _Font, width: int) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _header_lines(stamp: ReportStamp, fonts: _Fonts, width: int) -> list[tuple[str, _Font, int, tuple[int, int, int]]]:
    lines = [(stamp.title, fonts.heading, _line_height(fonts.heading) + 4, _INK)]
    for label, value in stamp.rows():
        text_lines = _wrap(f"{label}: {value}", fonts.body, width)
        for i, text in enumerate(text_lines):
            lines.append(
                (text if i == 0 else "    " + text, fonts.body, _line_height(fonts.body), _MUTED if i else _INK)
            )
    return lines


def _picture_size(picture: np.ndarray, tile: int) -> tuple[int, int]:
    height, width = picture.shape[:2]
    scale = tile / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _cell_height(panel: ReportPanel, fonts: _Fonts, tile: int) -> int:
    height = _line_height(fonts.title) + 4
    if panel.picture is not None:
        height += _picture_size(panel.picture, tile)[1]
    else:
        height += max(tile // 2, len(_wrap(panel.note, fonts.body, tile - 24)) * _line_height(fonts.body) + 24)
    if panel.caption:
        height += 6 + len(_wrap(panel.caption, fonts.body, tile)) * _line_height(fonts.body)
    return height


def _draw_cell(
    canvas: Image.Image, draw: ImageDraw.ImageDraw, panel: ReportPanel, fonts: _Fonts, left: int, top: int, tile: int
) -> None:
    draw.text((left, top), _fit(panel.title, fonts.title, tile), font=fonts.title, fill=_INK)
    y = top + _line_height(fonts.title) + 4
    if panel.picture is not None:
        picture = _as_rgb(panel.picture)
        size = _picture_size(picture, tile)
        smooth = min(picture.shape[:2]) >= 64  # keep small kernels and grids blocky
        resample = Image.Resampling.LANCZOS if smooth else Image.Resampling.NEAREST
        canvas.paste(Image.fromarray(picture).resize(size, resample), (left, y))
        y += size[1]
    else:
        lines = _wrap(panel.note or "No picture.", fonts.body, tile - 24)
        box = max(tile // 2, len(lines) * _line_height(fonts.body) + 24)
        draw.rounded_rectangle([left, y, left + tile, y + box], radius=6, fill=_EMPTY)
        for i, line in enumerate(lines):
            draw.text((left + 12, y + 12 + i * _line_height(fonts.body)), line, font=fonts.body, fill=_INK)
        y += box
    if panel.caption:
        y += 6
        for line in _wrap(panel.caption, fonts.body, tile):
            draw.text((left, y), line, font=fonts.body, fill=_MUTED)
            y += _line_height(fonts.body)


def _as_rgb(picture: np.ndarray) -> np.ndarray:
    """Check and convert a panel picture to contiguous (H, W, 3) uint8."""
    array = np.asarray(picture)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.size == 0:
        raise EngineError(f"A report picture must be an (H, W, 3) image; got shape {array.shape}.")
    if array.dtype != np.uint8:
        array = np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[:, :, :3])


def _png_data_uri(picture: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(_as_rgb(picture)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
