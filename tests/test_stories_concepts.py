"""The tanks story's "which concepts?" (issue 23), measured on fresh photos in random weather: the biased detector's
top concept for "tank" fires on the sunny sky, the fair detector's on the tank. The channel is the one carrying most
of the "tank" score (never picked by hand); its crops are placed by the scenes' own horizon and tank box.
Measured here: biased 10 of 12 crops on the sky, none on a tank; fair 8 of 12 on the tank, none on the sky."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnvis_engine import Explainer, load_model
from cnnvis_engine.demos.tank_scenes import tank_dataset
from cnnvis_engine.stories.concepts import tank_concept_places

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = str(tmp_path_factory.mktemp("index"))
    return {
        model: tank_concept_places(load_model(model, "demo"), cache_dir=folder)
        for model in ("tanks_shortcut", "tanks_clean")
    }


def test_the_biased_detectors_top_concept_fires_on_the_sky(places):
    biased = places["tanks_shortcut"]
    assert biased.on_sky >= 0.6 and biased.on_tank <= 0.2, (biased.on_sky, biased.on_tank)
    sunny = biased.data.sunny[[top.image for top in biased.crops]]
    assert sunny.mean() >= 0.9  # the sky it fires on is the sunny one


def test_the_fair_detectors_top_concept_fires_on_the_tank(places):
    fair = places["tanks_clean"]
    assert fair.on_tank >= 0.5 and fair.on_sky <= 0.2, (fair.on_sky, fair.on_tank)
    assert all(fair.data.labels[top.image] == 1 for top in fair.crops)


def test_the_concept_is_the_one_carrying_most_of_tank_and_the_scenes_know_their_sky(places):
    biased = places["tanks_shortcut"]
    explainer = Explainer(load_model("tanks_shortcut", "demo"))
    tanks = np.flatnonzero(biased.data.labels)
    total = sum(
        explainer.concepts(Image.fromarray(biased.data.images[i]), target=1, top=1).contributions for i in tanks
    )
    assert int(np.argmax(total)) == biased.channel and biased.layer == "se"
    data = tank_dataset(4, 7, light="shortcut")
    for image, horizon in zip(data.images, data.horizons):
        sky, ground = image[: max(horizon - 8, 1)].astype(float), image[horizon + 4 :].astype(float)
        assert sky[..., 2].mean() > ground[..., 2].mean() + 30  # above the horizon is blue or grey sky, not grass
