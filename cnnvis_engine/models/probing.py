"""The probe of a person's model before it is offered: one black image through it and back to the input, which
must give one finite (1, K) float tensor of class scores that depends on the image (in this process, or through a
contained model's worker). Its failures become one plain sentence each."""

from __future__ import annotations

import re

import torch

from ..errors import ModelFileError
from .contained import ContainedError, ContainedModel, summary

MAX_CLASSES = 100_000


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
            f"The model failed on a {height}×{width} {_kind(channels)} image: {error_line(exc)}."
        ) from exc
    num_classes = check_output(output)
    connected = output.requires_grad and torch.autograd.grad(output.sum(), x, allow_unused=True)[0] is not None
    if not connected:
        raise ModelFileError(_UNCONNECTED)
    return num_classes


def probe_contained(module: ContainedModel, input_size: tuple[int, int], channels: int = 3) -> int:
    """The same probe as `probe`, through the model's worker process."""
    height, width = input_size
    x = torch.zeros(1, channels, height, width)
    graph_id = module.worker.new_id()
    try:
        output, reply = module.worker.forward(x, grad=True, graph_id=graph_id)
        num_classes = check_output(output if output is not None else _Returned(reply.get("returned", "nothing")))
        connected = bool(reply.get("requires_grad")) and (
            module.worker.backward(graph_id, x, torch.ones_like(output)) is not None
        )
        module.worker.request({"op": "forget"})
    except ContainedError as exc:
        if exc.kind != "error":
            raise ModelFileError(str(exc)) from exc
        raise ModelFileError(
            f"The model failed on a {height}×{width} {_kind(channels)} image: {summary(exc.detail)}."
        ) from exc
    if not connected:
        raise ModelFileError(_UNCONNECTED)
    return num_classes


def _kind(channels: int) -> str:
    return "RGB" if channels == 3 else "grayscale"


_UNCONNECTED = (
    "The model's output does not depend on its input image (no gradient flows back to it; was the output "
    "detached?), so no map could show what it looks at."
)


class _Returned:
    """What a contained model returned instead of a tensor, in words."""

    def __init__(self, words: str) -> None:
        self.words = words


def check_output(output: object) -> int:
    """K, for a finite float (1, K) output with 1 ≤ K ≤ MAX_CLASSES; a ModelFileError sentence otherwise."""
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 1:
        raise ModelFileError(
            f"The model returned {_describe(output)}; a classifier must return one tensor of shape "
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


def _describe(output: object) -> str:
    if isinstance(output, _Returned):
        return output.words
    if isinstance(output, torch.Tensor):
        return f"a tensor of shape {tensor_shape(output)}"
    if isinstance(output, (tuple, list, dict)):
        return f"a {type(output).__name__} of {len(output)} items"
    return f"a {type(output).__name__}"


def tensor_shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(str(n) for n in tensor.shape) + ")"


def error_line(exc: BaseException) -> str:
    """One readable line: TorchScript puts its traceback first and the real error (e.g. `RuntimeError: ...`) last."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()] or [type(exc).__name__]
    line = lines[-1] if lines[0].startswith("The following operation failed in the TorchScript") else lines[0]
    return re.sub(r"^\w+(Error|Exception): ", "", line).rstrip(".")
