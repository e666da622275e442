"""Maps -> pictures: colormaps, overlays and grids, as (H, W, 3) uint8 arrays (numpy + OpenCV), and `draw`, the one
way every caller draws a method's result."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import EngineError
from .methods import METHODS, MethodResult

COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "hot": cv2.COLORMAP_HOT,
    "bone": cv2.COLORMAP_BONE,
}
GRAY = "gray"


def colormap_names() -> list[str]:
    return [*COLORMAPS, GRAY]


def render_heatmap(values: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) floats in [0, 1] -> (H, W, 3) uint8 RGB through `colormap`."""
    if values.ndim != 2:
        raise EngineError(f"A heat map needs a 2-D array; got shape {values.shape}.")
    scaled = np.nan_to_num(np.clip(values, 0, 1) * 255).astype(np.uint8)
    if colormap == GRAY:
        return np.repeat(scaled[:, :, None], 3, axis=2)
    if colormap not in COLORMAPS:
        raise EngineError(f"Unknown colormap '{colormap}'; choose one of {', '.join(colormap_names())}.")
    return np.asarray(cv2.cvtColor(cv2.applyColorMap(scaled, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB))


def render_overlay(image: np.ndarray, values: np.ndarray, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """Blend a heat map of `values` (H, W in [0, 1]) over `image` (H, W, 3 uint8); opacity 0 shows the image."""
    heat = render_heatmap(_fit(values, image.shape[:2]), colormap)
    opacity = float(np.clip(opacity, 0.0, 1.0))
    return np.asarray(cv2.addWeighted(image, 1.0 - opacity, heat, opacity, 0.0))


def render_rgb(values: np.ndarray) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] -> uint8."""
    return np.asarray(np.nan_to_num(np.clip(values, 0, 1) * 255).round().astype(np.uint8))


def render_grid(
    tiles: np.ndarray, colormap: str = "viridis", columns: int | None = None, tile_size: int = 96, gap: int = 2
) -> np.ndarray:
    """(K, h, w) maps in [0, 1] or (K, h, w, 3) RGB patches -> one (H, W, 3) uint8 picture on white."""
    if len(tiles) == 0:
        raise EngineError("There is nothing to draw: the grid has no tiles.")
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * (tile_size + gap) - gap, columns * (tile_size + gap) - gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        picture = render_rgb(tile) if tile.ndim == 3 else render_heatmap(tile, colormap)
        picture = cv2.resize(picture, (tile_size, tile_size), interpolation=cv2.INTER_NEAREST)
        r, c = divmod(i, columns)
        grid[
            r * (tile_size + gap) : r * (tile_size + gap) + tile_size,
            c * (tile_size + gap) : c * (tile_size + gap) + tile_size,
        ] = picture
    return grid


def _fit(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if values.shape[:2] == size:
        return values
    return cv2.resize(values.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


GAP = 2  # pixels between a grid's tiles


def stretched(values: np.ndarray) -> np.ndarray:
    """Gradient maps are sparse: a few pixels hold the maximum, so a plain 0–1 stretch shows a blank field. Stretch
    to the 99th percentile instead (the brightest 1% saturate)."""
    ceiling = float(np.percentile(values, 99))
    return np.clip(values / ceiling, 0, 1) if ceiling > 0 else values


def grid_columns(count: int) -> int:
    return math.ceil(math.sqrt(count))


def draw(result: MethodResult, image: np.ndarray, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """A result drawn the one way its method declares (`Method.drawing`): the dashboard's panels, the CLI's PNGs
    and the reports all call this, so they show the same pixels. `image` is the input as the model saw it."""
    method = METHODS[result.method]
    if method.drawing == "grid":
        tiles = method.tiles(result)
        return render_grid(
            tiles, colormap, columns=grid_columns(len(tiles)), tile_size=method.tile_size(len(tiles)), gap=GAP
        )
    if method.drawing == "rgb" and result.rgb is not None:
        return render_rgb(result.rgb)
    return draw_map(result.method, result.arrays()[0], image, colormap, opacity)


def draw_map(
    method: str, values: np.ndarray, image: np.ndarray, colormap: str = "jet", opacity: float = 0.5
) -> np.ndarray:
    """One (H, W) map of `method` in [0, 1] (a result's, or a Sanity step's) drawn as its method's panel draws it:
    a sparse gradient map (drawn as a heat map or an RGB picture) as a heat map stretched to its 99th percentile
    (over the photo its fine speckle would vanish), any other over the picture."""
    if sparse(method):
        return render_heatmap(stretched(values), colormap)
    return render_overlay(image, values, colormap, opacity)


def sparse(method: str) -> bool:
    """Whether `method` makes a sparse gradient map (drawn as a heat map or an RGB picture), which is shown
    stretched to its 99th percentile rather than to its maximum."""
    return METHODS[method].drawing in ("heatmap", "rgb")


@dataclass(frozen=True)
class ReportPanel:
    """One square of the report: a picture as shown on screen, or the reason there is none."""

    title: str  # "Grad-CAM"
    picture: np.ndarray | None  # (H, W, 3) uint8; None when the method does not apply here
    caption: str = ""  # one line under the picture: "layer4 · tabby (class 281)"
    note: str = ""  # shown instead of the picture when there is none (why the method does not apply)


def result_panel(result: MethodResult, image: np.ndarray, target: str, colormap: str, opacity: float) -> ReportPanel:
    """A method's result as a panel: its title, the picture `render.draw` makes and the caption its class writes
    (or why it does not apply). The dashboard's panels and the CLI's reports are both made from this."""
    method = METHODS[result.method]
    title = method.panel_title or method.title
    if not result.applicable:
        return ReportPanel(title, None, note=result.reason)
    return ReportPanel(title, draw(result, image, colormap, opacity), caption=method.caption(result, target))
