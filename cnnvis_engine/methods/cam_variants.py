"""Grad-CAM's successors: Grad-CAM++, XGrad-CAM and Layer-CAM (other uses of the same gradients), Score-CAM
(no gradients: one forward pass per feature map) and Eigen-CAM (no target: the feature maps' first principal
component). Definitions follow pytorch-grad-cam 1.5 exactly, epsilons included, so its maps are our oracle.
Notation: A (N, C, h, w) the layer's activation, g = d score / d A, Σ_ij a sum over the h × w positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, MethodInputs, MethodOutput, MethodResult, captured, normalize, register_method, upsample
from .extra_passes import batch_size, chunks, item_scores


def weighted_map(weights: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """ReLU(Σ_k w_k A_k): (N, C) weights and (N, C, h, w) activations -> (N, h, w)."""
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, activation))


def cam_output(raw: torch.Tensor, inputs: MethodInputs) -> MethodOutput:
    """A CAM's raw (N, h, w) map and its display map: upsampled bilinearly to the input, min-max normalised."""
    return MethodOutput(map=normalize(upsample(raw, inputs.input_size)), raw=raw, meta=dict(inputs.meta))


@register_method
class GradCAMPlusPlus(Method):
    """Grad-CAM++ (Chattopadhay et al. 2018, eq. 19 with the logit's gradient powers, as pytorch-grad-cam):
    α_kij = g²_kij / (2 g²_kij + Σ_ab A_kab · g³_kij + 1e-6), α = 0 where g = 0;
    w_k = Σ_ij α_kij · ReLU(g_kij); raw = ReLU(Σ_k w_k A_k) (h, w)."""

    name = "gradcam++"
    title = "Grad-CAM++"
    summary = "Grad-CAM that weighs each spot's positive evidence, so several objects of the class all light up."
    paper = "https://arxiv.org/abs/1710.11063"
    needs = frozenset({"activation", "layer_gradient"})

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        a, g = captured(inputs.activation, "activation"), captured(inputs.layer_gradient, "layer_gradient")
        g2 = g.pow(2)
        alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g + 1e-6)
        alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
        return cam_output(weighted_map((torch.relu(g) * alpha).sum(dim=(2, 3)), a), inputs)


@register_method
class XGradCAM(Method):
    """XGrad-CAM (Fu et al. 2020): w_k = Σ_ij A_kij / (Σ_ab A_kab + 1e-7) · g_kij; raw = ReLU(Σ_k w_k A_k)."""

    name = "xgradcam"
    title = "XGrad-CAM"
    summary = "Grad-CAM whose channel weights count each gradient as much as its feature map is active there."
    paper = "https://arxiv.org/abs/2008.02312"
    needs = frozenset({"activation", "layer_gradient"})

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        a, g = captured(inputs.activation, "activation"), captured(inputs.layer_gradient, "layer_gradient")
        weights = (g * a / (a.sum(dim=(2, 3), keepdim=True) + 1e-7)).sum(dim=(2, 3))
        return cam_output(weighted_map(weights, a), inputs)


@register_method
class LayerCAM(Method):
    """Layer-CAM (Jiang et al. 2021, IEEE TIP 30:5875): a weight per position, raw = ReLU(Σ_k ReLU(g_k) ⊙ A_k),
    so it stays sharp at early, high-resolution layers."""

    name = "layercam"
    title = "Layer-CAM"
    summary = "Grad-CAM weighted spot by spot instead of per channel: sharp even at early layers."
    paper = "https://ieeexplore.ieee.org/document/9462463"
    needs = frozenset({"activation", "layer_gradient"})

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        a, g = captured(inputs.activation, "activation"), captured(inputs.layer_gradient, "layer_gradient")
        raw = torch.relu((torch.relu(g) * a).sum(dim=1))
        return cam_output(raw, inputs)


@register_method
class ScoreCAM(Method):
    """Score-CAM (Wang et al. 2020), no gradients: each map A_k is upsampled to the input (bilinear,
    align_corners=True) and min-max scaled, M_k = (U_k − min) / (max − min + 1e-8); s_k = score(x ⊙ M_k);
    w = softmax_k(s); raw = ReLU(Σ_k w_k A_k). One forward pass per channel, `internal_batch_size` images at a
    time. An all-zero map gives M_k = 0 exactly, so all of them share one pass on a zero input (same numbers)."""

    name = "scorecam"
    title = "Score-CAM"
    summary = "Shows the network each feature map as a mask over your picture; maps that keep the score count most."
    paper = "https://arxiv.org/abs/1910.01279"
    needs = frozenset({"activation", "forward"})

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        a, x = captured(inputs.activation, "activation"), inputs.x
        forward = captured(inputs.forward, "forward")
        n, c = a.shape[:2]
        active = a.flatten(2).abs().amax(dim=2) > 0
        items = torch.nonzero(active.flatten()).flatten().cpu()  # sample-major (image, channel) pairs
        with torch.no_grad():
            zero_output, _ = forward(torch.zeros_like(x[:1]))
            scores = item_scores(inputs, zero_output.expand(n, *zero_output.shape[1:]), torch.arange(n))
            scores = scores[:, None].repeat(1, c).flatten()
            for chunk in chunks(len(items), batch_size(inputs, grad=False)):
                index = items[chunk].to(a.device)
                maps = a.flatten(0, 1)[index][:, None]
                up = F.interpolate(maps, size=inputs.input_size, mode="bilinear", align_corners=True)
                low, high = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
                output, _ = forward(x[index // c] * ((up - low) / (high - low + 1e-8)))
                scores[index] = item_scores(inputs, output, items[chunk] // c)
        return cam_output(weighted_map(torch.softmax(scores.view(n, c), dim=1), a), inputs)


@register_method
class EigenCAM(Method):
    """Eigen-CAM (Muhammad & Yeasin 2020), no gradients and no target: the channel-centred activations
    X (hw, C) projected on their first right singular vector v₁, raw = X v₁ (h, w), signed. An SVD's sign is
    arbitrary, so raw is flipped where |min| > |max| (pytorch-grad-cam's sign-corrected projection, Seg-Eigen-CAM
    eq. 13); `map` is ReLU(raw) upsampled and normalised, as pytorch-grad-cam shows it."""

    name = "eigencam"
    title = "Eigen-CAM"
    summary = "The strongest common pattern of this layer's feature maps — class-agnostic: the same for every target."
    paper = "https://arxiv.org/abs/2008.00299"
    needs = frozenset({"activation"})

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        return f"{result.layer} · the same for every class"

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        a = captured(inputs.activation, "activation").nan_to_num(0.0).float()
        centred = a.flatten(2).transpose(1, 2)  # (N, hw, C)
        centred = centred - centred.mean(dim=1, keepdim=True)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        raw = (centred @ vh[:, 0, :, None]).view(a.shape[0], *a.shape[2:])
        flip = raw.flatten(1).amin(dim=1).abs() > raw.flatten(1).amax(dim=1).abs()
        raw = torch.where(flip[:, None, None], -raw, raw)
        return MethodOutput(
            map=normalize(upsample(torch.relu(raw), inputs.input_size)), raw=raw, meta=dict(inputs.meta)
        )
