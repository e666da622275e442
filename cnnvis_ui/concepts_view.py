"""The Concepts page as plain data (no Streamlit): concept cards from a `ConceptResult`, the words that go with them,
the region box, the layer one step down for sub-concepts, the two-model comparison table and the report's panels.

A card is one concept (a channel, or a group of channels): how much of the class's score it carries, said in words;
its conditional map on the picture (where in the picture that part of the decision comes from); what the channel
looks for (feature visualisation); and the reference pictures it fires on most, cropped to its receptive field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from cnnvis_engine.concepts import ConceptResult
from cnnvis_engine.render import render_heatmap, stretched
from cnnvis_engine.tracing import Trace

from .views import PanelView

CARDS = 8  # concept cards for the class
AGAINST = 4  # concepts that speak against it, listed apart
CROP_SIDE = 96  # pixels of a reference crop on a card
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1) in percent of the picture's width and height


@dataclass(frozen=True)
class ConceptCard:
    """One concept as the page draws it. `channel` is the channel whose picture and crops are shown (for a group:
    its strongest channel)."""

    unit: int  # the channel, or the group's index
    rank: int  # 1 for the concept carrying most of the score
    title: str  # "Channel 254", "Group 3"
    words: str  # "carries 4 % of 'Egyptian cat' here"
    share: float  # of the positive total, 0–1
    map_picture: np.ndarray  # (H, W, 3) uint8: the conditional map over the picture
    channel: int
    feature: np.ndarray | None = None  # (h, w, 3) uint8: what the channel looks for
    crops: tuple[np.ndarray, ...] = ()  # (CROP_SIDE, CROP_SIDE, 3) uint8 each
    crop_names: tuple[str, ...] = ()


def class_words(target_name: str) -> str:
    """ "Egyptian cat (class 285)" -> "Egyptian cat": the class as a person reads it."""
    return re.sub(r"\s*\((class|output) \d+\)$", "", target_name) or target_name


def percent(share: float) -> str:
    """A share 0–1 as a person reads it: "18 %", "under 1 %"."""
    value = abs(share) * 100
    if 0 < value < 1:
        return "under 1\u00a0%"
    return f"{value:.0f}\u00a0%"  # a no-break space: "4 %" never breaks between its two halves


def share_words(share: float, target_name: str, region: bool = False) -> str:
    """What a concept's share means, in one line."""
    where = "in the box" if region else "here"
    name = class_words(target_name)
    if share < 0:
        return f"speaks against '{name}' {where}: {percent(share)} of everything that does"
    return f"carries {percent(share)} of '{name}' {where}"


def unit_title(result: ConceptResult, unit: int) -> str:
    return f"Group {unit + 1}" if result.kind == "groups" else f"Channel {unit}"


def strongest_channel(result: ConceptResult, unit: int) -> int:
    """The channel a card shows pictures of: the channel itself, or a group's most loaded channel."""
    if result.kind != "groups" or result.loadings is None:
        return unit
    return int(np.argmax(result.loadings[:, unit]))


def map_picture(result: ConceptResult, row: int, colormap: str, opacity: float) -> np.ndarray:
    """The conditional map of `result.channels[row]` over the picture: its positive part (where the concept
    speaks for the class), pixel-sparse as every input × gradient map, so softened (a Gaussian of 1.5 % of the
    picture's side) and stretched to its 99th percentile (`render.stretched`)."""
    values = np.maximum(np.asarray(result.maps[row], dtype=np.float32), 0)
    sigma = max(1.0, 0.015 * max(values.shape))
    soft = stretched(cv2.GaussianBlur(values, (0, 0), sigma))
    return weighted_overlay(result.image, soft, colormap, opacity)


