"""What a layer computes (feature maps) and what it has learned (kernels)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Method, MethodInputs, MethodResult, normalize, register_method, to_numpy, upsample


@register_method
class FeatureMaps(Method):
    """The layer's output channels A_k (N, C, h, w) for this image — the article's "layer outputs".

    `raw` holds every channel at native resolution; `map` the `n_channels` channels with the highest mean
    activation (or the first ones with `sort=False`), each normalised to [0, 1] and upsampled to the input.
    Options: `n_channels` (default 16), `sort` (default True), `shared_scale` (default False: per channel).
    """

    name = "feature_maps"
    title = "Feature maps"
    summary = "What each filter of this layer responds to in your picture: bright where the filter fires."
    paper = "https://arxiv.org/abs/1311.2901"
    needs = frozenset({"activation"})

    def compute(self, inputs: MethodInputs) -> MethodResult:
        activation = inputs.activation
        means = activation.mean(dim=(1, 2))
        order = torch.argsort(means, descending=True) if inputs.options.get("sort", True) else torch.arange(len(means))
        chosen = order[: int(inputs.options.get("n_channels", 16))]
        picked = activation[chosen]
        if inputs.options.get("shared_scale", False):
            scaled = normalize(picked)
        else:
            scaled = torch.stack([normalize(channel) for channel in picked])
        return MethodResult(
            method=self.name,
            layer=inputs.layer,
            map=to_numpy(upsample(scaled, inputs.input_size).clamp(0, 1)),
            raw=to_numpy(activation),
            meta={"channels": chosen.tolist(), "channel_means": means[chosen].tolist(), "n_total": len(means), **inputs.meta},
        )


@register_method
class Kernels(Method):
    """The learned weights W (out, in, kh, kw) of a convolution. `map` is (out, kh, kw, 3) RGB patches when
    the layer sees 3 channels (the first layer), else (out, kh, kw) averaged over input channels; each
    patch min-max normalised, as in the article's first-layer filter grids."""

    name = "kernels"
    title = "Kernels"
    summary = "The filters this convolution has learned; in the first layer they are small colour patterns such as edges and blobs."
    paper = "https://arxiv.org/abs/1311.2901"
    needs = frozenset({"module"})

    def compute(self, inputs: MethodInputs) -> MethodResult:
        module = inputs.module
        if not isinstance(module, nn.Conv2d):
            return MethodResult.not_applicable(
                self.name, f"'{inputs.layer}' is not a convolution, so it has no kernels to show; pick a Conv2d layer.", inputs.layer
            )
        weight = module.weight.detach().float().cpu()
        if weight.shape[1] == 3:
            patches = torch.stack([normalize(kernel) for kernel in weight]).permute(0, 2, 3, 1)
        else:
            patches = torch.stack([normalize(kernel.mean(dim=0)) for kernel in weight])
        return MethodResult(
            method=self.name,
            layer=inputs.layer,
            map=to_numpy(patches),
            raw=to_numpy(weight),
            meta={"rgb": weight.shape[1] == 3, "shape": tuple(weight.shape), "groups": module.groups},
        )
