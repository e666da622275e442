"""Activation maximisation (Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017,
https://distill.pub/2017/feature-visualization/): find the image x* = argmax_x objective(model(T(x))) by Adam
on a decorrelated Fourier parameterisation of x (`param.py`), with a new random jitter/scale/rotation T each
step (`transforms.py`).

The model is never changed: only the image's spectrum is given to the optimiser, gradients are taken with
`torch.autograd.grad` with respect to it alone (parameters' `.grad` stay as they were), hooks live only
inside each step's forward pass, and `model.training` is not touched. A fixed seed reproduces the images
bit for bit on the CPU (checked with 1 and 2 threads): every random draw comes from a local `torch.Generator`.
On CUDA it does not (`grid_sample`'s backward adds with atomics, cuDNN may pick non-deterministic kernels;
seen on an H200: same seed, pixels up to 60 levels apart, objective within 1 %); we leave the global
`torch.use_deterministic_algorithms` alone.

A channel that is zero everywhere on the starting grey image behind a ReLU would get no gradient and stay
grey. For the first `REDIRECT_STEPS` steps, as Lucid does, every ReLU/ReLU6 that blocks all of an image's
gradient passes it on anyway where that does not push an input further out of range
(`hooks.capture(redirect_relus=True)`); once the channel responds, the ordinary gradient takes over. On the
default model's `bn2` (behind ReLU6) that turns 6 grey channels of the cat's top 8 into pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..errors import MethodError
from ..models.bundle import ModelBundle
from ..models.contained_onnx import in_worker
from . import objectives as obj
from .model_pass import Layouts, check_layers, forward, from_uint8, layer_layouts, to_model_input, to_uint8
from .param import FourierImage
from .results import Cancelled, FeatureVisResult, FeatureVisSettings
from .transforms import TransformSettings, random_view

REDIRECT_STEPS = 16
Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]


def visualize(
    bundle: ModelBundle,
    objective: obj.Objective,
    *,
    size: int | tuple[int, int] = 128,
    steps: int = 256,
    lr: float = 0.05,
    seed: int = 0,
    batch: int = 1,
    diversity: float = 0.0,
    transforms: TransformSettings | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> FeatureVisResult:
    """Optimise `batch` images of `size` (pixels, or (height, width)) for `steps` Adam steps to maximise
    `objective` (minus `diversity` × `objectives.diversity(layer)` when diversity > 0 and batch > 1).

    `progress(step, steps)` is called after each step. `cancel()` is asked before each step; when it returns
    True the run stops there and raises `Cancelled`, whose `partial` is the result so far (`cancelled=True`).
    """
    height, width = (size, size) if isinstance(size, int) else size
    if steps < 0 or batch < 1 or min(height, width) < 8 or lr <= 0:
        raise MethodError(
            "Feature visualisation needs at least 8×8 pixels, a batch of at least 1, steps ≥ 0 and lr > 0."
        )
    transforms = transforms or TransformSettings()
    optimised = objective
    if diversity > 0 and batch > 1:
        optimised = objective - diversity * obj.diversity(_main_layer(objective))
    layouts = layer_layouts(bundle, optimised.layers, (height, width))
    settings = FeatureVisSettings(
        model=bundle.name,
        objective=objective.name,
        size=(height, width),
        steps=steps,
        lr=lr,
        seed=seed,
        batch=batch,
        diversity=diversity,
        transforms=transforms,
    )
    generator = torch.Generator().manual_seed(seed)
    image = FourierImage(batch, (height, width), generator, device=bundle.device)
    optimizer = torch.optim.Adam([image.spectrum], lr=lr)
    history: list[np.ndarray] = []

    def result(cancelled: bool) -> FeatureVisResult:
        with torch.no_grad():
            images = to_uint8(image.rgb())
        return FeatureVisResult(
            images=images,
            history=np.array(history, dtype=np.float32).reshape(len(history), batch),
            scores=_evaluate(bundle, objective, images, layouts),
            settings=settings,
            steps_done=len(history),
            cancelled=cancelled,
        )

    for step in range(steps):
        if cancel is not None and cancel():
            raise Cancelled(f"The feature visualisation was cancelled after {step} of {steps} steps.", result(True))
        with torch.enable_grad():
            view = random_view(image.rgb(), transforms, generator)
            output, activations = forward(
                bundle,
                to_model_input(view, bundle.normalization),
                optimised.layers,
                step < REDIRECT_STEPS,
                layouts,
            )
            scores = optimised(activations, output)
            if scores.shape != (batch,):
                raise MethodError(
                    f"The objective {objective.name} gave shape {tuple(scores.shape)}, not one score per image."
                )
            (grad,) = torch.autograd.grad(-scores.sum(), image.spectrum)
        image.spectrum.grad = grad
        optimizer.step()
        image.spectrum.grad = None
        history.append(scores.detach().cpu().numpy())
        if progress is not None:
            progress(step + 1, steps)
    return result(False)


def evaluate(bundle: ModelBundle, objective: obj.Objective, images: np.ndarray) -> np.ndarray:
    """The objective on uint8 RGB images as they are (no transforms): (N, H, W, 3) or (H, W, 3) -> (N,); each
    layer read channels first whatever its layout."""
    check_layers(bundle, objective.layers)
    x = from_uint8(images, bundle.device)
    return _evaluate(bundle, objective, images, layer_layouts(bundle, objective.layers, (x.shape[2], x.shape[3])))


def _evaluate(bundle: ModelBundle, objective: obj.Objective, images: np.ndarray, layouts: Layouts) -> np.ndarray:
    x = to_model_input(from_uint8(images, bundle.device), bundle.normalization)
    with torch.no_grad():
        output, activations = forward(bundle, x, objective.layers, layouts=layouts)
        return objective(activations, output).float().cpu().numpy()


@in_worker()
def channel_count(bundle: ModelBundle, layer: str, size: int | tuple[int, int] = 64) -> int:
    """How many channels `layer` outputs, from one grey image's forward pass: the last axis of a channels-last
    or token layout, the second of a map or a vector. A LayerError for a layer that is neither."""
    height, width = (size, size) if isinstance(size, int) else size
    layouts = layer_layouts(bundle, {layer}, (height, width))
    grey = torch.full((1, 3, height, width), 0.5, device=bundle.device)
    with torch.no_grad():
        _, activations = forward(bundle, to_model_input(grey, bundle.normalization), {layer}, layouts=layouts)
    value = activations[layer]
    return int(value.shape[1]) if value.dim() >= 2 else 0


@in_worker()  # an uploaded ONNX model's channels are rendered in its worker
def render_channels(
    bundle: ModelBundle,
    layer: str,
    channels: int | Sequence[int] = 8,
    *,
    size: int | tuple[int, int] = 64,
    steps: int = 64,
    lr: float = 0.05,
    seed: int = 0,
    transforms: TransformSettings | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> list[FeatureVisResult]:
    """A gallery: each channel's preferred pattern at `layer` — the first `channels` channels (fewer if the
    layer has fewer), or the listed ones. All are optimised together as one batch (image n maximises channel
    n; in eval mode the images do not interact), so the gallery costs about one large image. Each result's
    `settings.objective` names its channel and `settings.batch` the gallery's size; the same call gives the
    same images. `progress`/`cancel` as in `visualize` (a cancel raises `Cancelled` with the whole batch)."""
    if isinstance(channels, int):
        picked = list(range(min(channels, channel_count(bundle, layer, size))))
    else:
        picked = list(channels)
    if not picked:
        raise MethodError(f"'{layer}' has no channels to show.")
    whole = visualize(
        bundle,
        obj.channels_per_image(layer, picked),
        size=size,
        steps=steps,
        lr=lr,
        seed=seed,
        batch=len(picked),
        transforms=transforms,
        progress=progress,
        cancel=cancel,
    )
    return [
        FeatureVisResult(
            images=whole.images[i : i + 1],
            history=whole.history[:, i : i + 1],
            scores=whole.scores[i : i + 1],
            settings=replace(whole.settings, objective=obj.channel(layer, c).name),
            steps_done=whole.steps_done,
        )
        for i, c in enumerate(picked)
    ]


def _main_layer(objective: obj.Objective) -> str:
    if not objective.layers:
        raise MethodError("Diversity compares a layer's feature maps; this objective reads no layer.")
    return min(objective.layers)
