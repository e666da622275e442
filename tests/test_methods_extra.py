"""The methods beyond the article against their peers, on the same input tensor (`bundle.prepare(image)`):

- Grad-CAM++, XGrad-CAM, Layer-CAM, Score-CAM and Eigen-CAM against pytorch-grad-cam (same layer, same target,
  compared after its normalisation; Eigen-CAM's SVD sign is fixed by pytorch-grad-cam's own sign correction);
- Integrated Gradients, SmoothGrad (NoiseTunnel over Saliency), SmoothGrad Grad-CAM (NoiseTunnel over
  LayerGradCam) and Occlusion against captum — the noise made identical by drawing it from the same seed;
- batch results equal per-image results, and the model is left untouched, on success and on error.

resnet18 with random weights sees 64 × 64 inputs here (layer3 4 × 4, layer4 2 × 2) to keep the peers' slow
per-channel passes short. Measured differences are recorded with `record_property`.
"""

from __future__ import annotations

import copy
import dataclasses

import cv2
import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion, Saliency
from conftest import leaves_model_untouched, make_tiny_bundle, make_tiny_module, synthetic_image
from pytorch_grad_cam import EigenCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

from cnnvis_engine.errors import EngineError, MethodError, ModelError
from cnnvis_engine.explainer import Explainer
from cnnvis_engine.hooks import capture
from cnnvis_engine.models import Normalization, load_model

NEW_METHODS = (
    "gradcam++",
    "xgradcam",
    "layercam",
    "scorecam",
    "eigencam",
    "integrated_gradients",
    "smoothgrad",
    "smoothgrad_cam",
    "occlusion",
)
PGC = {
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
    "eigencam": EigenCAM,
}
TINY_OPTIONS = {
    "integrated_gradients": {"steps": 8},
    "smoothgrad": {"samples": 6, "internal_batch_size": 4},
    "smoothgrad_cam": {"samples": 6, "internal_batch_size": 4},
    "occlusion": {"window": 2, "stride": 1, "internal_batch_size": 5},
    "scorecam": {"internal_batch_size": 1},
}


class Case:
    def __init__(self) -> None:
        self.bundle = dataclasses.replace(load_model("resnet18", "random"), input_size=(64, 64))
        self.explainer = Explainer(self.bundle)
        self.image = synthetic_image(3, (80, 72))
        self.x = self.bundle.prepare(self.image)[1][None]
        self.peer = copy.deepcopy(self.bundle.module)
        self.target = self.explainer.predict(self.image, top_k=1)[0].index

    def ours(self, method: str, layer: str | None = None, **options):
        with leaves_model_untouched(self.bundle.module):
            result = self.explainer.explain(
                self.image, layer=layer, target=self.target, methods=[method], options={method: options}
            )[method]
        assert result.applicable, result.reason
        return result


@pytest.fixture(scope="module")
def case() -> Case:
    return Case()


