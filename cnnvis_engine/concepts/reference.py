"""Reference examples: what else makes a channel fire. `reference_index` streams a reference set through the model
once, in batches, and keeps per channel of each chosen layer its top pictures by activation (ActMax) and by
contribution to their predicted class (RelMax; Achtibat et al., "From attribution maps to human-understandable
explanations through Concept Relevance Propagation", Nature Machine Intelligence 2023, with gradient × activation
as the relevance), with where the maximum was.

    index = reference_index(bundle, "photos/", ["layer3", "layer4"], top=16)
    index.top("layer4", 7, by="contribution")   # [TopImage(image=12, score=3.1, box=(32, 0, 224, 160)), ...]
    index.classes("layer4", 7)                   # [(281, 9), (282, 4)]: the classes its RelMax pictures show

Per batch: one forward and one backward pass (`reference_pass`); per layer once: its receptive field
(`receptive`). The index is stored as one small Parquet file named by the fingerprint of the reference set, the
model (its name, preprocessing and a hash of its weights), the layers and `top`, under the engine's cache folder
(`reference_store`): the same call again opens it and runs nothing. `engine="ray"` runs the batches on Ray Data
(`reference_ray`) with the same results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..audit.dataset import Skipped
from ..models.bundle import ModelBundle
from ..models.contained_onnx import runs_in_worker
from .receptive import measure_receptive_fields
from .reference_pass import BatchStats, ChannelPass
from .reference_set import ReferenceSet, ReferenceSource, read_reference_set
from .reference_store import cache_folder, load_index, save_index
from .reference_tops import FORMAT, ConceptsError, LayerTops, ReferenceIndex

Progress = Callable[[int, int], None]  # (pictures done, pictures in all)
Engine = Literal["local", "ray"]


def reference_index(
    bundle: ModelBundle,
    images: ReferenceSource,
    layers: str | Sequence[str],
    top: int = 16,
    *,
    engine: Engine = "local",
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    workers: int = 2,
    ray_address: str | None = None,
    progress: Progress | None = None,
) -> ReferenceIndex:
    """The reference index of `images` (a list of pictures or files, a folder, a zip, or "samples") at `layers`,
    keeping `top` pictures per channel and ranking; opened from the cache folder when it was built before (see the
    module's docstring). `batch_size` pictures go through the model at a time."""
    chosen = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not chosen:
        raise ConceptsError("Name at least one layer to index.")
    if top < 1 or batch_size < 1:
        raise ConceptsError("The number of top pictures and the batch size must be at least 1.")
    if engine not in ("local", "ray"):
        raise ConceptsError(f"The engine is 'local' or 'ray', not {engine!r}.")
    if bundle.task != "classification":
        raise ConceptsError(
            "Reference pictures rank channels by their contribution to a class; this model has no classes."
        )
    if runs_in_worker(bundle.module):
        raise ConceptsError(
            "This model runs in a separate worker process, where its layers cannot be recorded for a reference index."
        )
    reference = read_reference_set(images)
    key = fingerprint(reference, bundle, chosen, top)
    path = cache_folder(cache_dir) / f"{key}.parquet"
    if path.is_file():
        return replace(load_index(path), reference=reference, from_cache=True)
    runner = ChannelPass(bundle, chosen)
    infos = runner.infos()
    fields = measure_receptive_fields(bundle, [(info.name, info.layout) for info in infos])
    tops = {info.name: LayerTops.empty(f, info.map_shape[0], top) for info, f in zip(infos, fields)}
    predicted = np.full(len(reference), -1, np.int64)
    skipped: list[Skipped] = list(reference.skipped)
    if engine == "ray":
        from .reference_ray import ray_stats

        batches = ray_stats(
            bundle, reference, chosen, [t.channels for t in tops.values()], batch_size, workers, ray_address
        )
    else:
        batches = (
            runner.stats_of(reference, range(s, min(s + batch_size, len(reference))))
            for s in range(0, len(reference), batch_size)
        )
    done = passes = 0
    for stats in batches:
        add_batch(tops, chosen, stats, predicted)
        skipped += stats.skipped
        done += len(stats.indices) + len(stats.skipped)
        passes += 1
        if progress is not None:
            progress(done, len(reference))
    index = ReferenceIndex(reference.names, predicted, bundle.class_names, tops, key, tuple(skipped), reference)
    save_index(index, path)
    index.forward_passes = passes
    return index


def add_batch(tops: dict[str, LayerTops], layers: Sequence[str], stats: BatchStats, predicted: np.ndarray) -> None:
    """Merge one batch's numbers into the running tops."""
    if not len(stats.indices):
        return
    predicted[stats.indices] = stats.predicted
    for k, name in enumerate(layers):
        layer = tops[name]
        layer.total += stats.contribution[k].astype(np.float64).sum(axis=0)
        layer.merge("activation", stats.indices, stats.activation[k], stats.activation_at[k])
        layer.merge("contribution", stats.indices, stats.contribution[k], stats.contribution_at[k])


def fingerprint(reference: ReferenceSet, bundle: ModelBundle, layers: Sequence[str], top: int) -> str:
    """A hash of everything the index depends on: the pictures, the model and its preprocessing, layers, top."""
    digest = hashlib.sha256(f"{FORMAT}|{reference.fingerprint}|{'|'.join(layers)}|{top}\n".encode())
    digest.update(model_identity(bundle).encode())
    return digest.hexdigest()[:32]


def model_identity(bundle: ModelBundle) -> str:
    """The model's name, input size, preprocessing, class names and a hash of every weight and buffer."""
    digest = hashlib.sha256(f"{bundle.name}|{bundle.input_size}|{bundle.normalization}|{bundle.class_names}\n".encode())
    for name, tensor in bundle.module.state_dict().items():
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}\n".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
