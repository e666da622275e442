"""Feature visualisation reads each layer in its own layout (issue 23's first step): on a channels-last layer the
objective picks the last axis, not a row of the picture; a transformer's tokens become their grid; a layer that is
no map is refused with the reason, before any step runs. A tiny hand-built channels-last network (5 channels on a
16×16 grid, so a wrong axis shows) and timm's smallest ViT at 32 px keep it fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from conftest import leaves_model_untouched
from torch import nn
from torchvision.ops.misc import Permute

from cnnvis_engine.errors import LayerError
from cnnvis_engine.featurevis import channel, channel_count, evaluate, render_channels, visualize
from cnnvis_engine.featurevis.model_pass import from_uint8, to_model_input
from cnnvis_engine.models import ModelBundle

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 64


class ChannelsLast(nn.Module):
    """A 4×4 patch stem (6 channels, 16×16), then channels-last between two Permutes as torchvision's ConvNeXt:
    LayerNorm and a Linear to 5 channels on the 16×16 grid, back to channels first, pooled into 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 4, stride=4)
        self.to_last = Permute([0, 2, 3, 1])
        self.norm = nn.LayerNorm(6)
        self.mlp = nn.Linear(6, 5)
        self.to_first = Permute([0, 3, 1, 2])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.mlp(self.norm(self.to_last(self.stem(x))))
        return self.fc(self.flatten(self.pool(self.to_first(last))))


def bundle_of(module: nn.Module, size: int) -> ModelBundle:
    return ModelBundle(name="m", module=module.eval(), class_names=(), input_size=(size, size), weights_source="random")


@pytest.fixture(scope="module")
def channels_last() -> ModelBundle:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return bundle_of(ChannelsLast(), SIZE)


def by_hand(bundle: ModelBundle, images: np.ndarray) -> torch.Tensor:
    """The Linear's output (N, 16, 16, 5) computed without the engine."""
    module = bundle.module
    x = to_model_input(from_uint8(images, bundle.device), bundle.normalization)
    with torch.no_grad():
        return module.mlp(module.norm(module.stem(x).permute(0, 2, 3, 1)))


def test_a_channels_last_layer_is_read_along_its_last_axis(channels_last):
    images = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    expected = by_hand(channels_last, images)
    assert channel_count(channels_last, "mlp", SIZE) == 5  # not 16, the grid's height
    for index in (0, 3, 4):
        scores = evaluate(channels_last, channel("mlp", index), images)
        np.testing.assert_allclose(scores, expected[..., index].mean(dim=(1, 2)).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="no channel 7"):
        evaluate(channels_last, channel("mlp", 7), images)  # 7 < 16 rows: read channels first it would pass


def test_optimising_a_channels_last_channel_raises_that_channel(channels_last):
    with leaves_model_untouched(channels_last.module):
        result = visualize(channels_last, channel("mlp", 3), size=SIZE, steps=32, lr=0.1, seed=0)
    other = visualize(channels_last, channel("mlp", 0), size=SIZE, steps=32, lr=0.1, seed=0)
    noise = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    grey = np.full((1, SIZE, SIZE, 3), 128, dtype=np.uint8)
    beaten = torch.cat([by_hand(channels_last, pictures)[..., 3].mean(dim=(1, 2)) for pictures in (noise, grey)])
    assert float(result.scores[0]) > 2 * float(beaten.max()) > 0  # measured: 0.43 against at most 0.10
    assert float(result.scores[0]) > float(by_hand(channels_last, other.images)[..., 3].mean()) + 0.1
    assert float(result.scores[0]) == pytest.approx(float(by_hand(channels_last, result.images)[..., 3].mean()), 1e-5)
    gallery = render_channels(channels_last, "mlp", 5, size=SIZE, steps=2)
    assert [r.settings.objective for r in gallery] == [f"channel(mlp, {c})" for c in range(5)]


@pytest.fixture(scope="module")
def vit() -> ModelBundle:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return bundle_of(timm.create_model("vit_tiny_patch16_224", img_size=32, depth=2), 32)


def test_transformer_tokens_become_their_grid_and_per_head_tensors_are_refused(vit):
    assert channel_count(vit, "blocks.1", 32) == 192  # (N, 1 + 2·2, 192): channels last, class token dropped
    images = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    x = to_model_input(from_uint8(images, vit.device), vit.normalization)
    with torch.no_grad():
        tokens = vit.module.forward_features(x)  # after the final norm; blocks.1 is before it
        block = vit.module.blocks(vit.module._pos_embed(vit.module.patch_embed(x)))
    assert tokens.shape == (1, 5, 192)
    score = evaluate(vit, channel("blocks.1", 10), images)
    np.testing.assert_allclose(score, block[:, 1:, 10].mean(dim=1).numpy(), rtol=1e-4, atol=1e-5)
    with leaves_model_untouched(vit.module), pytest.raises(LayerError) as info:
        visualize(vit, channel("blocks.1.attn.k_norm", 0), size=32, steps=2)
    assert "not a map" in str(info.value) and "per attention head" in str(info.value)
    assert str(info.value).endswith("pick another layer.")
