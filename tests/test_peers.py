"""Our maps against the peer libraries on the same input tensor (`bundle.prepare(image)`):

- Grad-CAM `raw` equals captum's LayerGradCam(relu_attributions=True), and after each peer's own normalisation
  matches pytorch-grad-cam's GradCAM and torchcam's GradCAM within 1e-4, on resnet18, vgg16, mobilenet_v3_large
  (random weights) and efficientnet_lite0 (the default, ImageNet weights), at the default layer and one other;
- saliency `raw` (max over channels of |grad|) equals captum's Saliency(abs=True);
- guided backprop equals captum's GuidedBackprop on models with ReLU(inplace=True);
- CAM satisfies mean(raw) + bias == logit, and matches torchcam's CAM after its normalisation.

Peers get their own `copy.deepcopy` of the module: they call `.backward()` (parameter `.grad`) or `model.eval()`.
Measured differences are recorded with `record_property` (see `--junitxml`).
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
from captum.attr import GuidedBackprop, LayerGradCam, Saliency
from conftest import leaves_model_untouched
from pytorch_grad_cam import GradCAM as PgcGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchcam.methods import CAM as TorchcamCAM
from torchcam.methods import GradCAM as TorchcamGradCAM

from cnnvis_engine.explainer import Explainer
from cnnvis_engine.models import ModelBundle, load_model

# (model, the other layer); the default layer is whatever the engine picks
GRADCAM_CASES = {
    "resnet18": "layer3",
    "vgg16": "features.29",  # a ReLU(inplace=True) module's output
    "mobilenet_v3_large": "features.12",
    "efficientnet_lite0": "blocks.5",
}
DEFAULT_LAYERS = {
    "resnet18": "layer4",
    "vgg16": "features",
    "mobilenet_v3_large": "features",
    "efficientnet_lite0": "bn2",
}
PEER_ATOL = 1e-4  # after normalisation, maps are in [0, 1]


def calibrate_batchnorm(bundle: ModelBundle, images: list) -> None:
    """Set every BatchNorm's running statistics from `images`, keeping the random weights.

    torchvision's randomly initialised MobileNetV3 in eval mode shrinks its activations ~100× per stage (the
    Grad-CAM map is ~1e-11), far below pytorch-grad-cam's 1e-7 and torchcam's 1e-8 normalisation epsilons, so
    comparing normalised maps there would compare epsilons. With calibrated statistics the maps reach 1e-4 to 1e-3.
    """
    module = bundle.module
    batch = torch.stack([bundle.prepare(image.image)[1] for image in images])
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one batch sets the statistics exactly
    module.train()
    with torch.no_grad():
        module(batch)
    module.eval()
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum


class Case:
    """One model: our explainer, its input tensor, and a private copy of the module for the peers."""

    def __init__(self, bundle: ModelBundle, image) -> None:
        self.bundle = bundle
        self.image = image
        self.explainer = Explainer(bundle)
        self.x = bundle.prepare(image.image)[1][None]  # exactly what the explainer feeds the model
        self.peer = copy.deepcopy(bundle.module)
        self.target = self.explainer.predict(image, top_k=1)[0].index

    def ours(self, method: str, layer: str | None = None, target: int | None = None):
        target = self.target if target is None else target
        with leaves_model_untouched(self.bundle.module):
            result = self.explainer.explain(self.image, layer=layer, target=target, methods=[method])[method]
        assert result.applicable, result.reason
        return result

    def logit(self, target: int) -> float:
        with torch.no_grad():
            return float(self.bundle.module(self.x)[0, target])


@pytest.fixture(scope="module")
def cases(zoo, samples):
    built: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in built:
            if name == "mobilenet_v3_large":
                bundle = load_model(name, "random")  # our own instance: calibration changes it
                calibrate_batchnorm(bundle, list(samples.values()))
            else:
                bundle = zoo(name)
            built[name] = Case(bundle, samples["cat"])
        return built[name]

    return get


def pgc_normalise(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's post-processing of one layer's map (base_cam.compute_cam_per_layer then
    aggregate_multi_layers): ReLU, scale_cam_image with resize to the input, then scale_cam_image again."""

    def scale(img: np.ndarray) -> np.ndarray:
        img = img - np.min(img)
        return img / (1e-7 + np.max(img))

    cam = scale(np.maximum(raw, 0))
    cam = cv2.resize(np.float32(cam), (size[1], size[0]))
    return np.float32(scale(np.maximum(cam, 0)))


def torchcam_normalise(raw: np.ndarray) -> np.ndarray:
    """torchcam's _CAM._normalize: subtract the min, divide by max + 1e-8, at the layer's resolution."""
    cam = torch.from_numpy(np.array(raw, dtype=np.float32))
    cam = cam - cam.amin()
    return (cam / (cam.amax() + 1e-8)).numpy()


def gradcam_params():
    for name, other in GRADCAM_CASES.items():
        yield pytest.param(name, None, id=f"{name}-default")
        yield pytest.param(name, other, id=f"{name}-{other}")


