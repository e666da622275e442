"""The model-parameter randomisation test (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
https://arxiv.org/abs/1810.03292): if a method's map barely changes when the network's learned weights are
replaced by random ones, the map does not explain what the network learned.

The layers ("units": each leaf layer or block that owns parameters, the elements of plain Sequential /
ModuleList containers taken one by one) are randomised from the output end down, in reverse execution order
of the trace — *cascading* (each step keeps the layers above random as well) or *independent* (one layer at a
time, the rest as trained). Each unit is re-initialised with its layers' own `reset_parameters()` (weights
drawn as at construction, BatchNorm reset to identity statistics), seeded per step, as Quantus does. Everything
happens on a deep copy of the model: the original is never touched.

For each step we compute the method's map on the same image, for the same target class and layer as on the
trained model, and its Spearman rank correlation with the original map.

    steps = randomisation_test(bundle, image, "gradcam", mode="cascading")
    [(s.layer, s.spearman) for s in steps]   # steps[0] is the trained model itself (layer "", spearman 1.0)
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .errors import LayerError, MethodError
from .explainer import Explainer, ImageSource, TargetSpec
from .models.bundle import ModelBundle
from .models.contained_onnx import in_worker
from .tracing import Trace

Mode = Literal["cascading", "independent"]
Progress = Callable[[int, int, str], None]  # (steps done, steps in all, layer just randomised)
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# `reset_parameters` draws from torch's one global generator: two sessions randomising at once (threads of one
# server) would draw from each other's seeds, so a seeded re-initialisation holds this lock.
_GLOBAL_GENERATOR = threading.Lock()


@dataclass(frozen=True)
class RandomisationStep:
    """One step: `layer` was just randomised ("" for the trained model); `randomised` lists every unit that is
    random in this step (cascading: all so far, top first); `map` (H, W) float32 in [0, 1] is the method's map on
    that model and `spearman` its rank correlation with the trained model's map (0.0 when a map is flat)."""

    layer: str
    randomised: tuple[str, ...]
    map: np.ndarray
    spearman: float
    raw: np.ndarray | None = None  # the method's un-normalised output (`MethodResult.raw`), for a shared scale

    @property
    def label(self) -> str:
        if not self.layer:
            return "trained model"
        return f"{self.layer} and above" if len(self.randomised) > 1 else self.layer


@in_worker(images=("image",))
def randomisation_layers(bundle: ModelBundle, image: ImageSource) -> list[str]:
    """The units the test randomises, in the order it does: the last to run first."""
    return _last_first(bundle.module, Explainer(bundle).trace(image))


def _last_first(model: nn.Module, trace: Trace) -> list[str]:
    order = {layer.name: layer.order for layer in trace.layers}
    return sorted((u for u in _units(model) if u in order), key=order.__getitem__, reverse=True)


