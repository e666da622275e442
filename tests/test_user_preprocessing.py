"""Preprocessing chosen for an uploaded model: input size, RGB or grayscale, mean/std or plain 0–1 scaling;
and every method and drawing path on a one-channel (grayscale) model."""

from __future__ import annotations

import io
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnvis_engine import Explainer, ModelBundle, ModelFileError
from cnnvis_engine.faithfulness import evaluate_map
from cnnvis_engine.featurevis import model_pass as passes
from cnnvis_engine.models import Normalization, load_model_file
from cnnvis_engine.models.preprocessing import UNIT_SCALING, resolve_preprocessing
from cnnvis_engine.render import render_overlay, render_rgb
from tests.conftest import leaves_model_untouched, synthetic_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def small_net(channels: int, seed: int = 0) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(channels, 6, 3, padding=1),
                relu1=nn.ReLU(),
                conv2=nn.Conv2d(6, 8, 3, padding=1),
                relu2=nn.ReLU(),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(8, 3),
            )
        ).eval()


def torchscript(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module), buffer)
    return buffer.getvalue()


def test_a_32px_model_with_its_own_mean_and_std_gets_exactly_that() -> None:
    norm = Normalization(CIFAR_MEAN, CIFAR_STD)
    bundle = load_model_file(torchscript(small_net(3)), "cifar.pt", input_size=(32, 32), normalization=norm)
    assert bundle.input_size == (32, 32) and bundle.normalization == norm and bundle.channels == 3
    image = synthetic_image(1, (80, 60))
    display, x = bundle.prepare(image)
    rgb = np.asarray(image.resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float64) / 255
    expected = (rgb - np.array(CIFAR_MEAN)) / np.array(CIFAR_STD)
    assert display.shape == (32, 32, 3) and tuple(x.shape) == (3, 32, 32)
    assert np.abs(x.numpy().transpose(1, 2, 0) - expected).max() < 1e-5
    explanation = Explainer(bundle).explain(image, methods=["saliency"])
    assert explanation.image.shape == (32, 32, 3) and explanation["saliency"].map.shape == (32, 32)


def test_plain_scaling_divides_by_255() -> None:
    bundle = load_model_file(torchscript(small_net(3)), "unit.pt", normalization=UNIT_SCALING)
    display, x = bundle.prepare(synthetic_image(2))
    assert torch.allclose(x, torch.from_numpy(display.copy()).permute(2, 0, 1).float() / 255, atol=1e-6)


def test_grayscale_input_is_the_luma_pil_computes() -> None:
    norm = Normalization((0.5,), (0.25,))
    image = synthetic_image(3, (50, 40))
    bundle = load_model_file(torchscript(small_net(1)), "gray.pt", input_size=(40, 50), normalization=norm)
    assert bundle.channels == 1 and bundle.input_size == (40, 50)
    display, x = bundle.prepare(image)
    gray = np.asarray(image.convert("L"), dtype=np.float64) / 255
    assert display.shape == (40, 50, 3)  # the picture stays RGB for the overlays
    assert tuple(x.shape) == (1, 40, 50) and np.abs(x[0].numpy() - (gray - 0.5) / 0.25).max() < 1e-5
    shown = bundle.normalization.invert(x)
    assert shown.shape == (40, 50, 3) and (shown[..., 0] == shown[..., 2]).all()
    assert np.array_equal(shown[..., 0], np.asarray(image.convert("L")))


def test_channels_alone_average_the_architectures_normalisation() -> None:
    bundle = load_model_file(torchscript(small_net(1)), "gray.pt", channels=1)
    assert bundle.normalization.mean == pytest.approx((0.449,), abs=1e-3)
    assert bundle.normalization.std == pytest.approx((0.226,), abs=1e-3)
    assert Normalization((0.5,), (0.2,)).for_channels(3) == Normalization((0.5,) * 3, (0.2,) * 3)