@pytest.mark.parametrize(("name", "layer"), list(gradcam_params()))
def test_gradcam_matches_captum_pytorch_grad_cam_and_torchcam(cases, name, layer, record_property):
    case = cases(name)
    ours = case.ours("gradcam", layer)
    assert ours.layer == (layer or DEFAULT_LAYERS[name])
    scale = float(ours.raw.max())
    module = case.peer.get_submodule(ours.layer)

    captum = LayerGradCam(case.peer, module).attribute(case.x.clone(), target=case.target, relu_attributions=True)
    captum = captum.detach()[0, 0].numpy()
    assert captum.shape == ours.raw.shape
    captum_diff = float(np.abs(ours.raw - captum).max())

    with PgcGradCAM(model=case.peer, target_layers=[module]) as pgc:
        pgc_map = pgc(input_tensor=case.x.clone(), targets=[ClassifierOutputTarget(case.target)])[0]
    pgc_diff = float(np.abs(pgc_normalise(ours.raw, tuple(case.x.shape[2:])) - pgc_map).max())

    with TorchcamGradCAM(case.peer, ours.layer) as extractor:
        scores = case.peer(case.x.clone())
        torchcam = extractor(case.target, scores)[0][0].detach().numpy()
    torchcam_diff = float(np.abs(torchcam_normalise(ours.raw) - torchcam).max())

    measured = {"scale": scale, "captum": captum_diff, "pytorch_grad_cam": pgc_diff, "torchcam": torchcam_diff}
    for key, value in measured.items():
        record_property(f"{name}:{ours.layer}:{key}", value)
    assert captum_diff <= 1e-5 * scale
    # the maps are bright enough that the peers' epsilons (1e-7, 1e-8) leave them spanning [0, 1]
    assert pgc_map.max() > 0.99 and torchcam.max() > 0.99, scale
    assert pgc_diff <= PEER_ATOL
    assert torchcam_diff <= PEER_ATOL
    # our display map is our raw upsampled and normalised, as pytorch-grad-cam shows it (bilinear, half-pixel)
    assert np.abs(ours.map - pgc_map).max() < 0.05


@pytest.mark.parametrize("name", list(GRADCAM_CASES))
def test_saliency_equals_captum(cases, name, record_property):
    case = cases(name)
    ours = case.ours("saliency")
    x = case.x.clone().requires_grad_(True)
    captum = Saliency(case.peer).attribute(x, target=case.target, abs=True).detach()[0]
    scale = float(ours.raw.max())
    diff = float(np.abs(ours.raw - captum.amax(dim=0).numpy()).max())
    record_property(f"{name}:saliency", diff)
    assert scale > 0
    assert diff <= 1e-6 * scale
    assert ours.raw.shape == tuple(case.x.shape[2:])


def test_guided_backprop_equals_captum_with_inplace_relu(cases, record_property):
    case = cases("resnet18")
    assert all(m.inplace for m in case.bundle.module.modules() if isinstance(m, torch.nn.ReLU))
    for target in (case.target, 7):
        ours = case.ours("guided_backprop", target=target)
        x = case.x.clone().requires_grad_(True)
        captum = GuidedBackprop(case.peer).attribute(x, target=target).detach()[0].numpy()
        diff = float(np.abs(ours.raw - captum).max())
        record_property(f"resnet18:guided_backprop:{target}", diff)
        assert diff <= 1e-6 * float(np.abs(captum).max())
        # it differs from plain saliency: the ReLUs really were guided
        plain = case.ours("saliency", target=target).raw
        assert np.abs(np.abs(ours.raw).max(axis=0) - plain).max() > 1e-3 * float(plain.max())


def test_guided_backprop_equals_captum_on_the_tiny_model(tiny_bundle, tiny_image):
    peer = copy.deepcopy(tiny_bundle.module)
    x = tiny_bundle.prepare(tiny_image.image)[1][None].requires_grad_(True)
    explainer = Explainer(tiny_bundle)
    for target in range(3):
        ours = explainer.explain(tiny_image, target=target, methods=["guided_backprop"])["guided_backprop"]
        captum = GuidedBackprop(peer).attribute(x, target=target).detach()[0].numpy()
        np.testing.assert_allclose(ours.raw, captum, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "efficientnet_lite0"])
def test_cam_logit_identity(cases, name, record_property):
    case = cases(name)
    for target in (case.target, 7):
        ours = case.ours("cam", target=target)
        logit = case.logit(target)
        diff = abs(float(ours.raw.astype(np.float64).mean()) + ours.meta["bias"] - logit)
        record_property(f"{name}:cam_identity:{target}", diff)
        assert diff <= 1e-5 * max(1.0, abs(logit)), (ours.raw.mean(), ours.meta["bias"], logit)


@pytest.mark.parametrize(("name", "fc"), [("resnet18", "fc"), ("efficientnet_lite0", "classifier")])
def test_cam_matches_torchcam(cases, name, fc, record_property):
    case = cases(name)
    ours = case.ours("cam")
    with TorchcamCAM(case.peer, ours.layer, fc) as extractor:
        with torch.no_grad():
            case.peer(case.x.clone())
        torchcam = extractor(case.target)[0][0].numpy()
    diff = float(np.abs(torchcam_normalise(ours.raw) - torchcam).max())
    record_property(f"{name}:cam_vs_torchcam", diff)
    assert diff <= PEER_ATOL
