"""A reference index on disk: one Parquet file, `<fingerprint>.parquet`, in the engine's cache folder.

Rows: (layer, channel, ranking, rank, image, score, position), one per kept picture (a few hundred kB for
resnet50's layer4 at top 16). The rest (picture names, predicted classes, class names, skipped files, each layer's
receptive field and channel totals) is JSON in the file's schema metadata under b"cnnvis". A file is written to a
temporary name and renamed, so a reader never sees half of one.

The cache folder is $CNNVIS_CACHE_DIR, else $XDG_CACHE_HOME/cnnvis, else ~/.cache/cnnvis; `cache_dir` overrides it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..audit.dataset import Skipped
from .receptive import ReceptiveField
from .reference_tops import FORMAT, RANKINGS, ConceptsError, LayerTops, ReferenceIndex

META_KEY = b"cnnvis"


def cache_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder reference indexes and atlas pictures are kept in (see the module's docstring), created."""
    if cache_dir is not None:
        folder = Path(cache_dir)
    elif os.environ.get("CNNVIS_CACHE_DIR"):
        folder = Path(os.environ["CNNVIS_CACHE_DIR"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = Path(base) / "cnnvis"
    folder = folder / "concepts"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConceptsError(f"The cache folder {folder} cannot be created: {error.strerror or error}.") from error
    return folder


def save_index(index: ReferenceIndex, path: Path) -> None:
    """Write `index` to `path` (see the module's docstring)."""
    columns: dict[str, list[np.ndarray]] = {
        n: [] for n in ("layer", "channel", "ranking", "rank", "image", "score", "position")
    }
    meta_layers = []
    for name, tops in index.layers.items():
        for ranking in RANKINGS:
            channel, rank = np.nonzero(tops.images[ranking] >= 0)
            columns["layer"].append(np.full(len(channel), name, object))
            columns["channel"].append(channel.astype(np.int32))
            columns["ranking"].append(np.full(len(channel), ranking, object))
            columns["rank"].append(rank.astype(np.int16))
            columns["image"].append(tops.images[ranking][channel, rank])
            columns["score"].append(tops.scores[ranking][channel, rank])
            columns["position"].append(tops.positions[ranking][channel, rank])
        f = tops.receptive
        meta_layers.append(
            {
                "name": name,
                "top": int(tops.scores["activation"].shape[1]),
                "grid": list(f.grid),
                "size": list(f.size),
                "centre": list(f.centre),
                "box": list(f.box),
                "total": [float(v) for v in tops.total],
            }
        )
    meta = {
        "format": FORMAT,
        "fingerprint": index.fingerprint,
        "names": list(index.names),
        "predicted": [int(p) for p in index.predicted],
        "class_names": list(index.class_names),
        "skipped": [[s.path, s.reason] for s in index.skipped],
        "layers": meta_layers,
    }
    table = pa.table({k: pa.array(np.concatenate(v)) if v else pa.array([]) for k, v in columns.items()})
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    pq.write_table(table, partial, compression="zstd")
    os.replace(partial, path)


def load_index(path: Path) -> ReferenceIndex:
    """The index stored at `path`; ConceptsError if it cannot be read."""
    try:
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[META_KEY])
    except (OSError, KeyError, ValueError, pa.ArrowException) as error:
        raise ConceptsError(
            f"The stored reference index {path.name} cannot be read; delete it to build it again."
        ) from error
    if meta.get("format") != FORMAT:
        raise ConceptsError(
            f"The stored reference index {path.name} is of another version; delete it to build it again."
        )
    data = {name: table.column(name).to_numpy() for name in table.column_names}
    layers = {}
    for entry in meta["layers"]:
        field = ReceptiveField(tuple(entry["grid"]), tuple(entry["size"]), tuple(entry["centre"]), tuple(entry["box"]))
        tops = LayerTops.empty(field, len(entry["total"]), entry["top"])
        tops.total = np.array(entry["total"], np.float64)
        for ranking in RANKINGS:
            rows = (data["layer"] == entry["name"]) & (data["ranking"] == ranking)
            channel, rank = data["channel"][rows].astype(np.int64), data["rank"][rows].astype(np.int64)
            tops.images[ranking][channel, rank] = data["image"][rows]
            tops.scores[ranking][channel, rank] = data["score"][rows]
            tops.positions[ranking][channel, rank] = data["position"][rows]
        layers[entry["name"]] = tops
    return ReferenceIndex(
        tuple(meta["names"]),
        np.array(meta["predicted"], np.int64),
        tuple(meta["class_names"]),
        layers,
        meta["fingerprint"],
        tuple(Skipped(p, r) for p, r in meta["skipped"]),
    )