def pgc_normalise(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """pytorch-grad-cam's post-processing of one layer's map: ReLU, scale, resize to the input, scale again."""

    def scale(img: np.ndarray) -> np.ndarray:
        img = img - np.min(img)
        return img / (1e-7 + np.max(img))

    cam = cv2.resize(np.float32(scale(np.maximum(raw, 0))), (size[1], size[0]))
    return np.float32(scale(np.maximum(cam, 0)))


@pytest.mark.parametrize(
    ("method", "layer"),
    [(m, layer) for m in ("gradcam++", "xgradcam", "layercam", "eigencam") for layer in ("layer3", "layer4")]
    + [("scorecam", "layer3")],
)
def test_cam_variants_match_pytorch_grad_cam(case, method, layer, record_property):
    ours = case.ours(method, layer)
    assert ours.layer == layer
    with PGC[method](model=case.peer, target_layers=[case.peer.get_submodule(layer)]) as peer:
        peer.batch_size = 64
        theirs = peer(input_tensor=case.x.clone(), targets=[ClassifierOutputTarget(case.target)])[0]
    diff = float(np.abs(pgc_normalise(ours.raw, (64, 64)) - theirs).max())
    record_property(f"{method}:{layer}", diff)
    print(f"{method} {layer}: max |ours - pytorch-grad-cam| = {diff:.2e}")
    assert theirs.max() > 0.99
    assert diff <= 1e-4
    assert np.abs(ours.map - theirs).max() < 0.05  # our display map: upsample, then normalise


def test_eigencam_sign_is_pytorch_grad_cams_sign_correction(case):
    ours = case.ours("eigencam", "layer3")
    with capture(case.peer, only={"layer3"}) as record, torch.no_grad():
        case.peer(case.x.clone())
    projection = get_2d_projection_with_sign_correction(record.calls[0].output.numpy())[0]
    np.testing.assert_allclose(ours.raw, projection, atol=1e-4 * np.abs(projection).max())
    assert np.abs(ours.raw.max()) >= np.abs(ours.raw.min())


def test_scorecam_skips_all_zero_maps_without_changing_the_result(case):
    """Half of layer3's maps zeroed by a hook: the result must equal pytorch-grad-cam's all the same."""
    keep = (torch.arange(256) % 2 == 0)[:, None, None]
    for module in (case.bundle.module, case.peer):
        module.layer3.register_forward_hook(lambda m, a, out: out * keep)
    try:
        ours = case.explainer.explain_batch([case.image], layer="layer3", targets=case.target, methods=["scorecam"])
        ours = ours[0]["scorecam"]
        with ScoreCAM(model=case.peer, target_layers=[case.peer.layer3]) as peer:
            peer.batch_size = 64
            theirs = peer(input_tensor=case.x.clone(), targets=[ClassifierOutputTarget(case.target)])[0]
    finally:
        for module in (case.bundle.module, case.peer):
            module.layer3._forward_hooks.clear()
    assert np.abs(pgc_normalise(ours.raw, (64, 64)) - theirs).max() <= 1e-4


def test_integrated_gradients_equal_captum(case, record_property):
    ours = case.ours("integrated_gradients", steps=20)
    theirs = (
        IntegratedGradients(case.peer)
        .attribute(
            case.x.clone(),
            baselines=0.0,
            target=case.target,
            n_steps=20,
            method="gausslegendre",
            internal_batch_size=20,
        )
        .detach()[0]
        .numpy()
    )
    diff = float(np.abs(ours.raw - theirs).max())
    record_property("integrated_gradients", diff)
    scale = np.abs(theirs).max()
    print(f"integrated_gradients: max |ours - captum| = {diff:.2e} (scale {scale:.2e}), delta {ours.meta['delta']:.2e}")
    assert diff <= 1e-5 * np.abs(theirs).max()
    assert ours.raw.shape == (3, 64, 64) and ours.map.shape == (64, 64) and ours.rgb.shape == (64, 64, 3)
    # completeness: the attributions add up to score(x) − score(baseline), up to the quadrature error
    with torch.no_grad():
        out = case.peer(torch.cat([case.x, torch.zeros_like(case.x)]))[:, case.target]
    assert ours.meta["delta"] == pytest.approx(float(ours.raw.sum()) - float(out[0] - out[1]), abs=1e-4)


def test_smoothgrad_equals_captum_noise_tunnel_on_the_same_noise(case, record_property):
    ours = case.ours("smoothgrad", samples=8, seed=3, noise=0.2)
    flat = case.x.flatten()
    assert ours.meta["sigma"] == pytest.approx(0.2 * float(flat.max() - flat.min()))
    torch.manual_seed(3)  # captum draws its noise from the global generator; ours from a generator seeded the same
    theirs = (
        NoiseTunnel(Saliency(case.peer))
        .attribute(
            case.x.clone(), nt_type="smoothgrad", nt_samples=8, stdevs=float(ours.meta["sigma"]), target=case.target
        )
        .detach()[0]
        .numpy()
    )
    diff = float(np.abs(ours.raw - theirs).max())
    record_property("smoothgrad", diff)
    print(f"smoothgrad: max |ours - captum| = {diff:.2e} (scale {theirs.max():.2e})")
    assert diff <= 1e-5 * theirs.max()  # our CPU batches run channels-last: float32 sums in another order
    again = case.ours("smoothgrad", samples=8, seed=3, noise=0.2)
    other = case.ours("smoothgrad", samples=8, seed=4, noise=0.2)
    np.testing.assert_array_equal(again.raw, ours.raw)  # a fixed seed reproduces
    assert np.abs(other.raw - ours.raw).max() > 1e-3 * theirs.max()


def test_smoothgrad_cam_equals_captum_noise_tunnel_over_layer_gradcam(case, record_property):
    ours = case.ours("smoothgrad_cam", "layer3", samples=6, seed=5)
    torch.manual_seed(5)
    theirs = (
        NoiseTunnel(LayerGradCam(case.peer, case.peer.layer3))
        .attribute(
            case.x.clone(),
            nt_type="smoothgrad",
            nt_samples=6,
            stdevs=float(ours.meta["sigma"]),
            target=case.target,
            relu_attributions=True,
        )
        .detach()[0, 0]
        .numpy()
    )
    diff = float(np.abs(ours.raw - theirs).max())
    record_property("smoothgrad_cam", diff)
    print(f"smoothgrad_cam: max |ours - captum| = {diff:.2e} (scale {theirs.max():.2e})")
    assert theirs.max() > 0 and diff <= 1e-5 * theirs.max()


@pytest.mark.parametrize(("window", "stride"), [(16, 16), (16, 10)])  # 10: the last window is clipped at the edge
def test_occlusion_equals_captum(case, window, stride, record_property):
    ours = case.ours("occlusion", window=window, stride=stride, baseline=0.0)
    theirs = (
        Occlusion(case.peer)
        .attribute(
            case.x.clone(),
            sliding_window_shapes=(3, window, window),
            strides=(3, stride, stride),
            baselines=0.0,
            target=case.target,
            perturbations_per_eval=64,
        )
        .detach()[0]
        .numpy()
    )
    diff = float(np.abs(ours.raw - theirs[0]).max())
    record_property(f"occlusion:{window}:{stride}", diff)
    print(f"occlusion {window}/{stride}: max |ours - captum| = {diff:.2e} (scale {np.abs(theirs).max():.2e})")
    assert diff <= 1e-5 * np.abs(theirs).max()


def test_new_layer_methods_use_grad_cams_layers(case):
    names = [layer.name for layer in case.explainer.layers(case.image, "gradcam")]
    for method in ("gradcam++", "scorecam", "eigencam", "smoothgrad_cam"):
        assert [layer.name for layer in case.explainer.layers(case.image, method)] == names
    assert case.explainer.layers(case.image, "occlusion") == []
    result = case.explainer.explain(case.image, layer="fc", methods=["layercam"])["layercam"]
    assert not result.applicable and "spatial" in result.reason


@pytest.fixture
def tiny_pair():
    return make_tiny_bundle(), [synthetic_image(1, (8, 8)), synthetic_image(2, (8, 8))]


@pytest.mark.parametrize("method", NEW_METHODS)
def test_batch_equals_single_images_and_model_untouched(tiny_pair, method):
    bundle, images = tiny_pair
    explainer = Explainer(bundle)
    options = {method: TINY_OPTIONS.get(method, {})}
    with leaves_model_untouched(bundle.module):
        batch = explainer.explain_batch(images, targets=[2, 1], methods=[method], options=options)
        singles = [
            explainer.explain(image, target=t, methods=[method], options=options) for image, t in zip(images, (2, 1))
        ]
    for together, alone in zip(batch, singles):
        a, b = together[method], alone[method]
        assert a.applicable and b.applicable, (a.reason, b.reason)
        assert a.layer == b.layer
        np.testing.assert_allclose(a.raw, b.raw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.map, b.map, rtol=1e-5, atol=1e-5)
        assert a.map.shape == (4, 4) and a.map.dtype == np.float32 and 0 <= a.map.min() and a.map.max() <= 1


@pytest.mark.parametrize("method", NEW_METHODS)
def test_errors_leave_the_model_untouched(tiny_bundle, tiny_image, method):
    explainer = Explainer(tiny_bundle)
    with leaves_model_untouched(tiny_bundle.module), pytest.raises(EngineError):
        explainer.explain(tiny_image, target=7, methods=[method])  # the tiny model has 3 classes
    bad = {
        "integrated_gradients": {"steps": 0},
        "smoothgrad": {"samples": "many"},
        "smoothgrad_cam": {"noise": -1},
        "occlusion": {"window": 9},
        "scorecam": {"internal_batch_size": 0},
    }
    if method in bad:
        with leaves_model_untouched(tiny_bundle.module), pytest.raises(MethodError):
            explainer.explain(tiny_image, methods=[method], options={method: bad[method]})


class FailsOnBatches(torch.nn.Module):
    """The tiny model, but it fails on any batch larger than one (as an out-of-memory error would)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = make_tiny_module()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) > 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return self.body(x)


@pytest.mark.parametrize("method", ["scorecam", "integrated_gradients", "smoothgrad", "smoothgrad_cam", "occlusion"])
def test_a_failing_extra_pass_is_a_model_error_and_leaves_no_hooks(tiny_image, method):
    bundle = make_tiny_bundle(FailsOnBatches().eval())
    options = {"scorecam": {"internal_batch_size": 2}, "occlusion": {"window": 2}}.get(method, {})
    with leaves_model_untouched(bundle.module), pytest.raises(ModelError, match="internal_batch_size"):
        Explainer(bundle).explain(tiny_image, layer="body.conv", methods=[method], options={method: options})


@pytest.mark.parametrize("normalization", [None, Normalization((127.0, 127.0, 127.0), (128.0, 128.0, 128.0), 1.0)])
def test_batches_are_normalised_on_the_device_exactly_as_prepare(normalization):
    bundle = make_tiny_bundle()
    if normalization is not None:
        bundle = dataclasses.replace(bundle, normalization=normalization)
    images = [synthetic_image(6, (8, 8)), synthetic_image(7, (12, 9))]
    seen = []
    handle = bundle.module.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    try:
        Explainer(bundle).explain_batch(images, methods=["saliency"])
    finally:
        handle.remove()
    expected = torch.stack([bundle.prepare(image)[1] for image in images])
    assert torch.equal(seen[0], expected)
