"""One colour scale for maps that are compared (Compare's grid, the Sanity steps, the tank story): instead of each
map stretched to its own maximum, the maps of one method are divided by the largest value among them, so a weak
map looks weak and near-zero evidence looks near zero.

The values behind a displayed map are recovered from the method's raw output (`MethodResult.raw`): reduced over
colour channels and upsampled bilinearly the way the method made its `map`, and checked against that `map` (a
reduction that does not reproduce it is not used: that map keeps its own scale). Negative values (evidence
against, in CAM or occlusion) are shown as 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import streamlit as st

from cnnvis_engine import METHODS, MethodResult
from cnnvis_engine.render import render_heatmap, render_overlay, render_rgb, sparse
from cnnvis_engine.sanity import RandomisationStep

from . import state
from .views import Legend, PanelView

TOGGLE_LABEL = "Same scale for all maps"
TOGGLE_HELP = (
    "Off: each map is stretched to its own strongest value, so even a map with almost no evidence shows a red spot. "
    "On: the maps of one method share one scale (1 = the strongest value among the maps shown), so a weak map "
    "looks weak. Evidence against the class is shown as 0."
)
_MATCH = 0.02  # a recovered map may differ from the method's own by this much (bilinear resampling differences)
_PERCENTILE = 99  # sparse gradient maps saturate their brightest 1%, as on their own scale (`render.stretched`)


def toggle(*, disabled: bool = False) -> bool:
    """The "Same scale for all maps" switch (kept in the URL as `same_scale`); returns whether it is on."""
    st.toggle(
        TOGGLE_LABEL,
        **state.bound(state.SHARED_SCALE),
        help=TOGGLE_HELP,
        disabled=disabled,
    )
    return bool(state.get(state.SHARED_SCALE))


def _resize(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float32))
    if values.shape == tuple(shape):
        return values
    return cv2.resize(values, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


_REDUCTIONS: tuple[Callable[[np.ndarray], np.ndarray], ...] = (
    lambda raw: np.abs(raw).max(axis=0),  # |gradient| maxed over colour (saliency families, guided Grad-CAM)
    lambda raw: np.abs(raw.sum(axis=0)),  # |attribution| summed over colour (Integrated Gradients)
)
_SIGNED: tuple[Callable[[np.ndarray], np.ndarray], ...] = (
    lambda raw: raw,  # CAM, Grad-CAM and its successors, occlusion, vanilla saliency
    lambda raw: np.maximum(raw, 0),  # Eigen-CAM: ReLU before the upsampling
)


def magnitude(raw: np.ndarray | None, shown: np.ndarray | None) -> np.ndarray | None:
    """The un-normalised values behind the display map `shown` (H, W) in [0, 1], from the method's `raw` output
    ((h, w) or (C, H, W)): the reduction and bilinear upsampling whose min-max normalisation reproduces `shown`.
    None when no reduction does (a channel grid, a map the method made some other way) or the map is flat."""
    if raw is None or shown is None or shown.ndim != 2 or raw.ndim not in (2, 3) or float(np.ptp(shown)) == 0:
        return None
    raw = np.nan_to_num(np.asarray(raw, dtype=np.float32))
    for reduce in _REDUCTIONS if raw.ndim == 3 else _SIGNED:
        values = _resize(reduce(raw), shown.shape)
        if float(np.abs(_minmax(values) - shown).max()) <= _MATCH:
            return values
    return None


@dataclass(frozen=True)
class SharedScale:
    """What 1 means for each method's maps: the largest value among them (for sparse gradient maps, the largest
    of their 99th percentiles); `counts` says how many maps share it."""

    ceilings: dict[str, float]
    spreads: dict[str, float]  # colour pictures (grey = 0): the largest standard deviation of the raw gradients
    counts: dict[str, int]
    colormap: str = "jet"
    opacity: float = 0.5

    @classmethod
    def over(
        cls,
        maps: Iterable[tuple[str, np.ndarray | None, np.ndarray | None]],
        colormap: str = "jet",
        opacity: float = 0.5,
    ) -> SharedScale:
        """The scale of `maps`: (method, raw, display map) triples, e.g. from `triples`."""
        ceilings: dict[str, float] = {}
        spreads: dict[str, float] = {}
        counts: dict[str, int] = {}
        for method, raw, shown in maps:
            values = magnitude(raw, shown)
            if values is None:
                continue
            counts[method] = counts.get(method, 0) + 1
            ceilings[method] = max(ceilings.get(method, 0.0), _ceiling(method, values))
            if raw is not None and raw.ndim == 3:
                spreads[method] = max(spreads.get(method, 0.0), float(np.nan_to_num(raw).std()))
        return cls(ceilings, spreads, counts, colormap, opacity)

    def values(self, method: str, raw: np.ndarray | None, shown: np.ndarray | None) -> np.ndarray | None:
        """The display map on the shared scale, (H, W) in [0, 1]; None where the map keeps its own scale."""
        values = magnitude(raw, shown)
        ceiling = self.ceilings.get(method, 0.0)
        if values is None or ceiling <= 0:
            return None
        return np.clip(values / ceiling, 0.0, 1.0).astype(np.float32)

    def legend(self, method: str) -> Legend:
        high = (
            f"1: the top 1% of the strongest of the {self.counts[method]} maps"
            if sparse(method)
            else f"1: the strongest of the {self.counts[method]} maps"
        )
        return Legend(self.colormap, "0: no evidence", high)

    def caption(self, method: str) -> str:
        return f"scale shared by the {self.counts.get(method, 1)} maps: 1 = the strongest of them"

    def picture(self, method: str, image: np.ndarray, values: np.ndarray) -> np.ndarray:
        """`values` drawn as the method's panel draws its map: a sparse gradient map as a heat map, any other
        over the picture."""
        if sparse(method):
            return render_heatmap(values, self.colormap)
        return render_overlay(image, values, self.colormap, self.opacity)

    def view(self, view: PanelView, result: MethodResult, image: np.ndarray) -> PanelView:
        """`view` (drawn by `views.method_views` from `result`) redrawn on the shared scale, its legend and caption
        saying so; a panel without a picture, or whose map cannot be put on the scale, is returned as it is."""
        if view.picture is None or not result.applicable:
            return view
        if METHODS[result.method].drawing == "rgb":
            return self._colour_view(view, result)
        values = self.values(result.method, result.raw, result.map)
        if values is None:
            return view
        return dataclasses.replace(
            view,
            picture=self.picture(result.method, image, values),
            legend=self.legend(result.method),
            caption=f"{view.caption} · {self.caption(result.method)}" if view.caption else self.caption(result.method),
        )

    def _colour_view(self, view: PanelView, result: MethodResult) -> PanelView:
        """A guided (colour) picture: grey = 0 and ±3 standard deviations of the widest-spread map span the range,
        instead of each map's own."""
        spread = self.spreads.get(result.method, 0.0)
        raw = np.nan_to_num(np.asarray(result.raw, dtype=np.float32))
        if spread <= 0 or raw.ndim != 3:
            return view
        centred = raw - raw.mean()
        rgb = np.clip(centred / (spread * 6) + 0.5, 0, 1)
        rgb = np.repeat(rgb, 3, axis=0) if rgb.shape[0] == 1 else rgb
        caption = (
            f"scale shared by the {self.counts.get(result.method, 1)} maps: grey = 0, the widest-spread at full colour"
        )
        return dataclasses.replace(
            view,
            picture=render_rgb(rgb.transpose(1, 2, 0)),
            caption=f"{view.caption} · {caption}" if view.caption else caption,
        )


def _ceiling(method: str, values: np.ndarray) -> float:
    positive = np.maximum(values, 0)
    return float(np.percentile(positive, _PERCENTILE) if sparse(method) else positive.max())


def triples(results: Iterable[MethodResult]) -> list[tuple[str, np.ndarray | None, np.ndarray | None]]:
    """(method, raw, map) of each applicable result, for `SharedScale.over`."""
    return [(r.method, r.raw, r.map) for r in results if r.applicable]


def step_pictures(
    steps: Sequence[RandomisationStep], method: str, image: np.ndarray, colormap: str, opacity: float
) -> list[np.ndarray] | None:
    """The Sanity steps' maps on one scale (steps carry `raw` and `map`); None if they cannot all be put on it."""
    shared = SharedScale.over(((method, getattr(s, "raw", None), s.map) for s in steps), colormap, opacity)
    pictures = []
    for step in steps:
        values = shared.values(method, getattr(step, "raw", None), step.map)
        if values is None:
            if float(np.ptp(step.map)) == 0:  # a flat map: nothing on any scale
                values = np.zeros_like(step.map)
            else:
                return None
        pictures.append(shared.picture(method, image, values))
    return pictures
