"""The audit's explain stage on Ray Data (`audit(..., engine="ray")`, `cnnvis audit --engine ray`).

Rows (index, path, target) are split into blocks of one batch each; `map_batches` runs them through
`ExplainActor`, a stateful actor per worker that rebuilds the model once and calls the same
`maps.explain_paths` as the local engine (so results equal); one GPU per actor when the cluster has GPUs.
Batches stream back in input order; each class is then analysed as a Ray task of its own (`parallel.map_classes`),
in the same Ray session (`ray_session`).
Ray is an optional extra (`pip install .[ray]`); nothing else in the engine imports it.

Locally `ray.init(num_cpus=workers)` starts a private Ray for the call and shuts it down after; with
`address` (e.g. "ray://head:10001" or "auto") it joins that cluster and leaves it running.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import EngineError
from ..explainer import Explainer
from ..models.bundle import ModelBundle
from .dataset import AuditError, ImageSet, Skipped
from .localisation import Region
from .maps import MapBatch, Progress, explain_paths

INSTALL = "Ray is not installed; install the extra with: pip install '.[ray]' (or pip install 'ray[data]')."


def bundle_state(bundle: ModelBundle) -> dict[str, Any]:  # ModelBundle's fields by name, each its own type
    """Everything a worker needs to rebuild `bundle` (its lock cannot travel), the module on the CPU."""
    return {f.name: getattr(bundle, f.name) for f in dataclasses.fields(bundle) if f.name != "lock"}


class ExplainActor:
    """One per worker: the model rebuilt once, then `explain_paths` for every batch it is handed."""

    def __init__(
        self,
        state: dict[str, Any],
        paths: Sequence[str],
        labels: Sequence[str | None],
        method: str,
        layer: str | None,
        size: int,
        regions: Sequence[Region | None] | None,
        threads: int,
        bound: str | None = None,
    ) -> None:
        import torch

        bundle = ModelBundle(**state)
        if torch.cuda.is_available():
            bundle.module.to("cuda")
        else:
            torch.set_num_threads(threads)
        self.explainer = Explainer(bundle, cache_size=0)
        self.image_set = ImageSet(
            tuple(Path(p) for p in paths), tuple(labels), bound=None if bound is None else Path(bound)
        )
        self.method, self.layer, self.size, self.regions = method, layer, size, regions

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chosen = [int(i) for i in rows["index"]]
        targets = {i: (None if t < 0 else int(t)) for i, t in zip(chosen, rows["target"])}  # by input position
        batch = explain_paths(
            self.explainer,
            self.image_set,
            chosen,
            targets,
            method=self.method,
            layer=self.layer,
            size=self.size,
            regions=self.regions,
        )
        return _to_rows(chosen, batch, self.image_set, self.size)


def _to_rows(chosen: list[int], batch: MapBatch, image_set: ImageSet, size: int) -> dict[str, np.ndarray]:
    """One output row per input row; pictures that could not be read have read=False and their reason."""
    n = len(chosen)
    where = {int(i): j for j, i in enumerate(batch.indices)}
    reasons = {s.path: s.reason for s in batch.skipped}
    out = {
        "index": np.array(chosen, np.int64),
        "read": np.array([i in where for i in chosen], bool),
        "reason": np.array([reasons.get(image_set.name(i), "") if i not in where else "" for i in chosen], object),
        "predicted": np.full(n, -1, np.int64),
        "probability": np.zeros(n, np.float32),
        "target": np.full(n, -1, np.int64),
        "map": np.zeros((n, size * size), np.float16),
        "pointing": np.full(n, np.nan),
        "mass": np.full(n, np.nan),
    }
    for k, i in enumerate(chosen):
        j = where.get(i)
        if j is None:
            continue
        out["predicted"][k], out["target"][k] = batch.predicted[j], batch.target[j]
        out["probability"][k] = batch.probability[j]
        out["map"][k] = batch.maps[j].reshape(-1)
        out["pointing"][k], out["mass"][k] = batch.pointing[j], batch.mass[j]
    return out


def ray_batches(
    bundle: ModelBundle,
    image_set: ImageSet,
    targets: Sequence[int | None],
    *,
    method: str,
    layer: str | None,
    size: int,
    regions: Sequence[Region | None] | None = None,
    batch_size: int = 32,
    address: str | None = None,
    workers: int = 2,
    progress: Progress | None = None,
) -> Iterator[MapBatch]:
    """The explain stage on Ray Data: MapBatches in input order, as `maps.stream_maps` yields them."""
    with ray_session(address, workers) as ray:
        yield from _run(ray, bundle, image_set, targets, method, layer, size, regions, batch_size, workers, progress)


@contextmanager
def ray_session(
    address: str | None = None, workers: int = 2, *, missing: type[EngineError] = AuditError
) -> Iterator[ModuleType]:
    """The `ray` module with Ray running: the caller's if it runs one already (left running), else a private local
    Ray of `workers` CPUs, or the cluster at `address`, shut down on leaving. An audit holds one for its explain
    stage and its per-class analysis (Ray tasks); the concepts' reference index for its batches. Without Ray
    installed: `missing` (the caller's error type) with the sentence that says how to install it."""
    try:
        import ray
    except ImportError as error:
        raise missing(INSTALL) from error
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _run(
    ray: ModuleType,
    bundle: ModelBundle,
    image_set: ImageSet,
    targets: Sequence[int | None],
    method: str,
    layer: str | None,
    size: int,
    regions: Sequence[Region | None] | None,
    batch_size: int,
    workers: int,
    progress: Progress | None,
) -> Iterator[MapBatch]:
    n = len(image_set)
    rows = [{"index": i, "target": -1 if (t := targets[i]) is None else int(t)} for i in range(n)]
    blocks = max(1, -(-n // batch_size))
    gpus = float(ray.cluster_resources().get("GPU", 0))
    actors = max(1, min(workers, blocks))
    state = bundle_state(bundle)
    if bundle.device.type != "cpu":  # ship a CPU copy; the caller's module stays where it is
        state["module"] = copy.deepcopy(bundle.module).to("cpu")
    dataset = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
        ExplainActor,
        fn_constructor_kwargs={
            "state": state,
            "paths": [str(p) for p in image_set.paths],
            "labels": list(image_set.labels),
            "method": method,
            "layer": layer,
            "size": size,
            "regions": regions,
            "threads": 1,
            "bound": None if image_set.bound is None else str(image_set.bound),
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=1,
    )
    done = 0
    for out in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        read = out["read"].astype(bool)
        skipped = [
            Skipped(image_set.name(int(i)), str(reason))
            for i, reason, ok in zip(out["index"], out["reason"], read)
            if not ok
        ]
        yield MapBatch(
            indices=out["index"][read].astype(np.int64),
            predicted=out["predicted"][read].astype(np.int64),
            probability=out["probability"][read].astype(np.float32),
            target=out["target"][read].astype(np.int64),
            maps=np.asarray(out["map"][read], np.float16).reshape(-1, size, size),
            pointing=out["pointing"][read].astype(np.float64),
            mass=out["mass"][read].astype(np.float64),
            skipped=skipped,
        )
        done += len(out["index"])
        if progress is not None:
            progress(done, n)
