"""The model-parameter randomisation test (Adebayo et al. 2018): Spearman as scipy computes it, the layer order,
cascading vs independent steps, seeded repeatability, the original model untouched — and the paper's finding on
the embedded default model with its real weights: as the top layers are randomised Grad-CAM's map changes and
guided backprop's barely does."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import leaves_model_untouched, synthetic_image
from scipy.stats import spearmanr

from cnnvis_engine.errors import LayerError, MethodError
from cnnvis_engine.models import load_model
from cnnvis_engine.sanity import randomisation_layers, randomisation_test, spearman


def test_spearman_equals_scipy_with_ties_and_is_zero_for_a_flat_map():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, (12, 12)).astype(np.float32)  # many ties
    b = a + rng.normal(0, 2, a.shape).astype(np.float32)
    for x, y in ((a, b), (b, a), (a, -b), (np.maximum(b, 1), b)):
        assert spearman(x, y) == pytest.approx(spearmanr(x.ravel(), y.ravel()).statistic, abs=1e-12)
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, np.zeros_like(a)) == 0.0
    with pytest.raises(MethodError):
        spearman(a, a[:3])


def test_layers_run_from_the_output_down_and_blocks_are_units():
    bundle = dataclasses.replace(load_model("resnet18", "random"), input_size=(64, 64))
    layers = randomisation_layers(bundle, synthetic_image(0))
    assert layers[:3] == ["fc", "layer4.1", "layer4.0"]
    assert layers[-2:] == ["bn1", "conv1"]
    assert len(layers) == 2 + 8 + 1  # conv1, bn1, eight BasicBlocks, fc


def parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in module.state_dict().values()]


@pytest.mark.parametrize("mode", ["cascading", "independent"])
def test_steps_and_the_original_model_untouched(tiny_bundle, tiny_image, mode):
    before = parameters(tiny_bundle.module)
    calls = []
    with leaves_model_untouched(tiny_bundle.module):
        steps = randomisation_test(
            tiny_bundle, tiny_image, "gradcam", mode=mode, target=1, progress=lambda *a: calls.append(a)
        )
    assert all(torch.equal(a, b) for a, b in zip(before, parameters(tiny_bundle.module)))
    assert [s.layer for s in steps] == ["", "fc", "conv"]
    assert steps[0].spearman == 1.0 and steps[0].randomised == ()
    assert steps[2].randomised == (("fc", "conv") if mode == "cascading" else ("conv",))
    assert calls == [(1, 3, ""), (2, 3, "fc"), (3, 3, "conv")]
    assert all(s.map.shape == (4, 4) and s.map.dtype == np.float32 for s in steps)
    again = randomisation_test(tiny_bundle, tiny_image, "gradcam", mode=mode, target=1)
    assert [s.spearman for s in again] == [s.spearman for s in steps]  # seeded
    assert all(np.array_equal(a.map, b.map) for a, b in zip(again, steps))


def test_independent_restores_each_layer(tiny_bundle, tiny_image):
    cascading = randomisation_test(tiny_bundle, tiny_image, "saliency", target=0)
    independent = randomisation_test(tiny_bundle, tiny_image, "saliency", target=0, mode="independent")
    np.testing.assert_array_equal(cascading[1].map, independent[1].map)  # the same first step
    # conv alone (fc trained) differs from conv with fc already random
    assert not np.array_equal(cascading[2].map, independent[2].map)


def test_refusals(tiny_bundle, tiny_image):
    with pytest.raises(MethodError, match="mode"):
        randomisation_test(tiny_bundle, tiny_image, mode="sideways")
    with pytest.raises(LayerError):
        randomisation_test(tiny_bundle, tiny_image, layers=["nope"])
    with leaves_model_untouched(tiny_bundle.module), pytest.raises(MethodError, match="one map"):
        randomisation_test(tiny_bundle, tiny_image, "feature_maps")


def test_gradcam_fails_to_stay_the_same_guided_backprop_does_on_the_trained_default(zoo, cat):
    """Adebayo et al.'s finding on efficientnet_lite0 (ImageNet weights): randomising the top layers one after
    another changes Grad-CAM's map (rank correlation far below 1) while guided backprop's stays almost as it was."""
    bundle = zoo("efficientnet_lite0")
    top = randomisation_layers(bundle, cat)[:4]
    assert top == ["classifier", "bn2", "conv_head", "blocks.6.0"]
    with leaves_model_untouched(bundle.module):
        gradcam = randomisation_test(bundle, cat, "gradcam", layers=top)
        guided = randomisation_test(bundle, cat, "guided_backprop", layers=top)
    print()
    for g, b in zip(gradcam[1:], guided[1:]):
        print(f"random down to {g.layer:12s} Grad-CAM ρ = {g.spearman:6.3f}  guided backprop ρ = {b.spearman:6.3f}")
    for g, b in zip(gradcam[1:], guided[1:]):
        assert g.spearman < b.spearman - 0.2
    assert np.mean([s.spearman for s in gradcam[1:]]) < 0.6
    assert min(s.spearman for s in guided[1:]) > 0.9


def test_concurrent_tests_draw_the_same_random_weights_as_serial_ones():
    """The layers are re-initialised from torch's global generator, seeded per step: sessions testing at once
    (threads of one server) must not draw from each other's seeds."""
    import threading

    bundle = dataclasses.replace(load_model("resnet18", "random"), input_size=(64, 64))
    image = synthetic_image(0)
    seeds = (0, 100, 200, 300)
    serial = {seed: randomisation_test(bundle, image, "gradcam", seed=seed) for seed in seeds}
    concurrent: dict[int, list] = {}
    workers = [
        threading.Thread(
            target=lambda s=seed: concurrent.__setitem__(s, randomisation_test(bundle, image, "gradcam", seed=s))
        )
        for seed in seeds
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for seed in seeds:
        assert [s.spearman for s in concurrent[seed]] == [s.spearman for s in serial[seed]]
        assert all(np.array_equal(a.map, b.map) for a, b in zip(concurrent[seed], serial[seed]))