def test_a_resnet18_state_dict_keeps_its_preprocessing_unless_told_otherwise() -> None:
    import torchvision

    buffer = io.BytesIO()
    torch.save(torchvision.models.resnet18().state_dict(), buffer)
    bundle = load_model_file(buffer.getvalue(), "r18.pth", architecture="resnet18")
    assert bundle.input_size == (224, 224) and bundle.normalization == Normalization()
    small = load_model_file(buffer.getvalue(), "r18.pth", architecture="resnet18", input_size=(64, 64))
    assert small.input_size == (64, 64)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"input_size": (0, 32)}, r"1 to 4,096 pixels a side; 0×32 is not"),
        ({"channels": 2}, r"1 \(grayscale\) or 3 \(RGB\) channels, not 2"),
        ({"channels": 3, "normalization": Normalization((0.5, 0.5), (0.2, 0.2))}, r"gives 2 means and 2 standard"),
        ({"normalization": Normalization((0.5,), (0.2, 0.2))}, r"gives 1 means and 2 standard deviations"),
        ({"normalization": Normalization((0.5,), (0.0,))}, r"standard deviations positive numbers"),
        ({"normalization": Normalization((float("nan"),), (1.0,))}, r"means must be numbers"),
    ],
    ids=["size", "channels", "two", "mismatch", "zero-std", "nan"],
)
def test_preprocessing_that_cannot_work_is_a_sentence(kwargs: dict, words: str) -> None:
    with pytest.raises(ModelFileError, match=words):
        resolve_preprocessing(kwargs.get("input_size"), kwargs.get("channels"), kwargs.get("normalization"))


def test_a_model_fed_the_wrong_channels_says_so() -> None:
    with pytest.raises(ModelFileError, match=r"failed on a 224×224 grayscale image"):
        load_model_file(torchscript(small_net(3)), "rgb.pt", channels=1)


GRAY_METHODS = (
    "feature_maps",
    "kernels",
    "cam",
    "gradcam",
    "guided_gradcam",
    "saliency",
    "guided_backprop",
    "integrated_gradients",
    "smoothgrad",
    "gradcam++",
    "occlusion",
)


def test_every_method_and_drawing_works_on_a_grayscale_model() -> None:
    bundle = ModelBundle(
        name="gray",
        module=small_net(1, seed=4),
        class_names=("a", "b", "c"),
        input_size=(16, 16),
        normalization=Normalization((0.5,), (0.25,)),
        weights_source="random",
    )
    image = synthetic_image(5, (24, 24))
    explainer = Explainer(bundle)
    with leaves_model_untouched(bundle.module):
        options = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 4}, "occlusion": {"window": 8}}
        result = explainer.explain(image, methods=GRAY_METHODS, options=options)
        batch = explainer.explain_batch([image, synthetic_image(6, (24, 24))], methods=["saliency", "gradcam"])
        ready = explainer.explain_batch(torch.zeros(2, 1, 16, 16), methods=["gradcam"])
    assert {m: r.reason for m, r in result.items() if not r.applicable} == {}
    for method in ("saliency", "guided_backprop", "integrated_gradients", "smoothgrad"):
        assert result[method].map.shape == (16, 16), method
    for method in ("guided_backprop", "guided_gradcam"):  # the signed gradient's picture: one channel drawn gray
        picture = result[method].rgb
        assert picture.shape == (16, 16, 3) and render_rgb(picture).shape == (16, 16, 3), method
        assert np.array_equal(picture[..., 0], picture[..., 1]), method
    assert render_overlay(result.image, result["gradcam"].map).shape == (16, 16, 3)
    assert len(batch) == 2 and ready[0]["gradcam"].map.shape == (16, 16)
    faith = evaluate_map(bundle, image, result["gradcam"].map, steps=4)
    assert np.isfinite(faith.deletion.auc) and np.isfinite(faith.insertion.auc)
    x = passes.to_model_input(torch.full((1, 3, 16, 16), 0.5), bundle.normalization)
    assert tuple(x.shape) == (1, 1, 16, 16) and torch.allclose(x, torch.zeros_like(x), atol=1e-6)
