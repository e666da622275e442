"""Attention rollout and gradient-weighted rollout equal plain references computed here from attention matrices
taken independently (each block's qkv / in_proj called by hand in a hand-written forward pass); the recorded pass
leaves timm's fused attention as it was and no hook behind, on success and on error; a network without attention
gets a sentence and Explore does not offer them for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import leaves_model_untouched, make_tiny_bundle
from streamlit.testing.v1 import AppTest
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from cnnvis_engine import Explainer, ModelBundle, ModelError, load_model
from cnnvis_engine.hooks import count_hooks
from cnnvis_ui import controls, result_cache, scale, state

CLASSES = ("a", "b", "c", "d", "e")
EXPLORE = str(Path(__file__).resolve().parent.parent / "pages" / "explore.py")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_timm(seed: int = 0, **kwargs) -> VisionTransformer:
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=3, num_classes=5, **kwargs)
    return model.eval()


def tiny_torchvision(seed: int = 0) -> TorchvisionViT:
    torch.manual_seed(seed)
    model = TorchvisionViT(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    model.heads = nn.Linear(32, 5)
    return model.eval()


def bundle_of(model: nn.Module) -> ModelBundle:
    return ModelBundle(name="vit", module=model, class_names=CLASSES, input_size=(32, 32), weights_source="random")


def pictures(seed: int = 1, n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def timm_attention(model: VisionTransformer, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The model's logits and each block's softmax(q kᵀ · scale) (N, heads, T, T), by a forward pass written out."""
    tokens = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    probs = []
    for block in model.blocks:
        attn, hidden = block.attn, block.norm1(tokens)
        n, t, c = hidden.shape
        q, k, v = attn.qkv(hidden).reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        a = (q * attn.scale @ k.transpose(-2, -1)).softmax(dim=-1)
        probs.append(a)
        mixed = attn.proj((a @ v).transpose(1, 2).reshape(n, t, c))
        tokens = tokens + block.ls1(mixed)
        tokens = tokens + block.ls2(block.mlp(block.norm2(tokens)))
    return model.forward_head(model.norm(tokens)), probs


def torchvision_attention(model: TorchvisionViT, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The same for torchvision's ViT: softmax(Q Kᵀ / √d) from each MultiheadAttention's in_proj_weight."""
    tokens = model._process_input(x)
    tokens = torch.cat([model.class_token.expand(len(x), -1, -1), tokens], dim=1) + model.encoder.pos_embedding
    probs = []
    for layer in model.encoder.layers:
        mha, hidden = layer.self_attention, layer.ln_1(tokens)
        n, t, c = hidden.shape
        heads, d = mha.num_heads, c // mha.num_heads
        q, k, v = (
            (hidden @ w.T + b).reshape(n, t, heads, d).transpose(1, 2)
            for w, b in zip(mha.in_proj_weight.chunk(3), mha.in_proj_bias.chunk(3))
        )
        a = (q @ k.transpose(-2, -1) / d**0.5).softmax(dim=-1)
        probs.append(a)
        tokens = tokens + mha.out_proj((a @ v).transpose(1, 2).reshape(n, t, c))
        tokens = tokens + layer.mlp(layer.ln_2(tokens))
    return model.heads(model.encoder.ln(tokens)[:, 0]), probs


def reference(model: nn.Module, x: torch.Tensor, targets: list[int], grads: bool):
    """Per image, the attention matrices as numpy arrays and (with `grads`) d logit_target / d them."""
    forward = timm_attention if isinstance(model, VisionTransformer) else torchvision_attention
    with torch.enable_grad():
        logits, probs = forward(model, x)
        assert torch.allclose(logits, model(x), atol=1e-5)  # the hand-written pass is the model's
        gradients = torch.autograd.grad(logits[range(len(x)), targets].sum(), probs) if grads else probs
    return [p.detach().numpy() for p in probs], [g.detach().numpy() for g in gradients]


def rollout_reference(probs: list[np.ndarray], i: int, discard: float = 0.0, fusion: str = "mean") -> np.ndarray:
    """Abnar & Zuidema's rollout from the class token, written as plain loops."""
    t = probs[0].shape[-1]
    rolled = np.eye(t)
    for block in probs:
        fused = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](block[i], axis=0).astype(np.float64)
        if discard:
            others = [(r, c) for r in range(t) for c in range(1, t)]  # attention to the class token is kept
            weakest = sorted(others, key=lambda rc: fused[rc])[: int(discard * len(others))]
            for r, c in weakest:
                fused[r, c] = 0.0
        mixed = (fused + np.eye(t)) / 2
        mixed /= mixed.sum(axis=1, keepdims=True)
        rolled = mixed @ rolled
    side = round((t - 1) ** 0.5)
    return rolled[0, 1:].reshape(side, side)


