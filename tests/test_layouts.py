"""Layouts: every layer offered to map methods is read in a layout we recognise, and the default map is the model's own
grid, for one small model of every timm family and every torchvision classifier (random weights, the smallest input
each runs at: bench/layouts_selection.json, chosen by `python -m bench.layouts_sweep --select`); and the pieces by
hand: token and channels-last views, refusals with reasons, CAM on an average-pooled transformer, the defaults.
"""

from __future__ import annotations

import warnings

import pytest
import timm
import torch
from torch import nn

from bench.layouts_sweep import SLOW_S, check, load_selection
from cnnvis_engine.explainer import Explainer
from cnnvis_engine.layouts import Declared, Layout, Output, assign
from cnnvis_engine.methods import METHODS, default_layer
from cnnvis_engine.models import ModelBundle

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SELECTED = load_selection()
# Left out of CI because one check alone takes longer than SLOW_S seconds on one thread; the sweep runs them.
SLOW = {model: seconds for _, model, _, seconds in SELECTED if seconds > SLOW_S}


@pytest.mark.parametrize(
    ("source", "model", "size"),
    [(source, model, size) for source, model, size, _ in SELECTED if model not in SLOW],
    ids=[f"{source}:{model}" for source, model, _, _ in SELECTED if model not in SLOW],
)
def test_every_family_draws_its_own_grid_or_says_why(source: str, model: str, size: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = check(source, model, size)
    assert row.status in ("explained", "refused"), row.detail
    assert row.detail  # the layer and layout read, or the reason


def bundle_of(module: nn.Module, size: int) -> ModelBundle:
    return ModelBundle(name="m", module=module.eval(), class_names=(), input_size=(size, size), weights_source="random")


def picture(size: int) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))


def trace_of(explainer: Explainer, size: int):
    return explainer._recorder.known_trace((3, size, size))


def test_token_and_channels_last_views_restore_the_grid():
    tokens = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)  # 2 prefix tokens + a 2×2 grid, 3 channels
    view = Layout("tokens", (2, 2), prefix=2).view(tokens)
    assert view.shape == (2, 3, 2, 2)
    assert torch.equal(view[1, 2, 1, 0], tokens[1, 2 + 2, 2])  # row 1, column 0 is patch 2 after the prefix
    last = torch.randn(2, 4, 5, 3)
    assert torch.equal(Layout("channels_last", (4, 5)).view(last), last.permute(0, 3, 1, 2))


def test_vit_layer_list_default_and_refusals():
    torch.manual_seed(0)
    explainer = Explainer(bundle_of(timm.create_model("vit_tiny_patch16_224", img_size=64), 64))
    result = explainer.explain_batch(picture(64), methods=["gradcam", "cam", "guided_backprop"])[0]
    trace = trace_of(explainer, 64)
    assert default_layer(trace, "gradcam") == "blocks.11.norm1"  # pytorch-grad-cam's blocks[-1].norm1
    assert result["gradcam"].raw.shape == (4, 4)
    assert "tokens · 4×4 patches + 1 class token" in METHODS["gradcam"].caption(result["gradcam"], "class 1")
    assert trace.get("blocks.3").label.endswith("tokens · 4×4 patches + 1 class token")
    head = trace.get("blocks.3.attn.k_norm")  # 3 heads × 17 tokens × 64: the picture issue 22 began with
    assert "spatial" not in head.kinds and "per attention head" in head.layout.reason
    assert trace.get("patch_embed.proj").layout.kind == "map"  # offered, but a later map is the default
    assert not result["cam"].applicable and "class token" in result["cam"].reason
    assert "GELU" in METHODS["guided_backprop"].note(result["guided_backprop"])
    refused = explainer.explain_batch(picture(64), layer="blocks.3.attn.k_norm", methods=["gradcam"])[0]["gradcam"]
    assert "not a map" in refused.reason and "per attention head" in refused.reason


def test_cam_applies_where_a_transformer_averages_its_tokens():
    torch.manual_seed(0)
    module = timm.create_model("vit_tiny_patch16_224", img_size=64, global_pool="avg", fc_norm=False, class_token=False)
    explainer = Explainer(bundle_of(module, 64))
    x = picture(64)
    cam = explainer.explain_batch(x, methods=["cam"], targets=[3])[0]["cam"]
    assert cam.applicable, cam.reason
    assert cam.meta["layout"] == "tokens · 4×4 patches"
    with torch.no_grad():
        logit = module(x)[0, 3]
    assert abs(float(cam.raw.mean()) + cam.meta["bias"] - float(logit)) < 1e-4


