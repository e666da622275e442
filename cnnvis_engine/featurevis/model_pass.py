"""The model's side of an optimisation step: pictures in [0, 1] to the model's input and back, the layers
checked by name, and one forward pass of a shared model with some layers' true outputs, each seen as channels first.

Objectives read every layer as (N, C, h, w) or a vector (N, C), whatever its layout (`layouts`): a channels-last
output (a Swin or ConvNeXt stage, (N, h, w, C)) is permuted, a transformer's tokens (N, P + h·w, C) lose their
prefix and become their grid, before any objective picks a channel. `layer_layouts` reads the layouts once per
run from one recorded pass of a grey picture of the run's size, as the explainer's layer list does; a layer that
is no map and no vector (per-head tensors, attention weights) is refused with the reason.

Models are shared between threads, so every forward pass that may meet hooks holds `bundle.lock`
(`ModelBundle.run`, with `capture` inside the same lock); an optimisation takes the lock for each step's
forward pass only, never for the whole run, so other users of the model wait at most one forward pass. The
backward pass needs no lock: it runs no module hooks.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

import numpy as np
import torch

from ..errors import LayerError, MethodError
from ..hooks import capture
from ..layouts import Layout
from ..models.bundle import ModelBundle, Normalization
from ..tracing import build_trace

Layouts = Mapping[str, Layout]


def to_model_input(rgb: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """RGB in [0, 1], (N, 3, H, W) -> the model's input (N, C, H, W): (255 · rgb / scale - mean) / std, as
    `Normalization.apply`; for a grayscale model (C = 1) of the luma 0.299 R + 0.587 G + 0.114 B."""
    if normalization.channels == 1:
        luma = torch.tensor((0.299, 0.587, 0.114), dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        rgb = (rgb * luma).sum(dim=1, keepdim=True)
    mean = torch.tensor(normalization.mean, dtype=rgb.dtype, device=rgb.device).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, dtype=rgb.dtype, device=rgb.device).view(1, -1, 1, 1)
    return (rgb * (255.0 / normalization.scale) - mean) / std


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> (N, H, W, 3) uint8."""
    return (rgb.detach() * 255).clamp(0, 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, 3) or (H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    array = np.asarray(images, dtype=np.uint8)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] != 3:
        raise MethodError(f"Expected RGB images of shape (H, W, 3) or (N, H, W, 3), got shape {array.shape}.")
    return torch.from_numpy(array.copy()).to(device).permute(0, 3, 1, 2).float() / 255.0


def check_layers(bundle: ModelBundle, layers: Collection[str]) -> None:
    """Raise LayerError, with close names, for a layer the model does not have."""
    names = [name for name, _ in bundle.module.named_modules() if name]
    for layer in layers:
        if layer not in names:
            close = difflib.get_close_matches(layer, names, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise LayerError(f"The model {bundle.name} has no layer called '{layer}'.{hint}")


def layer_layouts(bundle: ModelBundle, layers: Collection[str], size: tuple[int, int]) -> dict[str, Layout]:
    """How each of `layers` lays out its output for pictures of `size` (height, width), from one recorded forward
    pass of a grey picture (`tracing.build_trace`, as the explainer reads them). A LayerError with the reason for
    a layer that is neither a map in some layout nor a vector of channels."""
    if not layers:
        return {}
    check_layers(bundle, layers)
    grey = to_model_input(torch.full((1, 3, *size), 0.5, device=bundle.device), bundle.normalization)
    with bundle.lock, torch.no_grad(), capture(bundle.module) as record:
        output = bundle.run(grey, failed_on=f"a {size[0]}×{size[1]} image", fast=False)
    trace = build_trace(record, output.detach(), model=bundle.module, input_shape=tuple(grey.shape))
    found: dict[str, Layout] = {}
    for layer in layers:
        info = trace.get(layer)
        if not info.layout.is_map and len(info.shape) != 1:
            shape = "×".join(map(str, info.shape)) or "no tensor"
            reason = info.layout.reason or "not channels × height × width"
            raise LayerError(
                f"'{layer}' outputs {shape}, which is not a map: {reason}. Feature visualisation needs a layer "
                "whose output forms a picture; pick another layer."
            )
        found[layer] = info.layout
    return found


def forward(
    bundle: ModelBundle,
    x: torch.Tensor,
    layers: Collection[str],
    redirect_relus: bool = False,
    layouts: Layouts | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The model's output (N, K) and each of `layers`' true outputs at its last call, attached to the graph, in
    the canonical (N, C, h, w) view of its layout in `layouts` (as recorded where it has none there); with
    `redirect_relus`, the ReLUs of this pass let a dead channel's gradient through (`hooks.capture`).
    Holds the bundle's lock for the pass; hooks exist only inside it."""
    wanted = frozenset(layers)
    size = f"{x.shape[-2]}×{x.shape[-1]}"
    with (
        bundle.lock,
        capture(bundle.module, clone_outputs=wanted, only=wanted, redirect_relus=redirect_relus) as record,
    ):
        output = bundle.run(x, failed_on=f"a {size} image", fast=False)
    calls = record.by_name()
    activations = {}
    for layer in wanted:
        if layer not in calls:
            raise LayerError(
                f"The layer '{layer}' did not run in the model's forward pass, so it cannot be visualised."
            )
        value = max(calls[layer], key=lambda c: c.end).output
        if value is None:
            raise LayerError(f"The layer '{layer}' does not output a tensor, so it cannot be visualised.")
        layout = (layouts or {}).get(layer)
        activations[layer] = layout.view(value) if layout is not None and layout.is_map else value
    return output, activations
