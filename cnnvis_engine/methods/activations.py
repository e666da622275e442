"""What a layer computes (feature maps) and what it has learned (kernels)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import Method, MethodInputs, MethodOutput, MethodResult, captured, normalize, register_method, upsample


@register_method
class FeatureMaps(Method):
    """The layer's output channels A_k (N, C, h, w) for this image — the article's "layer outputs".

    `raw` holds every channel at native resolution; `map` the `n_channels` channels with the highest mean
    activation (or the first ones with `sort=False`), normalised to [0, 1] per channel (or over all shown
    channels with `shared_scale=True`) and upsampled to the input: (K, H, W).
    """

    name = "feature_maps"
    title = "Feature maps"
    summary = "What each filter of this layer responds to in your picture: bright where the filter fires."
    paper = "https://arxiv.org/abs/1311.2901"
    needs = frozenset({"activation"})
    drawing = "grid"
    legend = ("lowest activation", "highest")
    hover = "activation"

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        order = "highest mean activation" if result.meta.get("sorted", True) else "channel order"
        return (
            f"{result.layer} · {len(result.meta['channels'])} of {result.meta['n_total']} channels ({order}) · "
            f"{result.arrays()[1].shape[1]}×{result.arrays()[1].shape[2]} each"
        )

    @staticmethod
    def hover_values(raw: np.ndarray) -> np.ndarray:
        return raw

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        activation = captured(inputs.activation, "activation")
        means = activation.mean(dim=(2, 3))  # (N, C)
        count = min(int(inputs.options.get("n_channels", 16)), activation.shape[1])
        if inputs.options.get("sort", True):
            chosen = means.topk(count, dim=1).indices
        else:
            chosen = torch.arange(count, device=means.device).expand(len(means), count)
        picked = activation.gather(1, chosen[:, :, None, None].expand(-1, -1, *activation.shape[2:]))
        scaled = normalize(picked, dims=3 if inputs.options.get("shared_scale", False) else 2)
        return MethodOutput(
            map=upsample(scaled, inputs.input_size).clamp(0, 1),
            raw=activation,
            meta={"n_total": activation.shape[1], "sorted": bool(inputs.options.get("sort", True)), **inputs.meta},
            sample_meta={"channels": chosen.tolist(), "channel_means": means.gather(1, chosen).tolist()},
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
    layer = "conv"
    drawing = "grid"
    legend = None  # each patch is its own picture
    hover = "weight norm"
    LIMIT = 256  # kernels drawn at most

    @classmethod
    def tiles(cls, result: MethodResult) -> np.ndarray:
        return result.arrays()[0][: cls.LIMIT]

    @staticmethod
    def tile_size(count: int) -> int:
        return max(12, min(48, 384 // math.ceil(math.sqrt(count))))

    @classmethod
    def caption(cls, result: MethodResult, target: str) -> str:
        out, inputs, kh, kw = result.meta["shape"]
        shown = min(out, cls.LIMIT)
        count = f"first {shown} of {out}" if out > shown else f"{out}"
        kind = "RGB patches" if result.meta.get("rgb") else f"averaged over {inputs} input channels"
        return f"{result.layer} · {count} kernels of {kh}×{kw}, {kind}"

    @classmethod
    def hover_values(cls, raw: np.ndarray) -> np.ndarray:
        """One value per kernel: its weights' L2 norm."""
        kernels = raw[: cls.LIMIT]
        return np.asarray(np.sqrt((kernels.reshape(len(kernels), -1) ** 2).sum(axis=1))[:, None, None])

    def compute(self, inputs: MethodInputs) -> MethodOutput:
        module = captured(inputs.module, "module")
        weight = module.get_parameter("weight").detach().float()
        rgb = weight.shape[1] == 3
        patches = normalize(weight, dims=3).permute(0, 2, 3, 1) if rgb else normalize(weight.mean(dim=1), dims=2)
        return MethodOutput(
            map=patches[None],
            raw=weight[None],
            meta={"rgb": rgb, "shape": tuple(weight.shape), "groups": getattr(module, "groups", 1)},
            shared=True,
        )
