"""What the model predicts for each image: its top classes, outputs or segments, with their probabilities."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models.bundle import ModelBundle


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
        tuple(
            Prediction(i, names[i] if i < len(names) else f"class {i}", v)
            for v, i in zip(row_values, row_indices)
        )
        for row_values, row_indices in zip(values.tolist(), indices.tolist())
    ]
