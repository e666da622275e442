"""Input-gradient maps: vanilla saliency and guided backpropagation."""

from __future__ import annotations

from .base import Method, MethodInputs, MethodOutput, MethodResult, captured, gradient_rgb, normalize, register_method

SATURATED_END = "1: the top 1%"  # the end of a heat map stretched to its 99th percentile (render.stretched)


@register_method
class Saliency(Method):
    """Vanilla saliency (Simonyan et al. 2013): raw = max_c |d score / d x_c|, (H, W) at the input
    resolution; `map` is it min-max normalised."""

    name = "saliency"
    title = "Saliency"
    panel_title = "Saliency (vanilla)"
    summary = "Which pixels would change the score most if they changed a little."
    paper = "https://arxiv.org/abs/1312.6034"
    needs = frozenset({"input_gradient"})
    layer = "none"
    drawing = "heatmap"
    legend = ("0: no effect", SATURATED_END)
    hover = "|gradient|"

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        return f"how strongly each pixel sways the score of {target} · the brightest 1% at full colour"

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        raw = captured(inputs.input_gradient, "input_gradient").abs().amax(dim=1)
        return MethodOutput(map=normalize(raw), raw=raw)


@register_method
class GuidedBackprop(Method):
    """Guided backpropagation (Springenberg et al. 2015): at every ReLU, R_in = 1[x > 0]·1[R_out > 0]·R_out.
    `raw` is the signed (3, H, W) gradient; `map` its max-abs over channels; `rgb` the usual colour picture.
    meta["unguided"] lists activations left as they are (SiLU, Hardswish, functional calls)."""

    name = "guided_backprop"
    follows_edges = True
    title = "Guided backprop"
    panel_title = "Saliency (guided backprop)"
    summary = "Saliency that only lets positive evidence flow back, so the picture shows crisp object edges."
    paper = "https://arxiv.org/abs/1412.6806"
    needs = frozenset({"guided_input_gradient"})
    layer = "none"
    drawing = "rgb"
    legend = None  # grey is zero; colour shows the gradient's sign per channel
    hover = "max |guided gradient|"

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        return f"guided gradient for {target}, grey = 0"

    @classmethod
    def note(cls, result: MethodResult) -> str:
        unguided = result.meta.get("unguided") or ()
        if not unguided:
            return ""
        return f"Not guided (left as they are): {', '.join(unguided[:4])}{' …' if len(unguided) > 4 else ''}."

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        gradient = captured(inputs.guided_input_gradient, "guided_input_gradient")
        return MethodOutput(
            map=normalize(gradient.abs().amax(dim=1)), raw=gradient, rgb=gradient_rgb(gradient), meta=dict(inputs.meta)
        )