@in_worker(images=("image",))  # an uploaded ONNX model is randomised in its worker
def randomisation_test(
    bundle: ModelBundle,
    image: ImageSource,
    method: str = "gradcam",
    *,
    mode: Mode = "cascading",
    layer: str | None = None,
    target: TargetSpec = None,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> list[RandomisationStep]:
    """Run the test for one image and method. `layers` (default: `randomisation_layers`, all of them) are
    randomised in the order given; `layer`/`target`/`options` are those of `Explainer.explain` (None: the trained
    model's defaults, then kept fixed). Returns the trained model's step first, then one step per layer."""
    if mode not in ("cascading", "independent"):
        raise MethodError(f"The randomisation mode must be 'cascading' or 'independent', not '{mode}'.")
    with bundle.lock:  # no other thread's hooks may be copied along
        model = copy.deepcopy(bundle.module)
    # Tracing the copy, not the original, leaves its layer list known, so even the trained model's step is a lean
    # pass. The copy keeps no whole pass (cache_size=0): one held with its graph made each later pass a third slower.
    explainer = Explainer(dataclasses.replace(bundle, module=model, lock=threading.RLock()), cache_size=0)
    order = list(layers) if layers is not None else _last_first(model, explainer.trace(image))
    names = dict(model.named_modules())
    unknown = [name for name in order if name not in names or name == ""]
    if unknown:
        raise LayerError(f"The model has no layer called '{unknown[0]}' to randomise.")

    def explain(spec: TargetSpec, chosen: str | None) -> tuple[Any, str | None, np.ndarray, np.ndarray | None]:
        result = explainer.explain_batch(
            [image], layer=chosen, targets=[spec], methods=[method], options={method: dict(options or {})}
        )[0]
        found = result[method]
        if not found.applicable:
            raise MethodError(f"{method} cannot be tested here: {found.reason}")
        if found.map is None or found.map.ndim != 2:
            shape = "none" if found.map is None else "×".join(map(str, found.map.shape))
            raise MethodError(f"The randomisation test compares one map per image; {method} gives {shape}.")
        return result.target, found.layer, found.map, found.raw

    target_used, layer_used, original, raw = explain(target, layer)
    reference = _centred_ranks(original)  # ranked once, not once per step
    steps = [RandomisationStep("", (), original, 1.0, raw)]
    total = len(order) + 1
    if progress:
        progress(1, total, "")
    randomised: list[str] = []
    for index, name in enumerate(order):
        unit = names[name]
        saved = {key: value.clone() for key, value in unit.state_dict().items()} if mode == "independent" else None
        _randomise(unit, seed + index)
        randomised = [*randomised, name] if mode == "cascading" else [name]
        _, _, current, raw = explain(target_used, layer_used)
        steps.append(
            RandomisationStep(name, tuple(randomised), current, _correlation(reference, _centred_ranks(current)), raw)
        )
        if saved is not None:
            unit.load_state_dict(saved)
        if progress:
            progress(index + 2, total, name)
    return steps


def spearman(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Spearman's rank correlation of two equally shaped maps (ties get their average rank, as scipy's
    `spearmanr`); 0.0 when either map is flat (the correlation is undefined: a flat map shows nothing)."""
    return _correlation(_centred_ranks(a), _centred_ranks(b))


def _centred_ranks(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    """The map's ranks minus their mean, keeping its shape (for the size check)."""
    ranks = _ranks(torch.as_tensor(values).flatten()).reshape(np.shape(values))
    return ranks - ranks.mean()


def _correlation(ra: torch.Tensor, rb: torch.Tensor) -> float:
    """Pearson's correlation of two centred rank maps: Spearman's of the maps they rank."""
    if ra.numel() != rb.numel():
        raise MethodError(f"Maps of different sizes cannot be compared: {tuple(ra.shape)} and {tuple(rb.shape)}.")
    ra, rb = ra.flatten(), rb.flatten()
    scale = torch.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / scale) if scale > 0 else 0.0


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks (float64), ties sharing their average rank."""
    ordered, order = values.double().sort()
    _, inverse, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(dim=0).double()
    ranks = torch.empty_like(ordered)
    ranks[order] = (ends - (counts.double() - 1) / 2)[inverse]
    return ranks


def _units(module: nn.Module, prefix: str = "") -> Iterator[str]:
    """Qualified names of the leaf layers and blocks that own parameters; plain containers are opened."""
    for name, child in module.named_children():
        if next(child.parameters(), None) is None:
            continue
        full = f"{prefix}{name}"
        if type(child) in _CONTAINERS:
            yield from _units(child, f"{full}.")
        else:
            yield full


def _randomise(unit: nn.Module, seed: int) -> None:
    """Re-initialise every layer of `unit` as at construction (seeded); parameters of a layer without
    `reset_parameters` are redrawn from a normal distribution with their current standard deviation."""
    devices = [p.device.index or 0 for p in unit.parameters() if p.device.type == "cuda"][:1]
    with _GLOBAL_GENERATOR, torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for module in unit.modules():
            own = list(module.parameters(recurse=False))
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and (own or next(module.buffers(recurse=False), None) is not None):
                reset()
            elif own:
                for parameter in own:
                    std = float(parameter.std()) if parameter.numel() > 1 else 1.0
                    parameter.normal_(0.0, std or 1.0)