def test_swin_defaults_to_its_last_stage_read_channels_last():
    torch.manual_seed(0)
    explainer = Explainer(bundle_of(timm.create_model("swin_tiny_patch4_window7_224", img_size=64), 64))
    result = explainer.explain_batch(picture(64), methods=["gradcam", "cam"])[0]
    trace = trace_of(explainer, 64)
    assert trace.get(result["gradcam"].layer).layout.kind == "channels_last"
    assert result["gradcam"].raw.shape == (2, 2)
    assert result["cam"].applicable and result["cam"].meta["layout"] == "channels-last 2×2"
    windows = [layer for layer in trace.layers if layer.name.endswith("attn.softmax")]
    assert windows and all("spatial" not in layer.kinds for layer in windows)


def test_torchvision_convnext_blocks_are_channels_last_between_their_permutes():
    import torchvision

    torch.manual_seed(0)
    explainer = Explainer(bundle_of(torchvision.models.convnext_tiny(), 64))
    explainer.explain_batch(picture(64), methods=["gradcam"])
    trace = trace_of(explainer, 64)
    norm = trace.get("features.1.0.block.2")  # the LayerNorm between Permute([0, 2, 3, 1]) and Permute([0, 3, 1, 2])
    assert norm.layout.kind == "channels_last" and norm.layout.grid == (16, 16)
    assert trace.get("features.1.0.block.0").layout.kind == "map"  # the depthwise convolution before it


class Both(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_an_output_that_reads_as_a_grid_both_ways_is_not_a_map():
    conv, cube = nn.Conv2d(3, 7, 1), Both()
    outputs = [Output("conv", conv, (1, 7, 7, 7), None), Output("cube", cube, (1, 7, 7, 7), None)]
    layouts = assign(outputs, 1, (56, 56), Declared())
    assert layouts["conv"].kind == "map"  # a convolution's output is a map by construction
    assert layouts["cube"].kind == "none" and "ambiguous" in layouts["cube"].reason


class OwnViT(nn.Module):
    """A user's transformer that declares nothing: a class token and a 4×4 grid of patches, pooled by its token."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, 8, 16, stride=16)
        self.token = nn.Parameter(torch.randn(1, 1, 8))
        self.mix = nn.Sequential(nn.LayerNorm(8), nn.Linear(8, 8), nn.GELU())
        self.head = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = self.mix(torch.cat([self.token.expand(len(x), -1, -1), tokens], dim=1))
        return self.head(tokens[:, 0])


def test_a_model_that_declares_nothing_has_its_tokens_inferred_from_its_convolution_grid():
    torch.manual_seed(0)
    explainer = Explainer(bundle_of(OwnViT(), 64))
    result = explainer.explain_batch(picture(64), methods=["gradcam", "cam"])[0]
    trace = trace_of(explainer, 64)
    assert trace.get("mix").layout == trace.get("mix.0").layout
    assert trace.get("mix").layout.kind == "tokens" and trace.get("mix").layout.prefix == 1
    assert result["gradcam"].raw.shape == (4, 4)
    assert not result["cam"].applicable and "token 0" in result["cam"].reason


def test_a_cube_shaped_map_after_a_convolution_stays_a_map_through_relu_and_its_block():
    """32 channels at 32×32 reads both ways by shape; in a model that never goes channels-last, a ReLU after a
    convolution and the block ending in it keep the convolution's layout (the salt U-Net's down2 lost Grad-CAM)."""
    block = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU())
    outputs = [
        Output("block", block, (1, 32, 32, 32), None),
        Output("block.0", block[0], (1, 32, 32, 32), None),
        Output("block.1", block[1], (1, 32, 32, 32), None),
        Output("odd", Both(), (1, 32, 32, 32), None),  # no layout of its own to carry: still ambiguous
    ]
    layouts = assign(outputs, 1, (32, 32), Declared())
    assert [layouts[n].kind for n in ("block", "block.0", "block.1")] == ["map", "map", "map"]
    assert layouts["block.1"].grid == (32, 32) and layouts["odd"].kind == "none"
    permute = type("Permute", (nn.Module,), {"dims": (0, 2, 3, 1)})()  # a model that does go channels-last
    layouts = assign([*outputs, Output("p", permute, (1, 32, 32, 32), None)], 1, (32, 32), Declared())
    assert layouts["block.1"].kind == "none"  # then nothing is carried: the shape alone decides