def weighted_overlay(image: np.ndarray, values: np.ndarray, colormap: str, opacity: float) -> np.ndarray:
    """The heat map over the picture with each pixel's opacity growing with its value: where the concept is absent
    the picture shows as it is, so a few hot places stand out (a uniform blend paints the whole picture blue)."""
    fitted = (
        cv2.resize(values.astype(np.float32), (image.shape[1], image.shape[0]))
        if values.shape != image.shape[:2]
        else values
    )
    heat = render_heatmap(np.clip(fitted, 0, 1), colormap).astype(np.float32)
    alpha = (float(np.clip(opacity, 0, 1)) * np.clip(fitted, 0, 1))[:, :, None]
    return (image.astype(np.float32) * (1 - alpha) + heat * alpha).round().astype(np.uint8)


def concept_cards(
    result: ConceptResult,
    colormap: str,
    opacity: float,
    features: dict[int, np.ndarray] | None = None,
    crops: dict[int, tuple[tuple[np.ndarray, ...], tuple[str, ...]]] | None = None,
    count: int = CARDS,
) -> list[ConceptCard]:
    """Cards for the concepts that speak for the class, most first, as many as have maps (at most `count`).
    `features` and `crops` are by channel (`strongest_channel`)."""
    cards = []
    for row, unit in enumerate(int(u) for u in result.channels[: min(count, result.top)]):
        if result.contributions[unit] <= 0:
            break
        channel = strongest_channel(result, unit)
        found_crops, names = (crops or {}).get(channel, ((), ()))
        cards.append(
            ConceptCard(
                unit=unit,
                rank=row + 1,
                title=unit_title(result, unit),
                words=share_words(float(result.shares[unit]), result.target_name, result.region is not None),
                share=float(result.shares[unit]),
                map_picture=map_picture(result, row, colormap, opacity),
                channel=channel,
                feature=(features or {}).get(channel),
                crops=found_crops,
                crop_names=names,
            )
        )
    return cards


def against(result: ConceptResult, count: int = AGAINST) -> str:
    """The concepts that speak against the class, most first, in one line ("" if none does): "Speaks against
    'tank' here: channel 13 (54 % of all that does), channel 59 (9 %)"."""
    units = result.negative()[:count]
    if not units:
        return ""
    where = "in the box" if result.region is not None else "here"
    parts = [
        f"{unit_title(result, unit).lower()} ({percent(float(result.shares[unit]))}{' of all that does' if i == 0 else ''})"
        for i, unit in enumerate(units)
    ]
    return f"Speaks against '{class_words(result.target_name)}' {where}: " + ", ".join(parts)


def summary(result: ConceptResult) -> str:
    """One sentence over all cards: how much of the score the top concepts carry together."""
    positive = result.positive()
    shown = [u for u in positive[: min(CARDS, result.top)]]
    together = float(sum(result.shares[u] for u in shown))
    kind = "groups of channels" if result.kind == "groups" else "channels"
    layer_size = len(result.contributions)
    return (
        f"Of the {layer_size} {kind} of layer {result.layer}, {len(positive)} speak for '{class_words(result.target_name)}'. "
        f"The {len(shown)} below carry {percent(together)} of what speaks for it."
    )


def crop(picture: np.ndarray, box: tuple[int, int, int, int], side: int = CROP_SIDE) -> np.ndarray:
    """The (left, top, right, bottom) pixel box of a picture as the model saw it, resized to `side`×`side`."""
    height, width = picture.shape[:2]
    left, top = max(0, min(box[0], width - 1)), max(0, min(box[1], height - 1))
    right, bottom = max(left + 1, min(box[2], width)), max(top + 1, min(box[3], height))
    piece = Image.fromarray(np.ascontiguousarray(picture[top:bottom, left:right]))
    return np.asarray(piece.resize((side, side), Image.Resampling.BILINEAR))


def parse_box(text: str) -> Box | None:
    """A box as the URL writes it ("10,20,60,80", percent); None for the whole picture (""). ValueError otherwise."""
    if not text:
        return None
    parts = text.split(",")
    if len(parts) != 4 or not all(re.fullmatch(r"\d{1,3}", p) for p in parts):
        raise ValueError(text)
    x0, y0, x1, y1 = (int(p) for p in parts)
    if not (0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 100):
        raise ValueError(text)
    return x0, y0, x1, y1


def box_text(box: Box | None) -> str:
    return "" if box is None or tuple(box) == (0, 0, 100, 100) else ",".join(str(int(v)) for v in box)


