"""Engine results -> `PanelView`s: the picture each method's panel shows, its hover values and its caption.

Pure data: engine results in, `PanelView`s out. Nothing here imports Streamlit, directly or through another
dashboard module (tests/test_views_pure.py runs it with Streamlit blocked): `context` fetches the results (cached,
retried) and hands them here; `panels` draws what comes out. Display settings (colormap, opacity) are applied
here, after the cached computation, so changing them only redraws. Every method's panel is built the same way from
what its class declares (`result_view`).

A `PanelView` is what one panel shows — the same object feeds the screen and the report, so the report holds
exactly the pictures on screen (same colormap, opacity and layer).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

import cv2
import numpy as np

from cnnvis_engine import METHODS, DecodedImage, Explanation, MethodResult, Prediction
from cnnvis_engine.faithfulness import Faithfulness
from cnnvis_engine.methods.gradients import SATURATED_END  # noqa: F401  (the colour bar end tests read)
from cnnvis_engine.render import GAP, draw_map, grid_columns, result_panel
from cnnvis_engine.report import ReportStamp

_HOVER_CELLS = 4096  # at most this many hover values per figure: keeps each figure small to send


@dataclass(frozen=True)
class Hover:
    """Raw values laid over a picture: `values` (gh, gw) covering the whole picture, or one block per tile."""

    values: np.ndarray
    label: str  # "Grad-CAM", "activation", "|gradient|"
    x: np.ndarray | None = None  # cell centres in picture pixels; None: an even grid over the picture
    y: np.ndarray | None = None
    text: np.ndarray | None = None  # (gh, gw) strings naming each cell, e.g. "channel 12 · row 3, col 4"


@dataclass(frozen=True)
class Legend:
    """The colour bar under a map: its colormap and what its two ends mean."""

    colormap: str
    low: str = "0: no evidence"
    high: str = "1: strongest in this map"


@dataclass(frozen=True)
class PanelView:
    key: str  # stable id: "gradcam", "feature_maps" (widget keys and file names derive from it)
    title: str
    picture: np.ndarray | None = None  # (H, W, 3) uint8; None: show `note` instead
    caption: str = ""
    note: str = ""  # why there is no picture
    hover: Hover | None = None
    method: str | None = None  # registry name, for the folded explanation
    level: str = "info"  # how to show `note`: "info" (not applicable) or "error"
    legend: Legend | None = None  # a colour bar under the picture


# ----- hover grids ---------------------------------------------------------------------------------------
def pooled(values: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """Average (h, w) down so that neither side exceeds `limit`; returns the grid and the block size."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    height, width = values.shape
    block = max(1, math.ceil(max(height, width) / limit))
    if block == 1:
        return values, 1
    size = (max(1, width // block), max(1, height // block))
    return cv2.resize(values, size, interpolation=cv2.INTER_AREA), block


def map_hover(raw: np.ndarray, label: str, limit: int = 64) -> Hover:
    """Hover for one map covering the whole picture: coarse maps cell by cell, fine ones averaged in blocks."""
    grid, block = pooled(raw, limit)
    height, width = raw.shape
    if block > 1:
        return Hover(values=grid, label=f"mean of {block}×{block} pixels<br>{label}")
    rows, cols = np.indices(grid.shape)
    text = np.char.add(np.char.add("row ", rows.astype(str)), np.char.add(", col ", cols.astype(str)))
    return Hover(values=grid, label=label, text=np.char.add(text, f" of {height}×{width}").astype(object))


def tile_hover(raw: np.ndarray, channels: Sequence[int], columns: int, tile: int, gap: int, label: str) -> Hover:
    """Hover for a grid of channel tiles: each tile's raw values at (pooled) native resolution."""
    count = len(channels)
    limit = max(2, int(math.sqrt(_HOVER_CELLS / max(count, 1))))
    blocks = [pooled(raw[k], limit)[0] for k in channels]
    gh, gw = blocks[0].shape
    rows = math.ceil(count / columns)
    values = np.full((rows * gh, columns * gw), np.nan, dtype=np.float32)
    text = np.full(values.shape, "", dtype=object)
    for i, (k, block) in enumerate(zip(channels, blocks)):
        r, c = divmod(i, columns)
        values[r * gh : (r + 1) * gh, c * gw : (c + 1) * gw] = block
        text[r * gh : (r + 1) * gh, c * gw : (c + 1) * gw] = f"channel {k}"
    cell_x = np.array([c * (tile + gap) + (j + 0.5) * tile / gw for c in range(columns) for j in range(gw)]) - 0.5
    cell_y = np.array([r * (tile + gap) + (i + 0.5) * tile / gh for r in range(rows) for i in range(gh)]) - 0.5
    return Hover(values=values, label=label, x=cell_x, y=cell_y, text=text)


# ----- panels from engine results ------------------------------------------------------------------------


def input_view(picture: np.ndarray, title: str, notes: tuple[str, ...] = ()) -> PanelView:
    return PanelView(
        key="input",
        title="Input image",
        picture=picture,
        caption=f"{title} · {picture.shape[1]}×{picture.shape[0]} model input",
        note=" ".join(notes),
    )


def original_view(decoded: DecodedImage, title: str, max_side: int = 512) -> PanelView:
    """The uploaded picture itself (when no model result is there to show what the model saw)."""
    picture = decoded.image.copy()
    picture.thumbnail((max_side, max_side))
    width, height = decoded.original_size
    return PanelView(
        key="input",
        title="Input image",
        picture=np.asarray(picture),
        caption=f"{title} · {width}×{height}",
        note=" ".join(decoded.notes),
    )


def percent(probability: float) -> str:
    """A probability for people: 82%, 0.9%, <0.1%."""
    if probability >= 0.01:
        return f"{probability:.0%}"
    return f"{probability:.1%}" if probability >= 0.001 else "<0.1%"


def with_caption(view: PanelView, caption: str) -> PanelView:
    return dataclasses.replace(view, caption=caption)


class PanelChanges(TypedDict, total=False):
    """The fields of a `PanelView` a page changes (`relabel`)."""

    key: str
    title: str
    caption: str
    note: str
    method: str | None


def relabel(view: PanelView, **changes: Unpack[PanelChanges]) -> PanelView:
    return dataclasses.replace(view, **changes)


# Explore shows saliency in one panel with two modes (vanilla, guided): the two methods share its key.
SHARED_PANELS = {"guided_backprop": "saliency"}


def _not_applicable(result: MethodResult, title: str, key: str | None = None) -> PanelView:
    return PanelView(
        key=key or panel_key(result.method), title=title, note=f"Not applicable: {result.reason}", method=result.method
    )


def result_view(
    result: MethodResult,
    image: np.ndarray,
    target: str,
    colormap: str,
    opacity: float,
    *,
    key: str | None = None,
    title: str | None = None,
) -> PanelView:
    """One method's panel, entirely from what its class declares: `report.result_panel` (the title, the picture
    `render.draw` makes and the caption, as the CLI's reports have them), its note, hover values and colour bar. `image` is the input as the model saw it; `target` what is explained."""
    method = METHODS[result.method]
    panel = result_panel(result, image, target, colormap, opacity)
    title = title or panel.title
    if not result.applicable:
        return _not_applicable(result, title, key)
    values = method.hover_values(result.arrays()[1])
    if method.drawing == "grid":
        count = len(method.tiles(result))
        indices = list(result.meta.get("channels", range(count)))
        hover = tile_hover(
            values, indices, grid_columns(count), method.tile_size(count), GAP, method.hover or method.title
        )
    else:
        hover = map_hover(values, method.hover or method.title)
    return PanelView(
        key=key or panel_key(result.method),
        title=title,
        picture=panel.picture,
        method=result.method,
        caption=panel.caption,
        note=method.note(result),
        hover=hover,
        legend=Legend(colormap, *method.legend) if method.legend else None,
    )


def feature_maps_view(result: MethodResult, colormap: str, *, key: str = "feature_maps") -> PanelView:
    """The chosen channels as a grid of tiles, hover = the raw activation of each tile's cell."""
    return result_view(result, _NO_PICTURE, "", colormap, 0.0, key=key)


def kernels_view(result: MethodResult, colormap: str, *, key: str = "kernels", title: str = "Kernels") -> PanelView:
    """A convolution's kernels: RGB patches for a first layer, else each kernel averaged over its inputs."""
    return result_view(result, _NO_PICTURE, "", colormap, 0.0, key=key, title=title)


_NO_PICTURE = np.zeros((1, 1, 3), np.uint8)  # grids are drawn without the input picture


def method_views(explanation: Explanation, colormap: str, opacity: float) -> list[PanelView]:
    """One view per method in `explanation`, in its order; "not applicable: why" where a method does not apply,
    and "flat map" where its map is the same everywhere."""
    views = []
    for method, result in explanation.items():
        if not result.applicable:
            views.append(_not_applicable(result, slot_title(method)))
        else:
            view = result_view(result, explanation.image, explanation.target.label, colormap, opacity)
            views.append(_flat(view, result) if _is_flat(result) else view)
    return views


def _is_flat(result: MethodResult) -> bool:
    """The method's raw values are the same everywhere (e.g. Grad-CAM 0 at every pixel of a plain grey image)."""
    if METHODS[result.method].drawing == "grid" or result.raw is None or not result.raw.size:
        return False  # channel grids: one flat channel is one tile among many
    raw = np.nan_to_num(result.raw.astype(np.float64))
    return float(np.ptp(raw)) <= 1e-6 * max(float(np.abs(raw).max()), 1e-30)


def _flat(view: PanelView, result: MethodResult) -> PanelView:
    """Say the map is flat instead of drawing one uniform colour (or, once min-max stretches rounding noise,
    stripes)."""
    value = float(np.nan_to_num(result.arrays()[1]).flat[0])
    return dataclasses.replace(
        view,
        picture=None,
        hover=None,
        note=(
            f"Flat map ({view.caption}): the same value ({value:.3g}) everywhere, so there is nothing to highlight; "
            "try another layer or class."
        ),
    )


def slot_title(method: str) -> str:
    """The title of the panel `method` shows in when it has no map: "Saliency" for the two modes of that panel."""
    return "Saliency" if panel_key(method) == "saliency" else METHODS[method].title


def css_key(method: str) -> str:
    """`method` as part of a widget key: no "+" (a key ends up in a CSS class name)."""
    return method.replace("+", "p")


def panel_key(method: str) -> str:
    """The panel's stable id: one saliency panel for its two modes."""
    return SHARED_PANELS.get(method) or css_key(method)


def error_view(method: str, message: str) -> PanelView:
    """The panel of `method` when its engine call failed: the engine's sentence in place of the picture."""
    return PanelView(key=panel_key(method), title=slot_title(method), note=message, method=method, level="error")


def scorable(explanation: Explanation | None, method: str) -> bool:
    """Whether `method`'s map in `explanation` can be scored for faithfulness: one (H, W) map that is not flat."""
    result = explanation.get(method) if explanation is not None else None
    return (
        result is not None
        and result.applicable
        and result.map is not None
        and result.map.ndim == 2
        and not _is_flat(result)
    )


def with_scores(view: PanelView, score: Faithfulness) -> PanelView:
    """The map's faithfulness scores under its caption (and so in the report too)."""
    return with_caption(
        view,
        (
            f"{view.caption} · deletion AUC {score.deletion.auc:.2f} ↓ · insertion AUC {score.insertion.auc:.2f} ↑ · "
            f"average drop {score.average_drop:.0%} ↓"
        ),
    )


def step_picture(image: np.ndarray, values: np.ndarray, method: str, colormap: str, opacity: float) -> np.ndarray:
    """A randomisation step's (H, W) map drawn as its method's panel draws it (`render.draw_map`)."""
    return draw_map(method, values, image, colormap, opacity)


def report_stamp(
    model: str, weights: str, image: str, explanation: Explanation | None, settings: dict[str, str]
) -> ReportStamp:
    """What produced the panels: model, weights source, image, layer, target and the display settings."""
    cam = explanation.get("cam") if explanation is not None else None
    if cam is not None and cam.applicable and cam.layer is not None:
        settings = {**settings, "CAM layer": cam.layer}
    return ReportStamp(
        model=model,
        weights=weights,
        image=image,
        layer=(explanation.layer or "") if explanation is not None else "",
        target=explanation.target.label if explanation is not None else "",
        settings=settings,
        title=f"cnnvis — {model} on {image or 'an image'}",
    )


def faithfulness_verdict(scores: dict[str, Faithfulness], titles: dict[str, str]) -> str:
    """One line under the faithfulness table: which map did best by each measure, and the caveat a good score
    needs when it comes from a map that the Sanity test shows barely depends on the weights."""
    if not scores:
        return ""
    by_deletion = min(scores, key=lambda m: scores[m].deletion.auc)
    by_insertion = max(scores, key=lambda m: scores[m].insertion.auc)
    by_drop = min(scores, key=lambda m: scores[m].average_drop)
    best: dict[str, list[str]] = {}
    for method, measure in ((by_deletion, "deletion"), (by_insertion, "insertion"), (by_drop, "average drop")):
        best.setdefault(method, []).append(measure)
    parts = [f"{titles[m]} does best by {' and '.join(measures)}" for m, measures in best.items()]
    if len(best) == 1:
        parts = [f"{titles[by_deletion]} does best by every measure"]
    verdict = "; ".join(parts) + "."
    edgy = [titles[m] for m in best if m in METHODS and METHODS[m].follows_edges]
    if edgy:
        verdict += (
            f" A good score is not the whole story: {', '.join(edgy)} also follows the picture's edges, and "
            "the Sanity page shows guided backprop hardly changes when the network's weights are random."
        )
    return verdict


def coincide_note(explanation: Explanation | None) -> str:
    """Said on the CAM panel when CAM and Grad-CAM come out the same (they do at the layer feeding the global
    average pool: Grad-CAM's channel weights there are the classifier's weights over the map's size)."""
    if explanation is None:
        return ""
    cam, gradcam = explanation.get("cam"), explanation.get("gradcam")
    if cam is None or gradcam is None or not (cam.applicable and gradcam.applicable) or cam.layer != gradcam.layer:
        return ""
    cam_map, gradcam_map = cam.arrays()[0], gradcam.arrays()[0]
    if cam_map.shape != gradcam_map.shape or not np.allclose(cam_map, gradcam_map, atol=1e-3):
        return ""
    return (
        f"Same picture as Grad-CAM: at {cam.layer}, the layer that feeds the global average pool, Grad-CAM's "
        "weights are the classifier's own, which is what CAM uses. Choose an earlier layer to see them differ."
    )


def predictions_row(predictions: Sequence[Prediction]) -> dict[str, str]:
    """The top-5 predictions as one report row ("espresso 90% · cup 3% · …"); none if there are none."""
    if not predictions:
        return {}
    return {"Top predictions": " · ".join(f"{p.name} {percent(p.probability)}" for p in predictions)}


def scores_rows(scores: dict[str, Faithfulness], titles: dict[str, str]) -> dict[str, str]:
    """Each scored map's faithfulness numbers and its deletion curve in words, as report rows."""
    rows = {}
    for method, score in scores.items():
        curve = ", ".join(f"{s:.2f}" for s in score.deletion.scores[::5])
        rows[f"Faithfulness of {titles.get(method, method)}"] = (
            f"deletion AUC {score.deletion.auc:.2f} (lower is better), insertion AUC {score.insertion.auc:.2f} "
            f"(higher is better), average drop {score.average_drop:.0%}; probability as 0%, 20%, … of the pixels "
            f"go: {curve}"
        )
    return rows