def grad_rollout_reference(probs: list[np.ndarray], grads: list[np.ndarray], i: int) -> np.ndarray:
    """Chefer et al.'s rule R ← R + mean_heads((∇A ⊙ A)⁺) R from R = I, written as plain loops."""
    t = probs[0].shape[-1]
    rolled = np.eye(t)
    for a, g in zip(probs, grads):
        weighted = np.maximum(g[i] * a[i], 0).mean(axis=0)
        rolled = rolled + weighted @ rolled
    side = round((t - 1) ** 0.5)
    return rolled[0, 1:].reshape(side, side)


@pytest.mark.parametrize("build", [tiny_timm, tiny_torchvision], ids=["timm", "torchvision"])
def test_both_methods_equal_plain_references(build):
    model, x, targets = build(), pictures(), [3, 1]
    explainer = Explainer(bundle_of(model))
    with leaves_model_untouched(model):
        results = explainer.explain_batch(x, targets=targets, methods=["attention_rollout", "grad_rollout"])
    probs, grads = reference(model, x, targets, grads=True)
    for i, result in enumerate(results):
        rollout, weighted = result["attention_rollout"], result["grad_rollout"]
        assert rollout.raw.shape == (4, 4) and rollout.map.shape == (32, 32)
        np.testing.assert_allclose(rollout.raw, rollout_reference(probs, i), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(weighted.raw, grad_rollout_reference(probs, grads, i), rtol=1e-4, atol=1e-7)
        assert 0 <= rollout.map.min() and rollout.map.max() <= 1
        for method in (rollout, weighted):  # the values shown on hover and on a shared scale come from `raw`
            values = scale.magnitude(method.raw, method.map)
            low, high = values.min(), values.max()
            assert np.abs((values - low) / (high - low) - method.map).max() < 0.02
    # the gradient-weighted map depends on the class, the plain rollout does not
    other = explainer.explain_batch(x, targets=[0, 4], methods=["attention_rollout", "grad_rollout"])
    assert np.array_equal(other[0]["attention_rollout"].raw, results[0]["attention_rollout"].raw)
    assert not np.allclose(other[0]["grad_rollout"].raw, results[0]["grad_rollout"].raw)


def test_discard_ratio_and_head_fusion_follow_the_reference():
    model, x = tiny_timm(seed=2), pictures(seed=3, n=1)
    options = {"attention_rollout": {"discard_ratio": 0.5, "head_fusion": 1}}
    result = Explainer(bundle_of(model)).explain_batch(x, methods=["attention_rollout"], options=options)[0]
    probs, _ = reference(model, x, [0], grads=False)
    expected = rollout_reference(probs, 0, discard=0.5, fusion="max")
    np.testing.assert_allclose(result["attention_rollout"].raw, expected, rtol=1e-4, atol=1e-6)
    assert not np.allclose(expected, rollout_reference(probs, 0))  # the options change the map
    assert result["attention_rollout"].meta["head_fusion"] == "max"


def test_options_out_of_bounds_are_refused_with_a_sentence():
    explainer = Explainer(bundle_of(tiny_timm()))
    with pytest.raises(Exception, match="discard_ratio' may be at most 0.99"):
        explainer.explain_batch(
            pictures(), methods=["attention_rollout"], options={"attention_rollout": {"discard_ratio": 1}}
        )


def test_vit_tiny_maps_cover_its_14_by_14_patch_grid(cat):
    bundle = load_model("timm:vit_tiny_patch16_224", "random")
    explanation = Explainer(bundle).explain(cat, methods=["attention_rollout", "grad_rollout"])
    for method in ("attention_rollout", "grad_rollout"):
        assert explanation[method].raw.shape == (14, 14)
        assert explanation[method].map.shape == (224, 224)
        assert explanation[method].meta["blocks"] == 12
    assert all(block.attn.fused_attn for block in bundle.module.blocks)
    assert count_hooks(bundle.module) == 0


def test_prefix_tokens_are_left_out_of_the_map():
    """Four register tokens besides the class token: the map is still the 4×4 patch grid."""
    model = tiny_timm(reg_tokens=4)
    assert model.num_prefix_tokens == 5
    result = Explainer(bundle_of(model)).explain_batch(pictures(n=1), methods=["attention_rollout"])[0]
    assert result["attention_rollout"].raw.shape == (4, 4)


def test_fused_attention_is_restored_after_success_and_after_an_error_mid_pass():
    model = tiny_timm()
    model.blocks[0].attn.fused_attn = False  # a block's own setting is kept as it was
    before = [block.attn.fused_attn for block in model.blocks]
    assert before == [False, True, True]
    explainer = Explainer(bundle_of(model))
    with leaves_model_untouched(model):
        explainer.explain_batch(pictures(), methods=["grad_rollout"])
    assert [block.attn.fused_attn for block in model.blocks] == before

    original = model.blocks[2].mlp.forward

    def broken(tokens: torch.Tensor) -> torch.Tensor:
        if model.blocks[2].attn.fused_attn:  # the plain pass runs; the attention pass fails halfway
            return original(tokens)
        raise RuntimeError("out of memory")

    model.blocks[2].mlp.forward = broken
    try:
        with leaves_model_untouched(model), pytest.raises(ModelError, match="out of memory"):
            explainer.explain_batch(pictures(seed=5), methods=["attention_rollout"])
    finally:
        del model.blocks[2].mlp.forward
    assert [block.attn.fused_attn for block in model.blocks] == before
    assert "fused_attn" in model.blocks[0].attn.__dict__ and "fused_attn" in model.blocks[1].attn.__dict__


class WindowAttention(nn.Module):
    """An attention the engine does not know."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Attention(nn.Module):
    """Named like timm's, but not timm's (BEiT's is such a class): the engine does not read it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_a_cnn_and_an_unknown_attention_get_a_sentence(tiny_bundle, tiny_image):
    explanation = Explainer(tiny_bundle).explain(tiny_image, methods=["attention_rollout", "grad_rollout"])
    for method in ("attention_rollout", "grad_rollout"):
        assert explanation[method].reason == (
            "This model has no attention layers, so there is no attention to follow; the other methods work on it."
        )
    module = nn.Sequential(make_tiny_bundle().module, WindowAttention()).eval()
    explanation = Explainer(make_tiny_bundle(module)).explain(tiny_image, methods=["grad_rollout", "gradcam"])
    assert "WindowAttention" in explanation["grad_rollout"].reason
    assert explanation["gradcam"].applicable
    module = nn.Sequential(make_tiny_bundle().module, Attention()).eval()
    explanation = Explainer(make_tiny_bundle(module)).explain(tiny_image, methods=["attention_rollout"])
    assert explanation["attention_rollout"].reason.startswith(
        "This model's attention (Attention) is not one the engine can read"
    )
    vit_with_an_attention_pool = tiny_timm(global_pool="map", class_token=False)  # the pool's attention is unread
    explanation = Explainer(bundle_of(vit_with_an_attention_pool)).explain(tiny_image, methods=["grad_rollout"])
    assert "(AttentionPoolLatent) is not one the engine can read" in explanation["grad_rollout"].reason
    refused = Explainer(make_tiny_bundle(module)).refusals(tiny_image)
    assert {"attention_rollout", "grad_rollout"} <= set(refused) and "gradcam" not in refused


@pytest.mark.usefixtures("fresh_caches")
def test_explore_offers_them_only_for_models_with_attention(tiny_bundle, tiny_image):
    refused_cnn = result_cache.refused_methods("cnn", "tiny", Explainer(tiny_bundle), tiny_image)
    assert {"attention_rollout", "grad_rollout"} <= set(refused_cnn)
    assert "attention_rollout" not in controls.offered_extras(refused_cnn)
    assert "gradcam++" in controls.offered_extras(refused_cnn)
    vit = bundle_of(tiny_timm())
    refused_vit = result_cache.refused_methods("vit", "vit", Explainer(vit), tiny_image)
    assert {"attention_rollout", "grad_rollout"} <= set(controls.offered_extras(refused_vit))


@pytest.mark.usefixtures("fresh_caches")
def test_the_dashboard_offers_and_draws_them_for_a_vision_transformer_only():
    def pills(at: AppTest):
        return next(g for g in at.get("button_group") if g.key == state.widget(state.EXTRA_METHODS))

    at = AppTest.from_file(EXPLORE, default_timeout=120).run()  # the default CNN
    assert not at.exception and "Attention rollout" not in pills(at).options
    at = AppTest.from_file(EXPLORE, default_timeout=120)
    at.session_state[state.MODEL] = "timm:vit_tiny_patch16_224"
    at.session_state[state.WEIGHTS] = "random"
    at.run()
    assert not at.exception and {"Attention rollout", "Gradient-weighted rollout"} <= set(pills(at).options)
    pills(at).set_value(["attention_rollout", "grad_rollout"]).run()
    assert not at.exception and not at.error
    titles = {m.value.strip("*") for m in at.markdown if m.value.startswith("**") and m.value.endswith("**")}
    assert {"Attention rollout", "Gradient-weighted rollout"} <= titles
    assert any(c.value.startswith("12 attention blocks over 14×14 patches") for c in at.caption)
