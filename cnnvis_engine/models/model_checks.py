"""The checks every way of loading a person's own model shares (an uploaded file, a state_dict for a registered
architecture, `net.py:build` from the command line): a state_dict read without unpickling code, weights loaded
strictly with plain-words mismatches, and a probe that runs one black image through the model and back.
Each failure is a ModelFileError with one sentence.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections.abc import Mapping

import torch

from ..errors import ModelFileError

MAX_CLASSES = 100_000


PICKLE_REFUSED = (
    "This file is a pickled Python object, which could run arbitrary code when opened, so it is refused. "
    "Export the model with torch.jit.script(model).save('model.pt') (or save its state_dict) and upload that."
)


def is_pickle(data: bytes) -> bool:
    """A pickle (protocol 2+ starts with PROTO, 0x80), or a torch.save zip, which holds one as `<archive>/data.pkl`."""
    if data.startswith(b"\x80"):
        return True
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return any(name.endswith("/data.pkl") for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


def read_state_dict(data: bytes, filename: str) -> Mapping[str, torch.Tensor]:
    """The state_dict in a file's bytes, read with `weights_only=True`; a pickled object, another format or a weight
    that is no dense real tensor is refused."""
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused something: a pickled object, or just noise
        if is_pickle(data):
            raise ModelFileError(PICKLE_REFUSED) from exc
        raise ModelFileError(f"{filename} is not a PyTorch model file.") from exc
    except Exception as exc:  # random bytes raise KeyError, IndexError, RuntimeError ...
        raise ModelFileError(f"{filename} is not a PyTorch model file.") from exc
    if (
        isinstance(loaded, Mapping)
        and loaded
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items())
    ):
        for key, tensor in loaded.items():
            problem = odd_tensor(tensor)
            if problem:
                raise ModelFileError(f"{filename} is refused: its weight {key[:100]} {problem}.")
        return loaded  # as loaded: an OrderedDict keeps the `_metadata` (layer versions) load_state_dict reads
    raise ModelFileError(
        f"{filename} holds a {type(loaded).__name__}, not a model. Upload a TorchScript file "
        "(torch.jit.script(model).save('model.pt')) or a state_dict (torch.save(model.state_dict(), 'weights.pt'))."
    )


def odd_tensor(tensor: torch.Tensor) -> str:
    """Why a tensor cannot be a weight ("" when it can): only dense real numbers with their values in the file."""
    if tensor.layout != torch.strided:
        return f"is a sparse tensor ({str(tensor.layout).removeprefix('torch.')}); weights must be dense"
    if tensor.is_meta:
        return "is a meta tensor: it has a shape but no values"
    if tensor.is_quantized:
        return "is quantized; upload the float weights"
    if tensor.is_complex():
        return "holds complex numbers"
    return ""


def load_weights(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], architecture: str) -> None:
    """Load strictly; explain missing, extra and wrongly shaped weights in plain words."""
    expected = module.state_dict()
    not_float = [
        key
        for key in expected
        if key in state_dict and expected[key].is_floating_point() and not state_dict[key].is_floating_point()
    ]
    if not_float:
        raise ModelFileError(
            f"The weights do not fit {architecture}: {few(not_float)} {'holds' if len(not_float) == 1 else 'hold'} "
            "whole numbers in the file, but "
            "the model needs floating-point values there."
        )
    wrong_shape = [
        f"{key} is {shape_text(state_dict[key])} in the file but {shape_text(expected[key])} in {architecture}"
        for key in expected
        if key in state_dict and state_dict[key].shape != expected[key].shape
    ]
    if wrong_shape:
        raise ModelFileError(f"The weights do not fit {architecture}: {few(wrong_shape)}.")
    try:
        result = module.load_state_dict(state_dict, strict=False)  # strict=True's checks, made readable below
    except Exception as exc:  # e.g. a dtype the model cannot take
        raise ModelFileError(f"The weights could not be loaded into {architecture}: {error_summary(exc)}.") from exc
    problems = []
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} the model needs are missing ({few(result.missing_keys)})")
    if result.unexpected_keys:
        problems.append(
            f"{len(result.unexpected_keys)} in the file are not in the model ({few(result.unexpected_keys)})"
        )
    if problems:
        raise ModelFileError(
            f"These weights are not for {architecture}: {' and '.join(problems)}. Is it the right architecture?"
        )


def probe(module: torch.nn.Module, input_size: tuple[int, int], channels: int = 3) -> int:
    """Run one black image through the model (in this process: ONNX layers, or a registry architecture with the
    file's weights) and back to the input; return the number of outputs K of its (1, K) result."""
    height, width = input_size
    x = torch.zeros(1, channels, height, width, requires_grad=True)
    try:
        with torch.enable_grad():
            output = module(x)
    except Exception as exc:  # a user's model can raise anything
        raise ModelFileError(
            f"The model failed on a {height}×{width} {image_kind(channels)} image: {error_summary(exc)}."
        ) from exc
    num_classes = check_output(output)
    connected = output.requires_grad and torch.autograd.grad(output.sum(), x, allow_unused=True)[0] is not None
    if not connected:
        raise ModelFileError(UNCONNECTED)
    return num_classes


def image_kind(channels: int) -> str:
    return "RGB" if channels == 3 else "grayscale"


UNCONNECTED = (
    "The model's output does not depend on its input image (no gradient flows back to it; was the output "
    "detached?), so no map could show what it looks at."
)


class Returned:
    """What a contained model returned instead of a tensor, in words."""

    def __init__(self, words: str) -> None:
        self.words = words


def check_output(output: object) -> int:
    """K, for a finite float (1, K) output with 1 ≤ K ≤ MAX_CLASSES; a ModelFileError sentence otherwise."""
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 1:
        raise ModelFileError(
            f"The model returned {describe_output(output)}; a classifier must return one tensor of shape "
            "(1, number of classes) for one image."
        )
    if output.shape[1] == 0:
        raise ModelFileError("The model returned a tensor of shape (1, 0): no class scores at all.")
    if output.shape[1] > MAX_CLASSES:
        raise ModelFileError(
            f"The model returned {output.shape[1]:,} class scores; the limit is {MAX_CLASSES:,} classes."
        )
    if not output.is_floating_point():
        raise ModelFileError(
            f"The model returned {str(output.dtype).removeprefix('torch.')} values, not floating-point scores, "
            "so it has no gradient to explain."
        )
    if not torch.isfinite(output).all():
        raise ModelFileError(
            "The model's output on a black test image contains NaN or infinite values, so nothing it predicts "
            "could be explained. Check the exported model (its weights may be corrupt)."
        )
    return int(output.shape[1])


def describe_output(output: object) -> str:
    if isinstance(output, Returned):
        return output.words
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {shape_text(output)}"
    if isinstance(output, (tuple, list, dict)):
        return f"a {type(output).__name__} of {len(output)} items"
    return f"a {type(output).__name__}"


def shape_text(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(str(n) for n in tensor.shape) + ")"


def few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


def error_summary(exc: BaseException) -> str:
    """One readable line: TorchScript puts its traceback first and the real error (e.g. `RuntimeError: ...`) last."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
    line = lines[-1] if lines[0].startswith("The following operation failed in the TorchScript") else lines[0]
    return re.sub(r"^\w+(Error|Exception): ", "", line).rstrip(".")
