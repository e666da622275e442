"""Class activation maps: CAM, Grad-CAM and guided Grad-CAM."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..targets import ClassTarget, RegressionTarget, Target
from ..tracing import Trace
from .base import (
    Method,
    MethodInputs,
    MethodOutput,
    MethodResult,
    captured,
    gradient_rgb,
    normalize,
    register_method,
    upsample,
    where,
)


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
    layer = "cam_site"

    @classmethod
    def refuses(cls, trace: Trace, targets: Sequence[Target]) -> str:
        if trace.cam_site is None:
            return trace.cam_reason
        if not all(isinstance(t, (ClassTarget, RegressionTarget)) for t in targets):
            return "CAM weighs feature maps by one output's Linear weights, so it explains classes and outputs, not segmentation regions."
        return ""

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        raw = torch.einsum("nc,nchw->nhw", inputs.cam_weights, inputs.activation)
        return MethodOutput(
            map=normalize(upsample(raw, inputs.input_size)),
            raw=raw,
            meta=dict(inputs.meta),
            sample_meta={"bias": captured(inputs.cam_bias, "cam").tolist()},
        )


def gradcam(inputs: MethodInputs) -> torch.Tensor:
    """Grad-CAM's raw (N, h, w) maps: ReLU(Σ_k w_k A_k) with w_k the spatial mean of d score / d A_k."""
    weights = captured(inputs.layer_gradient, "layer_gradient").mean(dim=(2, 3))
    return torch.relu(torch.einsum("nc,nchw->nhw", weights, captured(inputs.activation, "activation")))


@register_method
class GradCAM(Method):
    """Grad-CAM (Selvaraju et al. 2017): w_k = mean_ij d score / d A_k[i, j]; raw = ReLU(Σ_k w_k A_k) (h, w);
    `map` is raw upsampled bilinearly to the input and min-max normalised."""

    name = "gradcam"
    title = "Grad-CAM"
    summary = "Where in the picture this layer found evidence for the chosen class."
    paper = "https://arxiv.org/abs/1610.02391"
    needs = frozenset({"activation", "layer_gradient"})

    @classmethod
    def note(cls, result: MethodResult) -> str:
        if not result.meta.get("flat"):
            return ""
        return "Zero everywhere: at this layer nothing speaks for this class; try another layer or class."

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        raw = gradcam(inputs)
        flat = (raw.flatten(1).amax(dim=1) <= raw.flatten(1).amin(dim=1)).tolist()
        return MethodOutput(
            map=normalize(upsample(raw, inputs.input_size)), raw=raw, meta=dict(inputs.meta), sample_meta={"flat": flat}
        )


@register_method
class GuidedGradCAM(Method):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop (3, H, W) × Grad-CAM upsampled to (H, W)."""

    name = "guided_gradcam"
    follows_edges = True
    title = "Guided Grad-CAM"
    summary = "Guided backprop's sharp edges, kept only where Grad-CAM says the class evidence is."
    paper = "https://arxiv.org/abs/1610.02391"
    needs = frozenset({"activation", "layer_gradient", "guided_input_gradient"})
    drawing = "rgb"
    legend = None  # grey is zero; colour shows the sign per channel
    hover = "max |value|"

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        return f"{where(result)} · {target}, grey = 0"

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        mask = normalize(upsample(gradcam(inputs), inputs.input_size))
        raw = captured(inputs.guided_input_gradient, "guided_input_gradient") * mask[:, None]
        return MethodOutput(
            map=normalize(raw.abs().amax(dim=1)), raw=raw, rgb=gradient_rgb(raw), meta=dict(inputs.meta)
        )
