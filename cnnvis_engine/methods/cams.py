"""Class activation maps: CAM, Grad-CAM and guided Grad-CAM."""

from __future__ import annotations

import torch

from .base import Method, MethodInputs, MethodResult, gradient_rgb, normalize, register_method, to_numpy, upsample


@register_method
class CAM(Method):
    """Class Activation Mapping (Zhou et al. 2016) where global average pooling feeds one Linear layer:
    raw = Σ_k w_ck · A_k at the pool's input, so mean(raw) + b_c equals the logit of class c.
    `raw` (h, w) is signed; `map` is it upsampled and min-max normalised."""

    name = "cam"
    title = "CAM"
    summary = "The class's own weights laid back over the last feature maps: where the evidence for this class sits."
    paper = "https://arxiv.org/abs/1512.04150"
    needs = frozenset({"cam"})
    uses_layer = False

    def compute(self, inputs: MethodInputs) -> MethodResult:
        raw = torch.einsum("c,chw->hw", inputs.cam_weights, inputs.activation)
        return MethodResult(
            method=self.name,
            layer=inputs.layer,
            map=to_numpy(normalize(upsample(raw, inputs.input_size))),
            raw=to_numpy(raw),
            meta={"bias": inputs.cam_bias, **inputs.meta},
        )


def gradcam(inputs: MethodInputs) -> torch.Tensor:
    """Grad-CAM's raw (h, w) map: ReLU(Σ_k w_k A_k) with w_k the spatial mean of d score / d A_k."""
    weights = inputs.layer_gradient.mean(dim=(1, 2))
    return torch.relu(torch.einsum("c,chw->hw", weights, inputs.activation))


@register_method
class GradCAM(Method):
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij d score / d A_k[i, j]; raw = ReLU(Σ_k w_k A_k) (h, w);
    `map` is raw upsampled bilinearly to the input and min-max normalised."""

    name = "gradcam"
    title = "Grad-CAM"
    summary = "Where in the picture this layer found evidence for the chosen class."
    paper = "https://arxiv.org/abs/1610.02391"
    needs = frozenset({"activation", "layer_gradient"})

    def compute(self, inputs: MethodInputs) -> MethodResult:
        raw = gradcam(inputs)
        return MethodResult(
            method=self.name,
            layer=inputs.layer,
            map=to_numpy(normalize(upsample(raw, inputs.input_size))),
            raw=to_numpy(raw),
            meta={"flat": bool(raw.max() <= raw.min()), **inputs.meta},
        )


@register_method
class GuidedGradCAM(Method):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop (3, H, W) × Grad-CAM upsampled to (H, W)."""

    name = "guided_gradcam"
    title = "Guided Grad-CAM"
    summary = "Guided backprop's sharp edges, kept only where Grad-CAM says the class evidence is."
    paper = "https://arxiv.org/abs/1610.02391"
    needs = frozenset({"activation", "layer_gradient", "guided_input_gradient"})

    def compute(self, inputs: MethodInputs) -> MethodResult:
        mask = normalize(upsample(gradcam(inputs), inputs.input_size))
        raw = inputs.guided_input_gradient * mask
        return MethodResult(
            method=self.name,
            layer=inputs.layer,
            map=to_numpy(normalize(raw.abs().amax(dim=0))),
            raw=to_numpy(raw),
            rgb=gradient_rgb(raw),
            meta=dict(inputs.meta),
        )
