"""Engine results -> `PanelView`s: the picture each method's panel shows, its hover values and its caption.

Display settings (colormap, opacity) are applied here, after the cached computation, so changing them only
redraws. One builder per method, chosen from a dict (no ladder over method names).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from cnnvis_engine import METHODS, EngineError, Explanation, MethodResult
from cnnvis_engine.faithfulness import Faithfulness
from cnnvis_engine.render import render_grid, render_heatmap, render_overlay, render_rgb
from cnnvis_engine.report import ReportStamp

from .context import Context, LoadedImage
from .panels import Legend, PanelView, map_hover, tile_hover

TILE = 96
GAP = 2


def input_view(picture: np.ndarray, title: str, notes: tuple[str, ...] = ()) -> PanelView:
    return PanelView(
        key="input", title="Input image", picture=picture,
        caption=f"{title} · {picture.shape[1]}×{picture.shape[0]} model input", note=" ".join(notes),
    )


def original_view(image: LoadedImage, max_side: int = 512) -> PanelView:
    """The uploaded picture itself (when no model result is there to show what the model saw)."""
    picture = image.decoded.image.copy()
    picture.thumbnail((max_side, max_side))
    width, height = image.decoded.original_size
    return PanelView(
        key="input", title="Input image", picture=np.asarray(picture),
        caption=f"{image.title} · {width}×{height}", note=" ".join(image.decoded.notes),
    )


def percent(probability: float) -> str:
    """A probability for people: 82%, 0.9%, <0.1%."""
    if probability >= 0.01:
        return f"{probability:.0%}"
    return f"{probability:.1%}" if probability >= 0.001 else "<0.1%"


def with_caption(view: PanelView, caption: str) -> PanelView:
    return dataclasses.replace(view, caption=caption)


def relabel(view: PanelView, **changes: object) -> PanelView:
    return dataclasses.replace(view, **changes)


def _not_applicable(result: MethodResult, title: str) -> PanelView:
    return PanelView(
        key=panel_key(result.method), title=title, note=f"Not applicable: {result.reason}", method=result.method
    )


def feature_maps_view(
    result: MethodResult, colormap: str, *, sort: bool = True, key: str = "feature_maps", columns: int | None = None
) -> PanelView:
    """The chosen channels as a grid of tiles, hover = the raw activation of each tile's cell."""
    title = METHODS["feature_maps"].title
    if not result.applicable:
        return _not_applicable(result, title)
    channels = list(result.meta["channels"])
    columns = columns or math.ceil(math.sqrt(len(channels)))
    tile = TILE if len(channels) <= 36 else 64
    picture = render_grid(result.map, colormap, columns=columns, tile_size=tile, gap=GAP)
    order = "highest mean activation" if sort else "channel order"
    return PanelView(
        key=key, title=title, picture=picture, method="feature_maps",
        caption=f"{result.layer} · {len(channels)} of {result.meta['n_total']} channels ({order}) · "
        f"{result.raw.shape[1]}×{result.raw.shape[2]} each",
        hover=tile_hover(result.raw, channels, columns, tile, GAP, "activation"),
        legend=Legend(colormap, "lowest activation", "highest"),
    )


