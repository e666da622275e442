"""Backward passes over an explainer's recorded forward pass, for concepts: a layer's true output attached to the
graph, the gradient of a weighted layer output at an earlier layer, and many input-space maps over the same graph
(one row of `grad_outputs` per map; batched on an accelerator, see `input_maps`). Callers hold the recorded pass's
`lock`."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..hooks import node_gradient
from ..recording import RecordedPass

View = Callable[[torch.Tensor], torch.Tensor]
MAP_CHUNK = 16  # rows of one batched backward pass: memory grows with it (one gradient of every layer per row)
UNBATCHED_NOTE = (
    "The concept maps were computed one at a time: this model's backward pass cannot run several at once "
    "({error}). They are the same maps, only slower."
)


def attached(fp: RecordedPass, layer: str) -> torch.Tensor:
    """The layer's true output (last call), attached to the graph from the input. One overwritten in place later
    (`fp.stale`; call `fp.refresh({layer})` first) is its module re-run on its recorded input with the graph on:
    the same values and the same dependence on the input."""
    if layer not in fp.stale:
        return fp.activation(layer)
    call = fp.last_call(layer)
    with fp.recorder.bundle.lock, torch.enable_grad():
        output: torch.Tensor = call.module(call.first_input)
    return output


def gradient_at(fp: RecordedPass, layer: str, outputs: torch.Tensor, grad_outputs: torch.Tensor) -> torch.Tensor | None:
    """d <outputs, grad_outputs> / d (the layer's true output), in the layer's own layout; None where `outputs`
    do not depend on the layer. For a layer overwritten in place the gradient is caught where its graph node
    receives it (`hooks.node_gradient`)."""
    if layer not in fp.stale:
        source = fp.activation(layer)
        (grad,) = torch.autograd.grad(outputs, source, grad_outputs, retain_graph=True, allow_unused=True)
        return None if grad is None else grad.detach()
    call = fp.last_call(layer)
    if call.first_input is None:  # not recoverable: `fp.refresh` records it again, cloned, so this does not happen
        return None
    with node_gradient(call) as caught:
        torch.autograd.grad(outputs, call.first_input, grad_outputs, retain_graph=True, allow_unused=True)
    return caught[0].detach() if caught else None


def input_maps(
    x: torch.Tensor, outputs: torch.Tensor, rows: torch.Tensor, batched: bool | None = None
) -> tuple[torch.Tensor, str]:
    """For each row r of `rows` (R, *outputs.shape): x ⊙ d <outputs, r> / dx, summed over the input's colour
    channels, (R, H, W) for a one-image input x (1, C, H, W).

    `batched` (default: on an accelerator, not on a CPU): all rows go through one batched backward pass
    (`is_grads_batched`, MAP_CHUNK rows at a time), else one pass per row over the same graph. Measured on a CPU
    (bench/concepts_bench.py, 8 rows, one thread): resnet50 1.89 s batched vs 1.75 s one by one, efficientnet_lite0
    0.55 s vs 0.34 s — vmap's batching rules for convolution backward (depthwise ones most) are slower there than
    plain calls; on a GPU the rows of a batch run in parallel. Where the model's backward cannot be batched (an
    operation without a batching rule) the rows go one by one and the note says so (else it is empty)."""
    batched = x.device.type != "cpu" if batched is None else batched
    maps, note = [], ""
    for start in range(0, len(rows), MAP_CHUNK):
        part = rows[start : start + MAP_CHUNK]
        grads: torch.Tensor | None = None
        if batched and not note:
            try:
                (grads,) = torch.autograd.grad(outputs, x, part, retain_graph=True, is_grads_batched=True)
            except (RuntimeError, NotImplementedError) as exc:
                note = UNBATCHED_NOTE.format(error=str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
        if grads is None:
            grads = torch.stack([torch.autograd.grad(outputs, x, row, retain_graph=True)[0] for row in part])
        maps.append((x.detach()[None] * grads.detach()).sum(dim=2)[:, 0])
    return torch.cat(maps) if maps else x.new_zeros((0, *x.shape[2:])), note
