"""Faithfulness curves told apart and put in the report.

- `coinciding`: which maps' deletion and insertion curves are the same as an earlier map's (Grad-CAM and CAM at the
  layer feeding the global average pool), so the chart's legend can say so instead of one line hiding the other.
- `report_views`: the deletion and the insertion curves drawn as two pictures (Pillow, no browser needed), as
  panels the report shows after the maps, in the HTML and the PNG report alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import pairwise

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from plotly.colors import qualitative

from cnnvis_engine.faithfulness import Curve, Faithfulness

from .views import PanelView

COLOURS = qualitative.D3
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross")  # plotly marker symbols, one per map
DASHES = ((), (10, 6), (3, 4), (10, 4, 3, 4), (18, 6), (18, 4, 3, 4))  # on/off pixel runs, as charts.DASHES
_TOLERANCE = 1e-3  # probabilities closer than this at every step count as the same curve


def coinciding(scores: Mapping[str, Faithfulness], tolerance: float = _TOLERANCE) -> dict[str, str]:
    """{title: the earlier title whose deletion and insertion curves it repeats} for maps whose curves are the same."""
    same: dict[str, str] = {}
    titles = list(scores)
    for index, title in enumerate(titles):
        for earlier in titles[:index]:
            if earlier not in same and _same(scores[title], scores[earlier], tolerance):
                same[title] = earlier
                break
    return same


def _same(a: Faithfulness, b: Faithfulness, tolerance: float) -> bool:
    pairs = [
        (np.asarray(x.scores, dtype=float), np.asarray(y.scores, dtype=float))
        for x, y in ((a.deletion, b.deletion), (a.insertion, b.insertion))
    ]
    return all(x.shape == y.shape and float(np.abs(x - y).max(initial=0.0)) <= tolerance for x, y in pairs)


def legend_name(title: str, score: Faithfulness, same: Mapping[str, str]) -> str:
    """A curve's legend entry: its AUCs, and which earlier curve it lies on, if any."""
    name = f"{title}: deletion {score.deletion.auc:.2f}, insertion {score.insertion.auc:.2f}"
    return f"{name} (the same curves as {same[title]}: drawn on top of them)" if title in same else name


# ----- the report's pictures -----------------------------------------------------------------------------------
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]


def _dashed(
    draw: ImageDraw.ImageDraw, points: Sequence[tuple[float, float]], colour, width: int, pattern: tuple[int, ...]
) -> None:
    """A polyline with an on/off dash `pattern` (pixel runs) carried across its segments; () draws it solid."""
    if not pattern:
        draw.line(list(points), fill=colour, width=width, joint="curve")
        return
    runs, index, left, on = list(pattern), 0, float(pattern[0]), True
    for (x0, y0), (x1, y1) in pairwise(points):
        length = float(np.hypot(x1 - x0, y1 - y0))
        done = 0.0
        while done < length:
            step = min(left, length - done)
            if on:
                a, b = done / length, (done + step) / length
                draw.line(
                    [(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                    fill=colour,
                    width=width,
                )
            done += step
            left -= step
            if left <= 1e-9:
                index = (index + 1) % len(runs)
                left, on = float(runs[index]), not on
    return


def curve_picture(
    curves: Sequence[tuple[str, Curve]],
    title: str,
    x_label: str,
    *,
    size: tuple[int, int] = (520, 440),
    same: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Curves (label, Curve) as one (H, W, 3) uint8 chart: class probability against the fraction of pixels, one
    colour and dash per map, a legend with each map's area under the curve, curves that repeat an earlier one
    drawn on top, thinner, and named so."""
    width, height = size
    same = same or {}
    picture = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    small, body = _font(12), _font(14)
    legend_height = 18 * len(curves) + 8
    left, right, top, bottom = 58, width - 26, 34, height - 44 - legend_height
    draw.text((left, 8), title, fill=(38, 39, 48), font=body)
    top_value = max([1e-6, *(float(np.max(c.scores)) for _, c in curves)])
    ceiling = min(1.0, float(np.ceil(top_value * 10) / 10)) if top_value <= 1 else top_value
    for i in range(6):  # grid and ticks
        value = ceiling * i / 5
        y = bottom - (bottom - top) * i / 5
        draw.line([(left, y), (right, y)], fill=(230, 232, 238))
        draw.text((left - 6, y), f"{value:.2f}", fill=(110, 112, 122), font=small, anchor="rm")
        x = left + (right - left) * i / 5
        draw.text((x, bottom + 6), f"{i * 20}%", fill=(110, 112, 122), font=small, anchor="mt")
    draw.rectangle([left, top, right, bottom], outline=(180, 183, 192))
    draw.text(((left + right) / 2, bottom + 22), x_label, fill=(80, 82, 92), font=small, anchor="mt")
    label = Image.new("RGB", (bottom - top, 16), (255, 255, 255))
    ImageDraw.Draw(label).text(((bottom - top) / 2, 8), "class probability", fill=(80, 82, 92), font=small, anchor="mm")
    picture.paste(label.rotate(90, expand=True), (4, top))
    for index, (name, curve) in enumerate(curves):
        colour = _rgb(COLOURS[index % len(COLOURS)])
        points = [
            (left + (right - left) * float(f), bottom - (bottom - top) * float(s) / ceiling)
            for f, s in zip(curve.fractions, curve.scores)
        ]
        _dashed(draw, points, colour, 2 if name in same else 3, DASHES[index % len(DASHES)])
        y = bottom + 44 + 18 * index
        _dashed(draw, [(left, y + 7), (left + 34, y + 7)], colour, 3, DASHES[index % len(DASHES)])
        text = f"{name}: area {curve.auc:.2f}" + (f" (the same curve as {same[name]})" if name in same else "")
        draw.text((left + 42, y), text, fill=(38, 39, 48), font=small)
    return np.asarray(picture)


def report_views(scores: Mapping[str, Faithfulness], titles: Mapping[str, str]) -> list[PanelView]:
    """Two report panels, the deletion and the insertion curves of every scored map; none if nothing was scored."""
    if not scores:
        return []
    named = {titles.get(method, method): score for method, score in scores.items()}
    same = coinciding(named)
    deletion = curve_picture(
        [(t, s.deletion) for t, s in named.items()],
        "Deletion: most important pixels removed first",
        "fraction of pixels removed",
        same=same,
    )
    insertion = curve_picture(
        [(t, s.insertion) for t, s in named.items()],
        "Insertion: most important pixels put back first",
        "fraction of pixels inserted",
        same=same,
    )
    return [
        PanelView(
            key="curves-deletion",
            title="Faithfulness: deletion curves",
            picture=deletion,
            caption="the class probability as the pixels each map ranks highest are hidden; a small area is good",
        ),
        PanelView(
            key="curves-insertion",
            title="Faithfulness: insertion curves",
            picture=insertion,
            caption="the class probability as those pixels are put back on a blurred copy; a large area is good",
        ),
    ]