def box_pixels(box: Box, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A percent box in pixels of a picture of `size` (height, width), as the engine takes regions."""
    height, width = size
    return box[0] * width / 100, box[1] * height / 100, box[2] * width / 100, box[3] * height / 100


def draw_box(picture: np.ndarray, box: Box, width: int = 3) -> np.ndarray:
    """The picture with the box outlined in white over black, so it shows on any picture."""
    out = picture.copy()
    height, side = out.shape[:2]
    x0, y0, x1, y1 = (round(v) for v in box_pixels(box, (height, side)))
    x1, y1 = min(x1, side) - 1, min(y1, height) - 1
    for colour, grow in (((0, 0, 0), width), ((255, 255, 255), width - 1)):
        out[max(y0 - grow, 0) : y0 + grow, x0 : x1 + 1] = colour
        out[max(y1 - grow, 0) : y1 + grow, x0 : x1 + 1] = colour
        out[y0 : y1 + 1, max(x0 - grow, 0) : x0 + grow] = colour
        out[y0 : y1 + 1, max(x1 - grow, 0) : x1 + grow] = colour
    return out


def layer_below(trace: Trace, layer: str) -> str | None:
    """The layer one step down from `layer` for sub-concepts: the latest block output (a layer with layers inside)
    that is a map, finished before `layer` started and is neither inside it nor around it; a Sequential gives way to
    its last block, whose output is its own (timm's `blocks` to `blocks.6.0`). None at the bottom."""
    here = trace.get(layer)
    candidates = [
        info
        for info in trace.layers
        if "spatial" in info.kinds
        and not info.is_leaf
        and info.end < here.order
        and not info.name.startswith(layer + ".")
        and not layer.startswith(info.name + ".")
    ]
    if not candidates:
        return None
    chosen = max(candidates, key=lambda info: info.end)
    while chosen.kind == "Sequential":
        inner = [info for info in candidates if info.name.rpartition(".")[0] == chosen.name]
        if not inner:
            break
        chosen = max(inner, key=lambda info: info.end)
    return chosen.name


def compare_table(
    first: ConceptResult, second: ConceptResult, names: Sequence[str], rows: int = CARDS
) -> dict[str, list[str]]:
    """Concept shares side by side for two models on one picture: rank, then each model's concept and share."""
    table: dict[str, list[str]] = {"Rank": [str(r + 1) for r in range(rows)]}
    for name, result in zip(names, (first, second)):
        positive = result.positive()[:rows]
        cells = [f"{unit_title(result, u)} · {percent(float(result.shares[u]))}" for u in positive]
        table[f"{name} (`{result.layer}`)"] = cells + ["—"] * (rows - len(cells))
    return table


def report_views(result: ConceptResult, cards: Sequence[ConceptCard], picture_title: str) -> list[PanelView]:
    """The panels of a report: the picture (with the box if there is one), then per card its map, what its channel
    looks for and its reference crops side by side."""
    image = result.image
    if result.region is not None:
        height, width = image.shape[:2]
        x0, y0, x1, y1 = result.region
        image = draw_box(
            image, (int(100 * x0 / width), int(100 * y0 / height), int(100 * x1 / width), int(100 * y1 / height))
        )
    views = [PanelView(key="concepts-input", title=f"Input: {picture_title}", picture=image)]
    for card in cards:
        views.append(
            PanelView(
                key=f"concept-{card.unit}",
                title=f"{card.rank}. {card.title}",
                picture=card.map_picture,
                caption=card.words,
            )
        )
        if card.feature is not None:
            views.append(
                PanelView(
                    key=f"concept-{card.unit}-looks",
                    title=f"{card.title}: what channel {card.channel} looks for",
                    picture=card.feature,
                )
            )
        if card.crops:
            views.append(
                PanelView(
                    key=f"concept-{card.unit}-crops",
                    title=f"{card.title}: where it fires most",
                    picture=np.concatenate(list(card.crops), axis=1),
                    caption=", ".join(card.crop_names),
                )
            )
    return views
