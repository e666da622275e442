"""What an uploaded model is fed: input size, channels (RGB or grayscale) and normalisation, from the person's
choice, else what the file or the architecture says, else 224×224 RGB with ImageNet mean and std."""

from __future__ import annotations

import math

from ..errors import ModelFileError
from .bundle import ModelBundle, Normalization
from .onnx_files import OnnxInput

MAX_INPUT_SIDE = 4096
UNIT_SCALING = Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # plain 0–1 scaling: x = rgb / 255


def resolve_preprocessing(
    input_size: tuple[int, int] | None,
    channels: int | None,
    normalization: Normalization | None,
    base: ModelBundle | None = None,
    file_input: OnnxInput | None = None,
) -> tuple[tuple[int, int], Normalization]:
    """`((height, width), normalization)` with one mean and std per input channel. The arguments given win;
    None takes the architecture's (`base`), then the file's static input shape (`file_input`), then the default.
    Raises ModelFileError with a sentence for a size, channel count or normalisation that cannot work."""
    if input_size is None:
        if base is not None:
            input_size = base.input_size
        elif file_input is not None and file_input.height and file_input.width:
            input_size = (file_input.height, file_input.width)
        else:
            input_size = (224, 224)
    height, width = (int(side) for side in input_size)
    if not (1 <= height <= MAX_INPUT_SIDE and 1 <= width <= MAX_INPUT_SIDE):
        raise ModelFileError(f"The input size must be 1 to {MAX_INPUT_SIDE:,} pixels a side; {height}×{width} is not.")
    if channels is None:
        if normalization is not None:
            channels = normalization.channels
        elif file_input is not None and file_input.channels in (1, 3):
            channels = file_input.channels
        else:
            channels = base.channels if base is not None else 3
    if channels not in (1, 3):
        raise ModelFileError(f"The model's input must have 1 (grayscale) or 3 (RGB) channels, not {channels}.")
    chosen = normalization or (base.normalization if base is not None else Normalization())
    if chosen.channels not in (1, 3) or len(chosen.std) != chosen.channels:
        raise ModelFileError(
            f"The normalisation gives {len(chosen.mean)} means and {len(chosen.std)} standard deviations; "
            "give one of each per channel (or one for all channels)."
        )
    values = (*chosen.mean, *chosen.std, chosen.scale)
    if not all(math.isfinite(v) for v in values) or min(chosen.std) <= 0 or chosen.scale <= 0:
        raise ModelFileError("The normalisation's means must be numbers, its standard deviations positive numbers.")
    return (height, width), chosen.for_channels(channels)
