"""The attention probabilities of a vision transformer, read where the model computes them, for the attention
methods (`methods.rollout`).

Two attentions are known:
- timm's `Attention` (ViT, DeiT, BEiT-free ViT variants): it materialises softmax(q kᵀ · scale) only with its
  `fused_attn` instance attribute off, so the pass switches it off (`hooks.unfused_attention`, restored on exit)
  and records the output of its `attn_drop` (an identity in eval mode), attached to the autograd graph.
- torchvision's `EncoderBlock` calls `nn.MultiheadAttention(x, x, x, need_weights=False)`, so the probabilities
  never exist: they are recomputed as softmax(Q Kᵀ / √d) from the module's own `in_proj_weight` on its recorded
  input. Their gradient is d score / d (the attention's output, recorded at the block's `dropout`, an identity in
  eval mode) carried back through out_proj(A · V), which is how A enters the network.
Any other module whose class name says attention is one the engine does not know how to read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .errors import MethodError
from .hooks import ModuleCall, capture, unfused_attention

if TYPE_CHECKING:
    from .models.bundle import ModelBundle

TIMM_ATTENTION = ("timm.layers.attention", "Attention")
TORCHVISION_BLOCK = ("torchvision.models.vision_transformer", "EncoderBlock")
KNOWN_KINDS = frozenset({"Attention", "MultiheadAttention"})


@dataclass(frozen=True)
class Site:
    """One self-attention whose probabilities can be had: timm's (`probs` names its `attn_drop`) or torchvision's
    (`module` the MultiheadAttention, `out` names the block's dropout that receives its output)."""

    name: str
    module: nn.Module
    probs: str
    out: str = ""

    def multihead(self) -> nn.MultiheadAttention:
        """torchvision's attention module (a site with `out`)."""
        if not isinstance(self.module, nn.MultiheadAttention):
            raise MethodError(f"The attention at '{self.name}' is not one the engine can read.")
        return self.module


@dataclass
class AttentionRecord:
    """The attention of every block of one pass over N images, in block order.
    `probs`: (N, heads, T, T) softmax probabilities per block; `gradients`: d score / d probs, the same shapes
    (None unless asked for). Of the T tokens the first `prefix` are the model's prefix tokens (class,
    distillation, registers); the rest are the (h, w) = `grid` patches, row-major. `query` names the token rows
    whose attention stands for the prediction: the class token (and distillation token), or all patch rows for a
    model that pools its patch tokens."""

    probs: list[torch.Tensor]
    gradients: list[torch.Tensor] | None
    prefix: int
    grid: tuple[int, int]
    query: tuple[int, ...]


def _is(module: nn.Module, where: tuple[str, str]) -> bool:
    """Exactly that class (a subclass may compute its attention another way)."""
    return (type(module).__module__, type(module).__name__) == where


def sites(model: nn.Module) -> list[Site]:
    """The model's known self-attentions, in module order."""
    found = []
    for name, module in model.named_modules():
        if _is(module, TIMM_ATTENTION) and hasattr(module, "fused_attn"):
            found.append(Site(name, module, f"{name}.attn_drop"))
        elif _is(module, TORCHVISION_BLOCK):
            attention = module.self_attention
            if (
                attention.batch_first
                and attention._qkv_same_embed_dim
                and attention.bias_k is None
                and not attention.add_zero_attn
            ):
                found.append(Site(f"{name}.self_attention", attention, f"{name}.self_attention", f"{name}.dropout"))
    return found


def support(kinds: Iterable[str]) -> str:
    """Why the attention methods cannot run on a model whose traced layers are of these `kinds` (class names);
    empty when they can."""
    kinds = set(kinds)
    if kinds & KNOWN_KINDS:
        return ""
    return _refusal(sorted(kind for kind in kinds if "attention" in kind.lower()))


def _refusal(unknown: list[str]) -> str:
    if unknown:
        return (
            f"This model's attention ({', '.join(unknown[:3])}) is not one the engine can read the attention "
            "weights of; it reads timm's ViT-style Attention and torchvision's ViT."
        )
    return "This model has no attention layers, so there is no attention to follow; the other methods work on it."


def refusal(model: nn.Module) -> str:
    """Why the attention methods cannot run on `model` (empty when they can), read from the modules themselves: a
    class merely called `Attention` (BEiT's, or your own) is not timm's, and a model with any attention the engine
    cannot read (a latent attention pool after the blocks, say) is refused whole: its rollout would skip it."""
    found = {id(site.module) for site in sites(model)}
    unknown = {
        type(m).__name__ for m in model.modules() if "attention" in type(m).__name__.lower() and id(m) not in found
    }
    if found and not unknown:
        return ""
    return _refusal(sorted(unknown))


def record(
    bundle: ModelBundle, x: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> AttentionRecord:
    """One forward pass of x (N, 3, H, W) with every known attention's probabilities recorded, and, if `score`
    (model output -> a scalar) is given, their gradients. Raises a MethodError when the model has none."""
    model = bundle.module
    reason = refusal(model)
    if reason:
        raise MethodError(reason)
    found = sites(model)
    timm = [site.module for site in found if site.out == ""]
    names = {site.probs for site in found} | {site.out for site in found if site.out}
    x = x.detach()
    with bundle.lock, torch.set_grad_enabled(score is not None):
        with unfused_attention(timm), capture(model, only=names) as recorded:
            output = bundle.run(x, failed_on="this image", fast=False)
        calls = {call.name: call for call in recorded.calls}  # each attention runs once per pass
        missing = [site.name for site in found if site.probs not in calls or (site.out and site.out not in calls)]
        if missing:
            raise MethodError(
                f"The attention '{missing[0]}' did not run on this picture, so there is nothing to follow."
            )
        probs = [_probabilities(site, calls[site.probs]) for site in found]
        gradients = None
        if score is not None:
            gradients = _gradients(found, calls, probs, score(output))
    prefix, grid, query = _layout(model, x, probs[0].shape[-1])
    return AttentionRecord([p.detach() for p in probs], gradients, prefix, grid, query)


def _probabilities(site: Site, call: ModuleCall) -> torch.Tensor:
    """(N, heads, T, T) for one site: timm's recorded probabilities, or torchvision's recomputed ones."""
    if not site.out:
        return call.recorded_output()
    q, k, _ = _heads(site.multihead(), call.recorded_input())
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)


def _heads(attention: nn.MultiheadAttention, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v, each (N, heads, T, d), from the MultiheadAttention's packed input projection."""
    n, t, _ = tokens.shape
    projected = F.linear(tokens, attention.in_proj_weight, attention.in_proj_bias)
    return tuple(p.reshape(n, t, attention.num_heads, -1).transpose(1, 2) for p in projected.chunk(3, dim=-1))


def _gradients(
    found: list[Site], calls: dict[str, ModuleCall], probs: list[torch.Tensor], score: torch.Tensor
) -> list[torch.Tensor]:
    """d score / d probs per site. timm's probabilities are on the graph; torchvision's enter it only through
    out_proj(A · V), so the gradient at the attention's output is carried back through that product."""
    sources = [probs[i] if not site.out else calls[site.out].recorded_output() for i, site in enumerate(found)]
    grads = torch.autograd.grad(score, sources, allow_unused=True)
    result = []
    for site, source, grad, p in zip(found, sources, grads, probs):
        grad = torch.zeros_like(source) if grad is None else grad
        if site.out:
            attention = site.multihead()
            _, _, v = _heads(attention, calls[site.probs].recorded_input().detach())
            with torch.enable_grad():
                leaf = p.detach().requires_grad_()
                mixed = (leaf @ v).transpose(1, 2).reshape(grad.shape)
                out = F.linear(mixed, attention.out_proj.weight, attention.out_proj.bias)
                (grad,) = torch.autograd.grad(out, leaf, grad_outputs=grad)
        result.append(grad.detach())
    return result


def _layout(model: nn.Module, x: torch.Tensor, tokens: int) -> tuple[int, tuple[int, int], tuple[int, ...]]:
    """The prefix token count, the patch grid and the query rows, as the model declares them: timm's
    `num_prefix_tokens`, `patch_embed.patch_size` and `global_pool`; torchvision's `patch_size` and its class token."""
    height, width = x.shape[-2:]
    if hasattr(model, "num_prefix_tokens"):  # timm
        prefix = int(getattr(model, "num_prefix_tokens", 0))
        patch: tuple[int, ...] = tuple(getattr(getattr(model, "patch_embed", None), "patch_size", (0, 0)))
        pool = getattr(model, "global_pool", "token")
        distilled = getattr(model, "dist_token", None) is not None
    else:  # torchvision's VisionTransformer
        prefix = 1 if hasattr(model, "class_token") else 0
        patch = (getattr(model, "patch_size", 0),) * 2
        pool, distilled = "token", False
    patches = tokens - prefix
    grid = (height // patch[0], width // patch[1]) if patch[0] and patch[1] else (0, 0)
    if grid[0] * grid[1] != patches:
        side = math.isqrt(patches)
        if side * side != patches:
            raise MethodError(
                f"The attention runs over {tokens} tokens, which the engine cannot lay out as a grid of patches "
                f"of this {height}×{width} picture."
            )
        grid = (side, side)
    query: tuple[int, ...]
    if prefix and pool in ("token", ""):
        query = (0, 1) if distilled and prefix > 1 else (0,)
    else:
        query = tuple(range(prefix, tokens))
    return prefix, grid, query
