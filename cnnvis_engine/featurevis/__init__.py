"""What a channel looks for: feature visualisation by activation maximisation (Olah et al., Distill 2017) and
DeepDream. Pure torch/numpy; re-exports only.

    from cnnvis_engine.featurevis import visualize, render_channels, deepdream, channel
    result = visualize(bundle, channel("blocks.4", 7), size=128, steps=256, seed=0)   # result.image: (H, W, 3) uint8
    gallery = render_channels(bundle, "blocks.4", 8, size=64, steps=64, progress=on_step)
    dream = deepdream(bundle, photo, "blocks.3", octaves=3, steps=10)
"""

from .dream import deepdream
from .objectives import (
    Objective,
    channel,
    channel_difference,
    channels_per_image,
    class_logit,
    diversity,
    neuron,
    squared_norm,
)
from .optimize import channel_count, evaluate, render_channels, visualize
from .param import FourierImage
from .results import Cancelled, FeatureVisResult, FeatureVisSettings
from .transforms import TransformSettings

__all__ = [
    "Cancelled",
    "FeatureVisResult",
    "FeatureVisSettings",
    "FourierImage",
    "Objective",
    "TransformSettings",
    "channel",
    "channel_count",
    "channel_difference",
    "channels_per_image",
    "class_logit",
    "deepdream",
    "diversity",
    "evaluate",
    "neuron",
    "render_channels",
    "squared_norm",
    "visualize",
]
