"""The concept atlas: one HTML page with a card per channel of each indexed layer, written by `cnnvis concepts`.

A card shows the channel's feature visualisation (`featurevis.render_channels` at cheap settings, all the layer's
shown channels as one batch, kept as PNG in the cache folder by model, layer, channel and settings), its top
reference crops by contribution (the receptive field around the strongest spot, as PNG thumbnails) and the classes
it serves most. Only the `channels` channels with the largest total contribution per layer are shown (the page says
so). Every text is escaped (Jinja2 with autoescape): a class or file name such as "<script>" shows as text.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
from PIL import Image

from ..errors import EngineError
from ..featurevis import render_channels
from ..models.bundle import ModelBundle
from .reference import model_identity
from .reference_store import cache_folder
from .reference_tops import ReferenceIndex

TEMPLATES = Path(__file__).resolve().parent / "templates"
THUMBNAIL = 64  # crop thumbnails, pixels a side


@dataclass(frozen=True)
class AtlasSettings:
    channels: int = 32  # per layer, by total contribution
    crops: int = 6  # reference crops per card
    vis_size: int = 64  # feature visualisation, pixels a side
    vis_steps: int = 48  # its Adam steps; 0: no feature visualisation
    seed: int = 0


def write_atlas(
    index: ReferenceIndex,
    bundle: ModelBundle,
    out: Path,
    settings: AtlasSettings = AtlasSettings(),
    *,
    cache_dir: str | Path | None = None,
    source: str = "",
) -> Path:
    """Write `out`/atlas.html with its pictures in `out`/crops and `out`/vis; the page's path."""
    if index.reference is None:
        raise EngineError("The atlas needs the reference pictures themselves; build the index with reference_index.")
    out.mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(exist_ok=True)
    (out / "vis").mkdir(exist_ok=True)
    pictures: dict[int, np.ndarray] = {}  # resized reference pictures, by index
    identity = model_identity(bundle) if settings.vis_steps > 0 else ""
    layers = []
    for number, (name, tops) in enumerate(index.layers.items()):
        chosen = index.channels_by_contribution(name, settings.channels)
        visuals, note = _visualise(bundle, name, chosen, settings, identity, cache_dir, out, number)
        positive = float(np.clip(tops.total, 0, None).sum())
        cards = []
        for channel in chosen:
            total = float(tops.total[channel])
            crops = []
            for rank, top in enumerate(index.top(name, channel, "contribution")[: settings.crops]):
                if top.image not in pictures:
                    pictures[top.image] = bundle.resize(index.reference.load(top.image).image)
                file = f"crops/l{number}_c{channel}_{rank}.png"
                _thumbnail(pictures[top.image], top.box).save(out / file)
                crops.append({"src": file, "name": index.names[top.image], "score": f"{top.score:.3g}"})
            cards.append(
                {
                    "channel": channel,
                    "total": f"{total:.3g}",
                    "share": f"{100 * total / positive:.0f} %" if positive > 0 else "—",
                    "classes": [{"name": index.class_name(c), "count": n} for c, n in index.classes(name, channel)],
                    "crops": crops,
                    "vis": visuals.get(channel, ""),
                    "vis_note": note,
                }
            )
        left, top_, right, bottom = tops.receptive.box
        layers.append(
            {
                "name": name,
                "channels": tops.channels,
                "shown": len(chosen),
                "field": f"{bottom - top_}×{right - left}",
                "cards": cards,
            }
        )
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    page = environment.get_template("atlas.html.j2").render(
        model=bundle.name,
        read=int((index.predicted >= 0).sum()),
        source=source,
        channels=settings.channels,
        capped=any(layer["shown"] < layer["channels"] for layer in layers),
        size="×".join(map(str, bundle.input_size)),
        layers=layers,
        skipped=index.skipped,
    )
    path = out / "atlas.html"
    path.write_text(page, encoding="utf-8")
    return path


def _thumbnail(picture: np.ndarray, box: tuple[int, int, int, int]) -> Image.Image:
    return Image.fromarray(picture).crop(box).resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BICUBIC)


def _visualise(
    bundle: ModelBundle,
    layer: str,
    channels: list[int],
    settings: AtlasSettings,
    identity: str,
    cache_dir: str | Path | None,
    out: Path,
    number: int,
) -> tuple[dict[int, str], str]:
    """The channels' feature visualisations as files under `out`/vis, by channel (rendered together for the ones
    not cached yet); a note instead where there are none."""
    if settings.vis_steps <= 0 or not channels:
        return {}, "feature visualisation not asked for"
    folder = cache_folder(cache_dir) / "featurevis"
    folder.mkdir(exist_ok=True)
    key = f"{identity}|{layer}|{settings.vis_size}|{settings.vis_steps}|{settings.seed}"
    cached = {c: folder / f"{hashlib.sha256(f'{key}|{c}'.encode()).hexdigest()[:32]}.png" for c in channels}
    missing = [c for c in channels if not cached[c].is_file()]
    if missing:
        try:
            results = render_channels(
                bundle, layer, missing, size=settings.vis_size, steps=settings.vis_steps, seed=settings.seed
            )
        except EngineError as error:
            return {}, f"no feature visualisation: {error}"
        for channel, result in zip(missing, results):
            Image.fromarray(result.image).save(cached[channel])
    files = {}
    for channel in channels:
        file = f"vis/l{number}_c{channel}.png"
        shutil.copyfile(cached[channel], out / file)
        files[channel] = file
    return files, ""
