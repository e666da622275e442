"""Deletion / insertion (RISE) and average drop (Grad-CAM++): values computed by hand on a model whose
probability has a closed form, the batched evaluation against a plain per-step loop on the tiny model, refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import leaves_model_untouched, synthetic_image
from torch import nn

from cnnvis_engine.errors import EngineError, MethodError
from cnnvis_engine.faithfulness import area_under_curve, curves, evaluate_map, evaluate_maps, gaussian_blur


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


class MeanRed(nn.Module):
    """Logits (2·mean of channel 0, 0): the probability of class 0 is sigmoid(2·mean of channel 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x[:, 0].mean(dim=(1, 2))
        return torch.stack([2 * m, torch.zeros_like(m)], dim=1)


def probability_of_class_0(output: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
    return torch.softmax(output, dim=1)[:, 0]


def test_deletion_and_insertion_by_hand():
    x = torch.zeros(1, 3, 2, 2)
    x[0, 0] = torch.tensor([[1.0, 0.5], [-0.5, 2.0]])
    saliency = torch.tensor([[[0.9, 0.1], [0.5, 0.7]]])  # order: 1.0, 2.0, -0.5, 0.5
    fractions, deletion, insertion = curves(
        MeanRed(), probability_of_class_0, x, saliency, steps=4, deletion_baseline="zeros", insertion_baseline="zeros"
    )
    # channel-0 sums left after deleting 0..4 pixels: 3, 2, 0, 0.5, 0; after inserting: 0, 1, 3, 2.5, 3
    expected_deletion = [sigmoid(2 * s / 4) for s in (3.0, 2.0, 0.0, 0.5, 0.0)]
    expected_insertion = [sigmoid(2 * s / 4) for s in (0.0, 1.0, 3.0, 2.5, 3.0)]
    np.testing.assert_allclose(fractions.numpy(), [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(deletion[0].numpy(), expected_deletion, rtol=1e-6)
    np.testing.assert_allclose(insertion[0].numpy(), expected_insertion, rtol=1e-6)
    # the AUC by the trapezoid rule, 0.25 apart
    auc = 0.25 * (expected_deletion[0] / 2 + sum(expected_deletion[1:4]) + expected_deletion[4] / 2)
    assert area_under_curve(fractions.numpy(), deletion[0]) == pytest.approx(auc, rel=1e-6)


def test_step_counts_that_do_not_divide_the_pixels():
    x = torch.ones(1, 3, 2, 2)
    saliency = torch.tensor([[[4.0, 3.0], [2.0, 1.0]]])
    fractions, deletion, _ = curves(MeanRed(), probability_of_class_0, x, saliency, steps=3)
    np.testing.assert_allclose(fractions.numpy(), [0, 1 / 4, 2 / 4, 1])  # ⌊i·4/3⌋ pixels: 0, 1, 2, 4
    np.testing.assert_allclose(deletion[0].numpy(), [sigmoid(2), sigmoid(1.5), sigmoid(1), sigmoid(0)], rtol=1e-6)


def reference(bundle, image, saliency, target, steps):
    """A plain loop: one forward pass per step, the order from numpy's stable argsort."""
    x = bundle.prepare(image)[1][None]
    order = np.argsort(-saliency.ravel(), kind="stable")
    blurred = gaussian_blur(x)
    pixels = saliency.size
    deletion, insertion = [], []
    for i in range(steps + 1):
        chosen = np.zeros(pixels, dtype=bool)
        chosen[order[: i * pixels // steps]] = True
        mask = torch.from_numpy(chosen.reshape(saliency.shape)).float()
        with torch.no_grad():
            deletion.append(float(torch.softmax(bundle.module(x * (1 - mask)), dim=1)[0, target]))
            insertion.append(float(torch.softmax(bundle.module(blurred * (1 - mask) + x * mask), dim=1)[0, target]))
        with torch.no_grad():
            full = float(torch.softmax(bundle.module(x), dim=1)[0, target])
            masked = float(torch.softmax(bundle.module(x * torch.from_numpy(saliency)), dim=1)[0, target])
    return np.array(deletion), np.array(insertion), full, masked


def test_batched_evaluation_equals_a_plain_loop(tiny_bundle):
    images = [synthetic_image(4, (8, 8)), synthetic_image(5, (8, 8))]
    rng = np.random.default_rng(1)
    maps = [rng.random((4, 4)).astype(np.float32) for _ in images]
    with leaves_model_untouched(tiny_bundle.module):
        results = evaluate_maps(tiny_bundle, images, maps, [2, 0], steps=5, batch_size=3)
    for image, saliency, target, result in zip(images, maps, (2, 0), results):
        deletion, insertion, full, masked = reference(tiny_bundle, image, saliency, target, 5)
        np.testing.assert_allclose(result.deletion.scores, deletion, rtol=1e-5)
        np.testing.assert_allclose(result.insertion.scores, insertion, rtol=1e-5)
        np.testing.assert_allclose(result.deletion.fractions, [0, 3 / 16, 6 / 16, 9 / 16, 12 / 16, 1])
        assert result.deletion.auc == pytest.approx(np.trapezoid(deletion, result.deletion.fractions), rel=1e-6)
        assert result.insertion.auc == pytest.approx(np.trapezoid(insertion, result.insertion.fractions), rel=1e-6)
        assert result.score == pytest.approx(full, rel=1e-6) and result.masked_score == pytest.approx(masked, rel=1e-6)
        assert result.average_drop == pytest.approx(max(0.0, full - masked) / full, rel=1e-5, abs=1e-7)
        assert result.increase == (masked > full)


def test_average_drop_of_a_full_map_is_zero_and_maps_are_resized(tiny_bundle, tiny_image):
    result = evaluate_map(tiny_bundle, tiny_image, np.ones((9, 7), np.float32), steps=2)
    assert result.average_drop == 0.0 and not result.increase
    assert result.deletion.scores[0] == pytest.approx(result.score)


def test_blur_keeps_a_flat_picture_and_refusals(tiny_bundle, tiny_image):
    flat = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(gaussian_blur(flat), flat)
    with pytest.raises(MethodError):
        evaluate_map(tiny_bundle, tiny_image, np.ones((4, 4)), steps=0)
    with pytest.raises(MethodError):
        evaluate_map(tiny_bundle, tiny_image, np.ones((4, 4)), deletion_baseline="grey")
    with pytest.raises(EngineError):
        evaluate_maps(tiny_bundle, [tiny_image], [])
    with pytest.raises(EngineError, match="one"):
        evaluate_map(tiny_bundle, tiny_image, np.ones((3, 4, 4)))
