"""Which concepts? The tanks story's last question, measured: each detector's top concept for "tank" (the channel that
carries most of the "tank" score over fresh tank photos, `Explainer.concepts`; never picked by hand), and where its
reference crops lie (`concepts.reference_index` over the same fresh photos, ActMax): on the sky or on the tank.

The photos are drawn with the light independent of the tank ("clean"), so a sunny sky and a tank can each be found
with and without the other. Each top crop is placed by the unit that fired most (the centre of its receptive field,
before clipping): in the sky if it is above the scene's horizon, on the tank if it is inside the tank's box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..concepts.reference import reference_index
from ..concepts.reference_tops import TopImage
from ..demos.tank_scenes import TankDataset, tank_dataset
from ..explainer import Explainer
from ..models.bundle import ModelBundle
from ..targets import ClassTarget
from .evaluation import HELD_OUT_SEEDS

TANK = ClassTarget(1, "tank")
CONCEPT_SEED = HELD_OUT_SEEDS["tanks_cam"] + 100  # fresh scenes, never used in training
PHOTOS, CROPS = 48, 12


@dataclass(frozen=True)
class ConceptPlaces:
    """One detector's top concept for "tank" and where its top reference crops lie."""

    model: str
    layer: str
    channel: int
    share: float  # its mean share of what speaks for "tank", over the fresh tank photos
    on_sky: float  # share of its top crops whose strongest unit lies above the horizon
    on_tank: float  # share of them whose strongest unit lies inside the tank's box
    crops: tuple[TopImage, ...]  # best first: (photo index, activation, receptive-field box)
    centres: tuple[tuple[float, float], ...]  # (x, y) in pixels of each crop's strongest unit
    data: TankDataset  # the photos the crops index into


def tank_concept_places(
    bundle: ModelBundle,
    *,
    data: TankDataset | None = None,
    layer: str | None = None,
    crops: int = CROPS,
    cache_dir: str | None = None,
) -> ConceptPlaces:
    """The top concept for "tank" of `bundle` at `layer` (None: its concept layer) over the tank photos of `data`
    (default: PHOTOS fresh photos in random weather), and where its `crops` best reference crops among all of
    `data`'s photos lie."""
    if data is None:
        data = tank_dataset(PHOTOS, CONCEPT_SEED, light="clean")
    pictures = [Image.fromarray(image) for image in data.images]
    explainer = Explainer(bundle, cache_size=1)
    results = [explainer.concepts(pictures[i], layer=layer, target=TANK, top=1) for i in np.flatnonzero(data.labels)]
    contributions = np.mean([r.contributions for r in results], axis=0)
    channel = int(np.argmax(contributions))
    share = float(np.mean([r.shares[channel] for r in results]))
    name = results[0].layer
    index = reference_index(bundle, pictures, [name], top=crops, cache_dir=cache_dir)
    tops = index.tops(name)
    best = index.top(name, channel, by="activation")
    (h, w), (height, width) = tops.receptive.grid, tops.receptive.size
    positions = tops.positions["activation"][channel][: len(best)]
    centres = tuple(((p % w + 0.5) * width / w, (p // w + 0.5) * height / h) for p in (int(q) for q in positions))
    horizons = data.horizons if data.horizons is not None else np.zeros(len(data.images), np.int64)
    sky = [y < horizons[top.image] for top, (_, y) in zip(best, centres)]
    tank = [_inside(data.boxes[top.image], x, y) for top, (x, y) in zip(best, centres)]
    return ConceptPlaces(
        model=bundle.name,
        layer=name,
        channel=channel,
        share=share,
        on_sky=float(np.mean(sky)) if best else 0.0,
        on_tank=float(np.mean(tank)) if best else 0.0,
        crops=tuple(best),
        centres=centres,
        data=data,
    )


def _inside(box: np.ndarray, x: float, y: float) -> bool:
    x0, y0, x1, y1 = (int(v) for v in box)
    return x0 >= 0 and x0 <= x < x1 and y0 <= y < y1
