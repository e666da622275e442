"""Tracing lists the layers an input really passed through, in execution order, with reuse counts and which
methods each can serve; CAM is found from recorded values (not names) or refused with a reason; feature maps
are the layers' true outputs even when a later in-place op (ReLU(inplace=True), `out += identity`) reuses them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_CLASSES, TINY_SIZE, leaves_model_untouched, make_tiny_bundle, synthetic_image
from torch import nn

from cnnvis_engine.errors import LayerError
from cnnvis_engine.explainer import Explainer
from cnnvis_engine.methods import default_layer, layers_for, methods_at
from cnnvis_engine.models import ModelBundle


@pytest.fixture(scope="module")
def resnet18(zoo):
    return zoo("resnet18")


@pytest.fixture(scope="module")
def resnet18_trace(resnet18, cat):
    return Explainer(resnet18).trace(cat)


def names(trace) -> list[str]:
    return [layer.name for layer in trace.layers]


def test_resnet18_layers_in_execution_order(resnet18_trace):
    order = names(resnet18_trace)
    assert order[0] == "conv1" and order[-1] == "fc"
    assert order.index("bn1") < order.index("relu") < order.index("maxpool") < order.index("layer1")
    assert order.index("layer1") < order.index("layer1.0") < order.index("layer1.0.conv1") < order.index("layer2")
    assert order.index("layer4.1.bn2") < order.index("avgpool") < order.index("fc")
    assert "layer1.0.downsample" not in order and "layer2.0.downsample" in order  # only modules that ran
    assert len(order) == len(set(order))  # a reused module appears once


def test_resnet18_shapes_kinds_and_reuse(resnet18_trace):
    conv1 = resnet18_trace.get("conv1")
    assert (conv1.kind, conv1.shape, conv1.calls, conv1.is_leaf) == ("Conv2d", (64, 112, 112), 1, True)
    assert resnet18_trace.get("layer4").shape == (512, 7, 7) and not resnet18_trace.get("layer4").is_leaf
    assert resnet18_trace.get("fc").shape == (1000,)
    # each BasicBlock applies its one `relu` module twice; the stem's `relu` runs once
    block_relu = resnet18_trace.get("layer1.0.relu")
    assert block_relu.calls == 2 and "runs 2×" in block_relu.label
    assert resnet18_trace.get("relu").calls == 1 and "runs" not in resnet18_trace.get("relu").label
    assert all(resnet18_trace.get(f"layer{i}.{j}.relu").calls == 2 for i in range(1, 5) for j in range(2))


def test_resnet18_method_eligibility_and_defaults(resnet18_trace):
    assert default_layer(resnet18_trace, "gradcam") == "layer4"
    assert default_layer(resnet18_trace, "feature_maps") == "layer4"
    assert default_layer(resnet18_trace, "kernels") == "conv1"
    assert default_layer(resnet18_trace, "cam") == "layer4"
    assert resnet18_trace.cam_site.linear == "fc" and resnet18_trace.cam_reason == ""
    assert [layer.name for layer in layers_for(resnet18_trace, "cam")] == ["layer4"]
    gradcam_layers = {layer.name for layer in layers_for(resnet18_trace, "gradcam")}
    assert {"conv1", "bn1", "layer3", "layer4", "layer4.1.bn2"} <= gradcam_layers
    assert not {"avgpool", "fc"} & gradcam_layers  # 1×1 and flat outputs are not maps
    assert all(layer.kind == "Conv2d" for layer in layers_for(resnet18_trace, "kernels"))
    assert resnet18_trace.unguided == ()  # every activation is an nn.ReLU


def test_unknown_layer_is_a_layer_error_with_a_hint(resnet18, resnet18_trace, cat):
    with pytest.raises(LayerError, match=r"no layer called 'layer5'\. Did you mean .*layer\d"):
        resnet18_trace.get("layer5")
    with leaves_model_untouched(resnet18.module), pytest.raises(LayerError):
        Explainer(resnet18).explain(cat, layer="layer4.9", methods=["gradcam"])


def test_methods_on_a_layer_they_cannot_use_come_back_with_a_reason(resnet18, cat):
    res = Explainer(resnet18).explain(cat, layer="fc", methods=["gradcam", "feature_maps", "kernels", "saliency"])
    for method in ("gradcam", "feature_maps", "kernels"):
        assert not res[method].applicable and res[method].map is None and "fc" in res[method].reason
    assert res["saliency"].applicable  # not a layer method: unaffected


@pytest.mark.parametrize("name", ["alexnet", "vgg16"])
def test_cam_is_not_applicable_without_global_pooling(zoo, cat, name):
    bundle = zoo(name)
    explainer = Explainer(bundle)
    trace = explainer.trace(cat)
    assert trace.cam_site is None and default_layer(trace, "cam") is None and trace.cam_reason
    assert not layers_for(trace, "cam")
    res = explainer.explain(cat, methods=["cam", "gradcam"])
    cam = res["cam"]
    assert cam.applicable is False and cam.map is None and cam.raw is None
    assert cam.reason == trace.cam_reason and "global average pooling" in cam.reason and cam.reason.endswith(".")
    assert res["gradcam"].applicable and res["gradcam"].layer == "features"  # Grad-CAM still works there


def test_efficientnet_lite0_cam_layer_is_the_activated_bn2(zoo, cat):
    bundle = zoo("efficientnet_lite0")
    explainer = Explainer(bundle)
    trace = explainer.trace(cat)
    assert (trace.cam_site.layer, trace.cam_site.linear) == ("bn2", "classifier")
    assert default_layer(trace, "gradcam") == "bn2"
    assert "cam" not in methods_at(trace.get("conv_head"))
    res = explainer.explain(cat, layer="bn2", methods=["cam", "feature_maps"])
    assert res["cam"].layer == "bn2"
    maps = res["feature_maps"].raw  # the activated output: ReLU6 inside timm's BatchNormAct2d
    assert maps.min() >= 0 and maps.max() <= 6 and maps.shape == (1280, 7, 7)
    module = bundle.module
    with torch.no_grad():
        x = bundle.prepare(cat.image)[1][None]
        expected = module.bn2(module.conv_head(module.blocks(module.bn1(module.conv_stem(x)))))[0]
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_feature_maps_are_true_outputs_before_an_inplace_relu(resnet18, cat):
    module = resnet18.module
    explainer = Explainer(resnet18)
    with leaves_model_untouched(module):
        bn1 = explainer.explain(cat, layer="bn1", methods=["feature_maps"])["feature_maps"]
        block_bn2 = explainer.explain(cat, layer="layer1.0.bn2", methods=["feature_maps"])["feature_maps"]
    with torch.no_grad():
        x = resnet18.prepare(cat.image)[1][None]
        stem = module.bn1(module.conv1(x))
        block = module.layer1[0]
        h = module.maxpool(module.relu(stem.clone()))
        expected_bn2 = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(h)))))
    assert bn1.raw.min() < 0  # relu(inplace=True) did not overwrite what we keep
    np.testing.assert_allclose(bn1.raw, stem[0].numpy(), rtol=1e-5, atol=1e-6)
    assert block_bn2.raw.min() < 0  # `out += identity` did not overwrite it either
    np.testing.assert_allclose(block_bn2.raw, expected_bn2[0].numpy(), rtol=1e-5, atol=1e-6)
    # the map holds the 16 channels with the highest mean, normalised, at the input size
    assert bn1.map.shape == (16, 224, 224) and bn1.map.min() >= 0 and bn1.map.max() <= 1
    means = stem[0].mean(dim=(1, 2))
    assert bn1.meta["channels"] == torch.argsort(means, descending=True)[:16].tolist()


def test_tiny_model_trace(tiny_bundle, tiny_image):
    trace = Explainer(tiny_bundle).trace(tiny_image)
    assert names(trace) == ["conv", "relu", "pool", "flatten", "fc"]
    assert [layer.shape for layer in trace.layers] == [(2, 4, 4), (2, 4, 4), (2, 1, 1), (2,), (3,)]
    assert trace.cam_site.layer == "relu" and trace.cam_site.linear == "fc"
    assert default_layer(trace, "gradcam") == "relu"  # no blocks: the last spatial leaf
    assert [layer.name for layer in layers_for(trace, "kernels")] == ["conv"]


class FunctionalNet(nn.Module):
    """Activations called as functions and a non-ReLU module: guided backprop cannot guide them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.SiLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x))
        h = self.act(h)
        return self.fc(torch.tanh(h).mean(dim=(2, 3)))


def test_unguided_activations_are_listed():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = FunctionalNet().eval()
    bundle = ModelBundle(name="functional", module=module, class_names=TINY_CLASSES, input_size=TINY_SIZE)
    explainer = Explainer(bundle)
    trace = explainer.trace(synthetic_image(1, (8, 8)))
    assert trace.unguided == ("act (SiLU)", "functional relu ×1", "functional tanh ×1")
    # fc pools tanh(act(...)), which no module outputs: the latest recorded map (act) is not what was pooled
    assert trace.cam_site is None and "global average pooling" in trace.cam_reason
    result = explainer.explain(synthetic_image(1, (8, 8)), methods=["guided_backprop"])["guided_backprop"]
    assert result.meta["unguided"] == trace.unguided


def test_cam_site_needs_the_output_to_be_the_last_linear():
    module = make_tiny_bundle().module
    squashed = nn.Sequential(module, nn.Tanh()).eval()
    bundle = ModelBundle(name="squashed", module=squashed, class_names=TINY_CLASSES, input_size=TINY_SIZE)
    trace = Explainer(bundle).trace(synthetic_image(2, (8, 8)))
    assert trace.cam_site is None and "0.fc" in trace.cam_reason and trace.cam_reason.endswith(".")
