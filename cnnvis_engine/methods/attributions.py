"""Gradients averaged over many inputs: Integrated Gradients (along a path from a baseline) and SmoothGrad
(over noisy copies), for saliency and for Grad-CAM. Each runs its own forward/backward passes through
`inputs.forward`, `internal_batch_size` images at a time, all images of the batch together.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import MethodError
from .base import (
    Method,
    MethodInputs,
    MethodOutput,
    MethodResult,
    Option,
    captured,
    gradient_rgb,
    normalize,
    register_method,
    upsample,
)
from .extra_passes import batch_size, chunks, item_scores, noisy_items, seeded_noise
from .gradients import SATURATED_END

# Bounds on the work of one call. Gauss-Legendre nodes cost O(steps³) to compute (1024: 0.1 s, 20000: ~30 min)
# and each step is a forward and backward pass; SmoothGrad draws all its noise up front: 256 samples of a
# 3×224×224 input are 154 MB (12000 were 7.2 GB).
MAX_STEPS = 1024
MAX_SAMPLES = 256
BASELINES = (-10.0, 10.0)  # the dashboard's baselines: normalised ImageNet pixels lie within ±2.7


@register_method
class IntegratedGradients(Method):
    """Integrated Gradients (Sundararajan et al. 2017): raw (3, H, W) = (x − x') ⊙ ∫₀¹ ∂score/∂x (x' + α(x − x')) dα,
    the integral by `steps` (50) points of Gauss–Legendre quadrature (captum's default). The baseline x' is the
    constant `baseline` (0.0) in the model's normalised input space — for ImageNet normalisation that is the
    mean colour, not black. meta["delta"] = Σ raw − (score(x) − score(x')): near 0 when `steps` suffice.
    `map` is |Σ_c raw_c| normalised; `rgb` the signed picture."""

    name = "integrated_gradients"
    follows_edges = True
    title = "Integrated Gradients"
    summary = "Adds up the gradients along a fade from a plain grey picture to yours: each pixel's share of the score."
    paper = "https://arxiv.org/abs/1703.01365"
    needs = frozenset({"forward"})
    layer = "none"
    drawing = "heatmap"
    options = (
        Option("steps", 50, "points along the path", high=MAX_STEPS, quick=20),
        Option(
            "baseline",
            0.0,
            "the plain picture's value (normalised input)",
            low=-np.inf,
            kind=float,
            dashboard=BASELINES,
        ),
    )
    legend = ("0: no share", SATURATED_END)
    hover = "attribution"

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        return (
            f"each pixel's share of the score of {target}, over {result.meta['steps']} steps from a plain picture · "
            f"the brightest 1% at full colour · the shares add up to the score change within {result.meta['delta']:.2g}"
        )

    @staticmethod
    def hover_values(raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw.sum(axis=0))

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        x, steps = inputs.x, int(self.setting(inputs, "steps"))
        forward = captured(inputs.forward, "forward")
        baseline = torch.full_like(x, self.setting(inputs, "baseline"))
        nodes, gauss = np.polynomial.legendre.leggauss(steps)
        alphas = torch.tensor(0.5 * (1 + nodes), dtype=x.dtype, device=x.device)
        weights = torch.tensor(0.5 * gauss, dtype=x.dtype, device=x.device)
        total = torch.zeros_like(x)
        for chunk in chunks(len(x) * steps, batch_size(inputs, grad=True)):
            owners, step = (chunk // steps).to(x.device), (chunk % steps).to(x.device)
            path = baseline[owners] + alphas[step].view(-1, 1, 1, 1) * (x - baseline)[owners]
            with torch.enable_grad():
                path.requires_grad_(True)
                output, _ = forward(path)
                weighted = item_scores(inputs, output, chunk // steps) * weights[step]
                (grad,) = torch.autograd.grad(weighted.sum(), path)
            total.index_add_(0, owners, grad)
        raw = (x - baseline) * total
        with torch.no_grad():  # the baseline is one constant picture for all images: one pass scores it
            at_baseline, _ = forward(baseline[:1])
            at_baseline = inputs.scores(at_baseline.expand(len(x), *at_baseline.shape[1:]))
            at_x = inputs.scores(inputs.output) if inputs.output is not None else inputs.scores(forward(x)[0])
        delta = raw.flatten(1).sum(dim=1) - (at_x - at_baseline)
        return MethodOutput(
            map=normalize(raw.sum(dim=1).abs()),
            raw=raw,
            rgb=gradient_rgb(raw),
            meta={"steps": steps},
            sample_meta={"delta": delta.tolist()},
        )


@register_method
class SmoothGrad(Method):
    """SmoothGrad over saliency (Smilkov et al. 2017): raw = 1/n Σ_i |∂score/∂x (x + σ ε_i)|, (3, H, W), with
    n = `samples` (25), ε_i ~ N(0, I) drawn from `seed` (0) and σ = `noise` (0.15) × (max − min of the input
    tensor) — what captum's NoiseTunnel(Saliency) computes for the same noise. `map` is max_c raw normalised."""

    name = "smoothgrad"
    follows_edges = True
    title = "SmoothGrad"
    summary = "Saliency averaged over many slightly noisy copies of your picture, so the speckle cancels out."
    paper = "https://arxiv.org/abs/1706.03825"
    needs = frozenset({"forward"})
    layer = "none"
    drawing = "heatmap"
    options = (Option("samples", 25, "noisy copies", high=MAX_SAMPLES, quick=15),)
    legend = ("0: no effect", SATURATED_END)
    hover = "mean |gradient|"

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        return (
            f"saliency averaged over {result.meta['samples']} noisy copies, for {target} · the brightest 1% at full "
            "colour"
        )

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        samples = int(self.setting(inputs, "samples"))
        forward = captured(inputs.forward, "forward")
        epsilon, sigma = seeded_noise(inputs, samples)
        total = torch.zeros_like(inputs.x)
        for chunk in chunks(len(inputs.x) * samples, batch_size(inputs, grad=True)):
            noisy, owners = noisy_items(inputs, epsilon, sigma, chunk)
            with torch.enable_grad():
                noisy.requires_grad_(True)
                output, _ = forward(noisy)
                (grad,) = torch.autograd.grad(item_scores(inputs, output, owners).sum(), noisy)
            total.index_add_(0, owners.to(total.device), grad.abs())
        raw = total / samples
        return MethodOutput(
            map=normalize(raw.amax(dim=1)),
            raw=raw,
            meta={"samples": samples},
            sample_meta={"sigma": sigma.tolist()},
        )


@register_method
class SmoothGradCAM(Method):
    """SmoothGrad over Grad-CAM: raw = 1/n Σ_i GradCAM(x + σ ε_i) (h, w) at the chosen layer, with the noise of
    `smoothgrad` (same `samples`, `noise` and `seed` give the same ε and σ) and Grad-CAM's ReLU(Σ_k w_k A_k) per
    noisy copy — captum's NoiseTunnel(LayerGradCam(relu_attributions=True)) for the same noise."""

    name = "smoothgrad_cam"
    title = "SmoothGrad Grad-CAM"
    summary = "Grad-CAM averaged over noisy copies of your picture: steadier, less blotchy."
    paper = "https://arxiv.org/abs/1706.03825"
    needs = frozenset({"forward"})
    options = (Option("samples", 25, "noisy copies", high=MAX_SAMPLES, quick=15),)

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        return f"{result.layer} · {target} · mean of {result.meta['samples']} noisy copies"

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        samples = int(self.setting(inputs, "samples"))
        forward = captured(inputs.forward, "forward")
        epsilon, sigma = seeded_noise(inputs, samples)
        total = None
        for chunk in chunks(len(inputs.x) * samples, batch_size(inputs, grad=True)):
            noisy, owners = noisy_items(inputs, epsilon, sigma, chunk)
            with torch.enable_grad():
                output, recorded = forward(noisy.requires_grad_(True), layer=inputs.layer)
                activation = captured(recorded, "activation")
                (grad,) = torch.autograd.grad(item_scores(inputs, output, owners).sum(), activation)
            cams = torch.relu(torch.einsum("nc,nchw->nhw", grad.mean(dim=(2, 3)), activation.detach()))
            if total is None:
                total = cams.new_zeros((len(inputs.x), *cams.shape[1:]))
            total.index_add_(0, owners.to(total.device), cams)
        if total is None:
            raise MethodError("SmoothGrad Grad-CAM needs at least one noisy copy.")
        raw = total / samples
        return MethodOutput(
            map=normalize(upsample(raw, inputs.input_size)),
            raw=raw,
            meta={**inputs.meta, "samples": samples},
            sample_meta={"sigma": sigma.tolist()},
        )
