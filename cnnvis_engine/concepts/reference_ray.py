"""A reference index's batches on Ray Data (`reference_index(..., engine="ray")`, `cnnvis concepts --engine ray`).

As the audit's engine (`audit.ray_engine`): rows (index) in blocks of one batch each go through `map_batches` to
`StatsActor`, a stateful actor per worker that rebuilds the model once and runs the same `ChannelPass.stats_of` as
the local engine, one GPU per actor when the cluster has GPUs. The per-picture numbers stream back in input order
and are merged into the tops on the driver (ties go to the lower picture index, so the order of merging does not
matter). Locally a private Ray is started for the call and shut down after; with `address` it joins that cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..audit.dataset import Skipped
from ..audit.ray_engine import bundle_state, ray_session
from ..models.bundle import ModelBundle
from .reference_pass import BatchStats, ChannelPass
from .reference_set import ReferenceSet
from .reference_tops import ConceptsError

Rows = dict[str, np.ndarray]


class StatsActor:
    """One per worker: the model rebuilt once, then `ChannelPass.stats_of` for every batch it is handed."""

    def __init__(
        self, state: dict[str, Any], reference: ReferenceSet, layers: list[str], channels: list[int], threads: int
    ) -> None:
        import torch

        bundle = ModelBundle(**state)
        if torch.cuda.is_available():
            bundle.module.to("cuda")
        else:
            torch.set_num_threads(threads)
        self.runner = ChannelPass(bundle, layers)
        self.reference, self.channels = reference, channels

    def __call__(self, rows: Rows) -> Rows:
        chosen = [int(i) for i in rows["index"]]
        return to_rows(chosen, self.runner.stats_of(self.reference, chosen), self.channels, self.reference.names)


def to_rows(chosen: list[int], stats: BatchStats, channels: list[int], names: Sequence[str]) -> Rows:
    """One output row per input row: `read`, the reason a picture was not, its class, and per layer k the (K,)
    arrays a{k}, ap{k}, r{k}, rp{k} (zeros for a picture not read)."""
    n = len(chosen)
    where = {int(i): j for j, i in enumerate(stats.indices)}
    reasons = {s.path: s.reason for s in stats.skipped}
    kept = np.array([where.get(i, -1) for i in chosen])
    read = kept >= 0
    out: Rows = {
        "index": np.array(chosen, np.int64),
        "read": read,
        "reason": np.array(["" if r else reasons.get(names[i], "") for i, r in zip(chosen, read)], object),
        "predicted": np.full(n, -1, np.int64),
    }
    if read.any():
        out["predicted"][read] = stats.predicted[kept[read]]
    numbers = (stats.activation, stats.activation_at, stats.contribution, stats.contribution_at)
    for k, count in enumerate(channels):
        for prefix, values, dtype in zip(("a", "ap", "r", "rp"), numbers, (np.float32, np.int64, np.float32, np.int64)):
            column = np.zeros((n, count), dtype)
            if read.any():
                column[read] = values[k][kept[read]]
            out[f"{prefix}{k}"] = column
    return out


def ray_stats(
    bundle: ModelBundle,
    reference: ReferenceSet,
    layers: Sequence[str],
    channels: Sequence[int],
    batch_size: int,
    workers: int = 2,
    address: str | None = None,
) -> Iterator[BatchStats]:
    """The batches' BatchStats from Ray Data, in input order (see the module's docstring)."""
    with ray_session(address, workers, missing=ConceptsError) as ray:
        yield from _run(ray, bundle, reference, list(layers), list(channels), batch_size, workers)


def _run(
    ray: Any,
    bundle: ModelBundle,
    reference: ReferenceSet,
    layers: list[str],
    channels: list[int],
    batch_size: int,
    workers: int,
) -> Iterator[BatchStats]:
    n = len(reference)
    blocks = max(1, -(-n // batch_size))
    gpus = float(ray.cluster_resources().get("GPU", 0))
    state = bundle_state(bundle)
    if bundle.device.type != "cpu":  # ship a CPU copy; the caller's module stays where it is
        state["module"] = copy.deepcopy(bundle.module).to("cpu")
    dataset = ray.data.from_items([{"index": i} for i in range(n)], override_num_blocks=blocks).map_batches(
        StatsActor,
        fn_constructor_kwargs={
            "state": state,
            "reference": reference,
            "layers": layers,
            "channels": channels,
            "threads": 1,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, blocks))),
        num_gpus=1 if gpus else 0,
        num_cpus=1,
    )
    for out in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
        read = out["read"].astype(bool)
        yield BatchStats(
            indices=out["index"][read].astype(np.int64),
            predicted=out["predicted"][read].astype(np.int64),
            activation=[out[f"a{k}"][read] for k in range(len(layers))],
            activation_at=[out[f"ap{k}"][read] for k in range(len(layers))],
            contribution=[out[f"r{k}"][read] for k in range(len(layers))],
            contribution_at=[out[f"rp{k}"][read] for k in range(len(layers))],
            skipped=[
                Skipped(reference.names[int(i)], str(reason))
                for i, reason, ok in zip(out["index"], out["reason"], read)
                if not ok
            ],
        )
