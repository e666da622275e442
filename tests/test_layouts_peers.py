"""Grad-CAM on transformers against pytorch-grad-cam with the reshape_transform its documentation gives for each model,
on the same input tensor (random weights, seeded): token sequences with one class token (timm ViT, torchvision
ViT), with two prefix tokens (distilled DeiT), and Swin's tokens and channels-last maps.

pytorch-grad-cam's transforms (`pytorch_grad_cam.utils.reshape_transforms`): `vit_reshape_transform` drops the
class token and reshapes to 14×14; its DeiT example does the same (the distilled DeiT drops its two prefix tokens,
`tensor[:, 2:]`); `swinT_reshape_transform` reshapes (N, 49, C) to 7×7 — timm ≥ 0.9 hands Swin's block input on as
(N, 7, 7, C), which is flattened to (N, 49, C) first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest
import timm
import torch
import torchvision
from pytorch_grad_cam import GradCAM as PgcGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform
from test_peers import PEER_ATOL, pgc_normalise

from cnnvis_engine.explainer import Explainer
from cnnvis_engine.models import ModelBundle

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def drop_two_prefix_tokens(tensor: torch.Tensor, height: int = 14, width: int = 14) -> torch.Tensor:
    """`vit_reshape_transform` for a distilled DeiT: class and distillation tokens dropped."""
    return tensor[:, 2:, :].reshape(tensor.size(0), height, width, tensor.size(2)).transpose(2, 3).transpose(1, 2)


def swin_channels_last(tensor: torch.Tensor) -> torch.Tensor:
    return swinT_reshape_transform(tensor.flatten(1, 2))


def timm_model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False).eval()


def torchvision_model(name: str) -> torch.nn.Module:
    """torchvision's ViT starts its head at zeros (every gradient would be 0): a seeded normal head instead."""
    torch.manual_seed(0)
    module = torchvision.models.get_model(name, weights=None).eval()
    if hasattr(module, "heads"):
        torch.nn.init.normal_(module.heads.head.weight, std=0.02)
    return module


# (model, layer, pytorch-grad-cam's reshape_transform, the layout our layer list names)
CASES = [
    ("timm:vit_small_patch16_224", "blocks.11.norm1", vit_reshape_transform, "tokens · 14×14 patches + 1 class token"),
    ("timm:vit_small_patch16_224", "blocks.8", vit_reshape_transform, "tokens · 14×14 patches + 1 class token"),
    (
        "timm:deit_small_distilled_patch16_224",
        "blocks.11.norm1",
        drop_two_prefix_tokens,
        "tokens · 14×14 patches + 2 prefix tokens (class, distillation)",
    ),
    ("timm:swin_tiny_patch4_window7_224", "layers.3.blocks.1.norm2", swinT_reshape_transform, "tokens · 7×7 patches"),
    ("timm:swin_tiny_patch4_window7_224", "layers.3.blocks.1.norm1", swin_channels_last, "channels-last 7×7"),
    (
        "torchvision:vit_b_16",
        "encoder.layers.encoder_layer_11.ln_1",
        vit_reshape_transform,
        "tokens · 14×14 patches + 1 class token",
    ),
]
_MODELS: dict[str, torch.nn.Module] = {}


def model(name: str) -> torch.nn.Module:
    if name not in _MODELS:
        source, model_name = name.split(":")
        _MODELS[name] = (timm_model if source == "timm" else torchvision_model)(model_name)
    return _MODELS[name]


@pytest.mark.parametrize(("name", "layer", "transform", "layout"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_gradcam_equals_pytorch_grad_cam_with_its_reshape_transform(
    name: str, layer: str, transform: Callable, layout: str, record_property
):
    module = model(name)
    bundle = ModelBundle(name=name, module=module, class_names=(), input_size=(224, 224), weights_source="random")
    explainer = Explainer(bundle)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        target = int(module(x).argmax())
    ours = explainer.explain_batch(x, layer=layer, targets=[target], methods=["gradcam"])[0]["gradcam"]
    assert ours.applicable, ours.reason
    assert ours.meta["layout"] == layout
    assert layout in explainer._recorder.known_trace((3, 224, 224)).get(layer).label  # the layer list says it

    peer = copy.deepcopy(module)
    with PgcGradCAM(model=peer, target_layers=[peer.get_submodule(layer)], reshape_transform=transform) as pgc:
        pgc_map = pgc(input_tensor=x.clone(), targets=[ClassifierOutputTarget(target)])[0]
    diff = float(np.abs(pgc_normalise(ours.raw, (224, 224)) - pgc_map).max())
    record_property("pytorch_grad_cam", diff)
    assert ours.raw.shape == ((7, 7) if "swin" in name else (14, 14))
    assert pgc_map.max() > 0.99  # not a flat map: the comparison compares maps, not epsilons
    assert diff <= PEER_ATOL