def kernels_view(
    result: MethodResult, colormap: str, *, key: str = "kernels", title: str = "Kernels", limit: int = 256
) -> PanelView:
    """A convolution's kernels: RGB patches for a first layer, else each kernel averaged over its inputs."""
    if not result.applicable:
        return PanelView(key=key, title=title, note=f"Not applicable: {result.reason}", method="kernels")
    tiles = result.map[:limit]
    columns = math.ceil(math.sqrt(len(tiles)))
    tile = max(12, min(48, 384 // columns))
    picture = render_grid(tiles, colormap, columns=columns, tile_size=tile, gap=GAP)
    norms = np.sqrt((result.raw[:limit].reshape(len(tiles), -1) ** 2).sum(axis=1))
    out, inp, kh, kw = result.meta["shape"]
    shown = f"first {len(tiles)} of {out}" if out > len(tiles) else f"{out}"
    kind = "RGB patches" if result.meta.get("rgb") else f"averaged over {inp} input channels"
    return PanelView(
        key=key, title=title, picture=picture, method="kernels",
        caption=f"{result.layer} · {shown} kernels of {kh}×{kw}, {kind}",
        hover=tile_hover(norms[:, None, None], list(range(len(tiles))), columns, tile, GAP, "weight norm"),
    )


SATURATED_END = "1: the top 1%"  # gradient maps are stretched to their 99th percentile (`stretched`)


def _target(explanation: Explanation) -> str:
    return explanation.target.label


def stretched(values: np.ndarray) -> np.ndarray:
    """Gradient maps are sparse: a few pixels hold the maximum, so a plain 0–1 stretch shows a blank field. Stretch
    to the 99th percentile instead (the brightest 1% saturate); hover still shows the raw values."""
    ceiling = float(np.percentile(values, 99))
    return np.clip(values / ceiling, 0, 1) if ceiling > 0 else values


def _saliency(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    return PanelView(
        key="saliency", title="Saliency (vanilla)", picture=render_heatmap(stretched(result.map), colormap),
        method="saliency",
        caption=f"how strongly each pixel sways the score of {_target(ex)} · the brightest 1% at full colour",
        hover=map_hover(result.raw, "|gradient|"), legend=Legend(colormap, "0: no effect", SATURATED_END),
    )


def _guided_backprop(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    unguided = result.meta.get("unguided") or ()
    note = (
        f"Not guided (left as they are): {', '.join(unguided[:4])}{' …' if len(unguided) > 4 else ''}."
        if unguided
        else ""
    )
    return PanelView(
        key="saliency", title="Saliency (guided backprop)", picture=render_rgb(result.rgb), method="guided_backprop",
        caption=f"guided gradient for {_target(ex)}, grey = 0", note=note,
        hover=map_hover(np.abs(result.raw).max(axis=0), "max |guided gradient|"),
    )


def _cam(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    return PanelView(
        key="cam", title="CAM", picture=render_overlay(ex.image, result.map, colormap, opacity), method="cam",
        caption=f"{result.layer} · {_target(ex)}", hover=map_hover(result.raw, "CAM"), legend=Legend(colormap),
    )


def _gradcam(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    flat = result.meta.get("flat")
    return PanelView(
        key="gradcam",
        title="Grad-CAM",
        picture=render_overlay(ex.image, result.map, colormap, opacity),
        method="gradcam",
        caption=f"{result.layer} · {_target(ex)}",
        hover=map_hover(result.raw, "Grad-CAM"),
        legend=Legend(colormap),
        note="Zero everywhere: at this layer nothing speaks for this class; try another layer or class."
        if flat
        else "",
    )


def _guided_gradcam(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    return PanelView(
        key="guided_gradcam", title="Guided Grad-CAM", picture=render_rgb(result.rgb), method="guided_gradcam",
        caption=f"{result.layer} · {_target(ex)}, grey = 0",
        hover=map_hover(np.abs(result.raw).max(axis=0), "max |value|"),
    )


def _feature_maps(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    return feature_maps_view(result, colormap)


def _kernels(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    return kernels_view(result, colormap)


def _layer_overlay(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    """Grad-CAM's successors: a map at the layer's resolution laid over the picture."""
    title = METHODS[result.method].title
    explained = "the same for every class" if result.method == "eigencam" else _target(ex)
    samples = f" · mean of {result.meta['samples']} noisy copies" if "samples" in result.meta else ""
    return PanelView(
        key=panel_key(result.method), title=title, picture=render_overlay(ex.image, result.map, colormap, opacity),
        method=result.method, caption=f"{result.layer} · {explained}{samples}", hover=map_hover(result.raw, title),
        legend=Legend(colormap),
    )


def _occlusion(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    window, stride = result.meta["window"], result.meta["stride"]
    return PanelView(
        key="occlusion", title="Occlusion", picture=render_overlay(ex.image, result.map, colormap, opacity),
        method="occlusion", caption=f"{window}×{window} px grey patches, {stride} px apart · drop in {_target(ex)}",
        hover=map_hover(result.raw, "score drop when hidden"),
        legend=Legend(colormap, "0: no drop when hidden", "1: the biggest drop"),
    )


def _smoothgrad(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    return PanelView(
        key="smoothgrad", title="SmoothGrad", picture=render_heatmap(stretched(result.map), colormap),
        method="smoothgrad",
        caption=f"saliency averaged over {result.meta['samples']} noisy copies, for {_target(ex)} · the brightest 1% "
        "at full colour",
        hover=map_hover(result.raw.max(axis=0), "mean |gradient|"),
        legend=Legend(colormap, "0: no effect", SATURATED_END),
    )


def _integrated_gradients(result: MethodResult, ex: Explanation, colormap: str, opacity: float) -> PanelView:
    return PanelView(
        key="integrated_gradients", title="Integrated Gradients",
        picture=render_heatmap(stretched(result.map), colormap), method="integrated_gradients",
        caption=f"each pixel's share of the score of {_target(ex)}, over {result.meta['steps']} steps from a plain "
        f"picture · the brightest 1% at full colour · the shares add up to the score change within "
        f"{result.meta['delta']:.2g}",
        hover=map_hover(result.raw.sum(axis=0), "attribution"), legend=Legend(colormap, "0: no share", SATURATED_END),
    )


Builder = Callable[[MethodResult, Explanation, str, float], PanelView]
BUILDERS: dict[str, Builder] = {
    "feature_maps": _feature_maps,
    "kernels": _kernels,
    "saliency": _saliency,
    "guided_backprop": _guided_backprop,
    "cam": _cam,
    "gradcam": _gradcam,
    "guided_gradcam": _guided_gradcam,
    "gradcam++": _layer_overlay,
    "xgradcam": _layer_overlay,
    "layercam": _layer_overlay,
    "scorecam": _layer_overlay,
    "eigencam": _layer_overlay,
    "smoothgrad_cam": _layer_overlay,
    "occlusion": _occlusion,
    "smoothgrad": _smoothgrad,
    "integrated_gradients": _integrated_gradients,
}


def method_views(explanation: Explanation, colormap: str, opacity: float) -> list[PanelView]:
    """One view per method in `explanation`, in its order; "not applicable: why" where a method does not apply,
    and "flat map" where its map is the same everywhere."""
    views = []
    for method, result in explanation.items():
        if not result.applicable:
            title = "Saliency" if method in ("saliency", "guided_backprop") else METHODS[method].title
            views.append(_not_applicable(result, title))
        else:
            view = BUILDERS[method](result, explanation, colormap, opacity)
            views.append(_flat(view, result) if _is_flat(result) else view)
    return views


def _is_flat(result: MethodResult) -> bool:
    """The method's raw values are the same everywhere (e.g. Grad-CAM 0 at every pixel of a plain grey image)."""
    if result.method in ("feature_maps", "kernels") or result.raw is None or not result.raw.size:
        return False  # channel grids: one flat channel is one tile among many
    raw = np.nan_to_num(result.raw.astype(np.float64))
    return float(np.ptp(raw)) <= 1e-6 * max(float(np.abs(raw).max()), 1e-30)


def _flat(view: PanelView, result: MethodResult) -> PanelView:
    """Say the map is flat instead of drawing one uniform colour (or, once min-max stretches rounding noise,
    stripes)."""
    value = float(np.nan_to_num(result.raw).flat[0])
    return dataclasses.replace(view, picture=None, hover=None, note=(
        f"Flat map ({view.caption}): the same value ({value:.3g}) everywhere, so there is nothing to highlight; "
        "try another layer or class."
    ))


def css_key(method: str) -> str:
    """`method` as part of a widget key: no "+" (a key ends up in a CSS class name)."""
    return method.replace("+", "p")


def panel_key(method: str) -> str:
    """The panel's stable id: one saliency panel for its two modes."""
    return "saliency" if method == "guided_backprop" else css_key(method)


def explained_views(
    ctx: Context, methods: Sequence[str], colormap: str, opacity: float, **explain: object
) -> tuple[list[PanelView], Explanation | None]:
    """Views for `methods` from one cached engine call. If that call fails, each method is tried alone, so
    only the panel whose method failed shows the error and the others still draw."""
    try:
        explanation = ctx.explain(methods, **explain)
    except EngineError:
        pass
    else:
        return method_views(explanation, colormap, opacity), explanation
    views, last = [], None
    for method in methods:
        try:
            explanation = ctx.explain([method], **explain)
        except EngineError as error:
            title = "Saliency" if panel_key(method) == "saliency" else METHODS[method].title
            views.append(PanelView(key=panel_key(method), title=title, note=str(error), method=method, level="error"))
        else:
            views += method_views(explanation, colormap, opacity)
            last = explanation
    return views, last


def scorable(explanation: Explanation | None, method: str) -> bool:
    """Whether `method`'s map in `explanation` can be scored for faithfulness: one (H, W) map that is not flat."""
    result = explanation.get(method) if explanation is not None else None
    return result is not None and result.applicable and result.map.ndim == 2 and not _is_flat(result)


def with_scores(view: PanelView, score: Faithfulness) -> PanelView:
    """The map's faithfulness scores under its caption (and so in the report too)."""
    return with_caption(view, (
        f"{view.caption} · deletion AUC {score.deletion.auc:.2f} ↓ · insertion AUC {score.insertion.auc:.2f} ↑ · "
        f"average drop {score.average_drop:.0%} ↓"
    ))


SPARSE = frozenset({"saliency", "guided_backprop", "guided_gradcam", "smoothgrad", "integrated_gradients"})


def step_picture(image: np.ndarray, values: np.ndarray, method: str, colormap: str, opacity: float) -> np.ndarray:
    """A randomisation step's (H, W) map drawn as its method's panel draws it: a sparse gradient map as a heat map
    stretched to its 99th percentile (over the photo its fine speckle would vanish), any other over the picture."""
    if method in SPARSE:
        return render_heatmap(stretched(values), colormap)
    return render_overlay(image, values, colormap, opacity)


def report_stamp(ctx: Context, explanation: Explanation | None, settings: dict[str, str]) -> ReportStamp:
    """What produced the panels: model, weights source, image, layer, target and the display settings."""
    cam = explanation.get("cam") if explanation is not None else None
    if cam is not None and cam.applicable:
        settings = {**settings, "CAM layer": cam.layer}
    return ReportStamp(
        model=ctx.model.name,
        weights=ctx.weights_detail(),
        image=ctx.image.title if ctx.image else "",
        layer=(explanation.layer or "") if explanation is not None else "",
        target=explanation.target.label if explanation is not None else "",
        settings=settings,
        title=f"cnnvis — {ctx.model.name} on {ctx.image.title if ctx.image else 'an image'}",
    )


# Maps whose good faithfulness scores can mislead: they follow the picture's edges more than the network's weights
# (Adebayo et al. 2018, and this app's Sanity page: guided backprop hardly changes when the weights are random).
EDGE_LIKE = frozenset({"guided_backprop", "guided_gradcam", "integrated_gradients", "smoothgrad"})


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
    edgy = [titles[m] for m in best if m in EDGE_LIKE]
    if edgy:
        verdict += (f" A good score is not the whole story: {', '.join(edgy)} also follows the picture's edges, and "
                    "the Sanity page shows guided backprop hardly changes when the network's weights are random.")
    return verdict


def coincide_note(explanation: Explanation | None) -> str:
    """Said on the CAM panel when CAM and Grad-CAM come out the same (they do at the layer feeding the global
    average pool: Grad-CAM's channel weights there are the classifier's weights over the map's size)."""
    if explanation is None:
        return ""
    cam, gradcam = explanation.get("cam"), explanation.get("gradcam")
    if cam is None or gradcam is None or not (cam.applicable and gradcam.applicable) or cam.layer != gradcam.layer:
        return ""
    if cam.map.shape != gradcam.map.shape or not np.allclose(cam.map, gradcam.map, atol=1e-3):
        return ""
    return (f"Same picture as Grad-CAM: at {cam.layer}, the layer that feeds the global average pool, Grad-CAM's "
            "weights are the classifier's own, which is what CAM uses. Choose an earlier layer to see them differ.")


def predictions_row(ctx: Context) -> dict[str, str]:
    """The top-5 predictions as one report row ("espresso 90% · cup 3% · …"); none if they cannot be had."""
    try:
        predictions = ctx.predictions()
    except EngineError:
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
