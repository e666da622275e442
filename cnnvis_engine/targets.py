"""Targets turn any model output into one score per sample — the quantity every gradient method explains.

The idea is pytorch-grad-cam's (`utils/model_targets.py`): a target is a callable, so one method serves
classification (a logit), segmentation (a class's score over a region) and regression (one output, a group,
or all of them).

What the model predicts comes with them (`top_predictions`): its top classes, outputs or segments with their
probabilities, the top one being the target when none is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch

from .errors import TargetError, shown

if TYPE_CHECKING:
    from .models.bundle import ModelBundle


@runtime_checkable
class Target(Protocol):
    """`score(output) -> (N,)`: the scalar per sample whose gradients are explained."""

    def score(self, output: torch.Tensor) -> torch.Tensor: ...

    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class ClassTarget:
    """The logit of one class: output (N, K) -> output[:, index]."""

    index: int
    name: str = ""

    def score(self, output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 2:
            raise TargetError(
                f"A class target needs a model that outputs one score per class; this one outputs shape {tuple(output.shape)}."
            )
        if not 0 <= self.index < output.shape[1]:
            raise TargetError(f"Class {self.index} does not exist: the model has classes 0 to {output.shape[1] - 1}.")
        return output[:, self.index]

    @property
    def label(self) -> str:
        """ "tabby (class 281)"; a class without a real name ("", "class 1", "1") once: "class 1"."""
        unnamed = self.name.strip().lower() in ("", str(self.index), f"class {self.index}", f"class{self.index}")
        return f"class {self.index}" if unnamed else f"{self.name} (class {self.index})"


@dataclass(frozen=True)
class SegmentationTarget:
    """Class c's score summed over the pixels predicted as c, optionally inside a box (x0, y0, x1, y1) given
    in output pixels: output (N, K, H, W) -> Σ_{p: argmax(p) = c, p ∈ box} output[:, c, p]."""

    category: int
    box: tuple[int, int, int, int] | None = None
    name: str = ""

    def score(self, output: torch.Tensor) -> torch.Tensor:
        if output.dim() != 4:
            raise TargetError(
                f"A segmentation target needs a per-pixel output (N, K, H, W); this model gives shape {tuple(output.shape)}."
            )
        channels = output.shape[1]
        if not 0 <= self.category < max(channels, 2):
            raise TargetError(
                f"Segmentation class {self.category} does not exist: the model has classes 0 to {max(channels, 2) - 1}."
            )
        mask = self.mask(output)
        scores = output[:, self.category] if channels > 1 else output[:, 0] * (1 if self.category == 1 else -1)
        return (scores * mask).sum(dim=(1, 2))

    def mask(self, output: torch.Tensor) -> torch.Tensor:
        """(N, H, W) float mask of the pixels the score sums over."""
        with torch.no_grad():
            if output.shape[1] > 1:
                mask = (output.argmax(dim=1) == self.category).float()
            else:  # one logit per pixel: class 1 where it is positive
                mask = ((output[:, 0] > 0) == bool(self.category)).float()
            if self.box is not None:
                x0, y0, x1, y1 = self.box
                boxed = torch.zeros_like(mask)
                boxed[:, max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1
                mask = mask * boxed
        return mask

    @property
    def label(self) -> str:
        where = " inside the box" if self.box else ""
        return f"{self.name or f'class {self.category}'} pixels{where}"


@dataclass(frozen=True)
class RegressionTarget:
    """The sum of selected outputs (all when `outputs` is None): output (N, M) -> Σ_{j ∈ outputs} output[:, j].
    This is the article's `regression=True` for many-output networks."""

    outputs: tuple[int, ...] | None = None
    name: str = ""

    def score(self, output: torch.Tensor) -> torch.Tensor:
        flat = output.flatten(1)
        if self.outputs is None:
            return flat.sum(dim=1)
        bad = [j for j in self.outputs if not 0 <= j < flat.shape[1]]
        if bad or not self.outputs:
            raise TargetError(
                f"Output {bad[0] if bad else '(none)'} does not exist: the model has outputs 0 to {flat.shape[1] - 1}."
            )
        return flat[:, list(self.outputs)].sum(dim=1)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return "all outputs" if self.outputs is None else "outputs " + ", ".join(map(str, self.outputs))


def resolve_target(
    target: int | Target | None, output: torch.Tensor, task: str, class_names: tuple[str, ...]
) -> Target:
    """An explicit target, a class index, or the default: the top-1 class / the dominant segment / all outputs."""
    if isinstance(target, bool):
        raise TargetError("The target must be a class number or a target object, not True/False.")
    if isinstance(target, int):
        name = class_names[target] if 0 <= target < len(class_names) else ""
        if task == "segmentation":
            return SegmentationTarget(target, name=name)
        if task == "regression":
            return RegressionTarget((target,), name=name)
        return ClassTarget(target, name=name)
    if target is not None:
        if not isinstance(target, Target):
            raise TargetError(f"A target must be a class number or a target object; got {type(target).__name__}.")
        return target
    if task == "regression":
        return RegressionTarget()
    if task == "segmentation":
        with torch.no_grad():
            labels = output.argmax(dim=1) if output.shape[1] > 1 else (output[:, 0] > 0).long()
            counts = torch.bincount(labels.flatten(), minlength=max(output.shape[1], 2))
        counts[0] = 0 if counts[1:].sum() > 0 else counts[0]  # prefer the largest non-background class
        category = int(counts.argmax())
        return SegmentationTarget(category, name=class_names[category] if category < len(class_names) else "")
    top = int(output[0].argmax())
    return ClassTarget(top, name=class_names[top] if top < len(class_names) else "")


@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float  # softmax for classes, sigmoid for regression outputs, pixel share for segments


def top_predictions(bundle: ModelBundle, output: torch.Tensor, top_k: int) -> list[tuple[Prediction, ...]]:
    """Top-k per image: softmax for classes, sigmoid per output for regression, pixel share per segment."""
    names = bundle.output_names or bundle.class_names
    if bundle.task == "segmentation":
        classes = max(output.shape[1], 2)
        labels = output.argmax(dim=1) if output.shape[1] > 1 else (output[:, 0] > 0).long()
        scores = torch.nn.functional.one_hot(labels.flatten(1), classes).float().mean(dim=1)
    elif bundle.task == "regression":
        scores = torch.sigmoid(output.flatten(1).float())
    else:
        scores = torch.softmax(output.flatten(1).float(), dim=1)
    values, indices = scores.topk(min(top_k, scores.shape[1]), dim=1)
    return [
        tuple(Prediction(i, names[i] if i < len(names) else f"class {i}", v) for v, i in zip(row_values, row_indices))
        for row_values, row_indices in zip(values.tolist(), indices.tolist())
    ]


def check_top_k(top_k: Any) -> None:
    """`top_k` must be a whole number ≥ 1; more than the model's outputs gives all of them."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise TargetError(
            f"The number of predictions to list (top_k) must be a whole number of at least 1; got {shown(top_k)}."
        )
