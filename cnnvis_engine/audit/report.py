"""The audit's files: maps (Parquet, npz where pyarrow is missing), clusters (JSON, CSV), a table of the
pictures (CSV) and one self-contained HTML page with each class's clusters, most suspicious first: the mean
map, the prototypes with their maps over them, counts and a plain sentence."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ImageError
from ..images import decode_image
from ..pages import render_page
from ..render import render_heatmap, render_overlay
from .analysis import Audit, Cluster
from .describe import describe, verdict

PICTURE_COLUMNS = (
    "index",
    "path",
    "label",
    "class",
    "cluster",
    "suspicion",
    "predicted",
    "probability",
    "correct",
    "pointing",
    "mass_inside",
    "read",
)
CLUSTER_COLUMNS = (
    "class",
    "cluster",
    "size",
    "share",
    "suspicion",
    "flagged",
    "reasons",
    "accuracy",
    "conductance",
    "pointing",
    "mass_inside",
    "sentence",
    "members",
)


def cluster_of(result: Audit) -> dict[int, Cluster]:
    return {m: c for c in result.clusters for m in c.members}


def write_audit(result: Audit, out: Path, *, title: str = "") -> dict[str, Path]:
    """Write every file of the audit to `out` (created); returns them by kind."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "maps": write_maps(result, out),
        "clusters_json": out / "clusters.json",
        "clusters_csv": out / "clusters.csv",
        "pictures": out / "pictures.csv",
        "report": out / "report.html",
    }
    rows = cluster_rows(result)
    files["clusters_json"].write_text(
        json.dumps(
            {
                "model": result.model,
                "method": result.method,
                "layer": result.layer,
                "size": result.size,
                "group": result.group,
                "settings": result.settings,
                "notes": list(result.notes),
                "skipped": [{"path": s.path, "reason": s.reason} for s in result.skipped],
                "classes": {
                    label: {
                        "pictures": len(view.members),
                        "clusters": int(view.clusters.max()) + 1 if len(view.clusters) else 0,
                        "eigenvalues": [round(float(v), 6) for v in view.eigenvalues],
                    }
                    for label, view in result.classes.items()
                },
                "clusters": [
                    {
                        **row,
                        "evidence": evidence_row(c),
                        "members": [result.names[m] for m in c.members],
                        "indices": list(c.members),
                    }
                    for row, c in zip(rows, result.clusters)
                ],
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    with files["clusters_csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CLUSTER_COLUMNS)
        writer.writeheader()
        for row, c in zip(rows, result.clusters):
            writer.writerow({**row, "members": ";".join(result.names[m] for m in c.members)})
    with files["pictures"].open("w", newline="", encoding="utf-8") as handle:
        table = csv.writer(handle)
        table.writerow(PICTURE_COLUMNS)
        table.writerows(picture_rows(result))
    files["report"].write_text(render_audit_html(result, title=title), encoding="utf-8")
    return files


def cluster_rows(result: Audit) -> list[dict[str, object]]:
    return [
        {
            "class": c.label,
            "cluster": c.number,
            "size": c.size,
            "share": round(c.share, 4),
            "suspicion": round(c.suspicion, 4),
            "flagged": c.flagged,
            "reasons": ";".join(c.reasons),
            "accuracy": None if c.accuracy is None else round(c.accuracy, 4),
            "conductance": round(c.conductance, 4),
            "pointing": None if c.pointing is None else round(c.pointing, 4),
            "mass_inside": None if c.mass_inside is None else round(c.mass_inside, 4),
            "sentence": describe(c, result),
        }
        for c in result.clusters
    ]


def evidence_row(cluster: Cluster) -> dict[str, object]:
    """What the verdict weighed (`verdict.Evidence`), rounded, for clusters.json."""
    e = cluster.evidence
    if e is None:
        return {}

    def r(v: float | None) -> float | None:
        return None if v is None else round(float(v), 4)

    return {
        "scores": e.scores,
        "spot": list(e.spot),
        "compared_with": e.compared,
        "spot_agreement": r(e.agreement),
        "rest_spot_agreement": r(e.rest_agreement),
        "spot_in_outer_band": e.border,
        "map_difference": r(e.difference),
        "right": e.right,
        "labelled": e.labelled,
        "rest_right": e.rest_right,
        "rest_labelled": e.rest_labelled,
        "mass_inside": r(e.mass_inside),
        "rest_mass_inside": r(e.rest_mass_inside),
    }


def details(cluster: Cluster, result: Audit) -> str:
    """The numbers behind a card, one line: the verdict's scores, then SpRAy's (share, conductance, eigengap)."""
    scores = ", ".join(f"{k} {v:.2f}" for k, v in (cluster.evidence.scores.items() if cluster.evidence else ()))
    view = result.classes.get(cluster.label)
    count = int(view.clusters.max()) + 1 if view is not None and len(view.clusters) else 1
    accuracy = "" if cluster.accuracy is None else f" · accuracy {cluster.accuracy:.0%}"
    return (
        f"suspicion {cluster.suspicion:.2f}" + (f" ({scores})" if scores else "") + f" · {cluster.size} pictures "
        f"({cluster.share:.0%} of the class){accuracy} · SpRAy: conductance {cluster.conductance:.3f}, the eigengap "
        f"gave {count} cluster{'s' if count != 1 else ''}"
    )


def picture_rows(result: Audit) -> list[list[object]]:
    owner = cluster_of(result)
    rows = []
    for i, name in enumerate(result.names):
        c = owner.get(i)
        correct = result.correct[i]
        rows.append(
            [
                i,
                name,
                result.labels[i] or "",
                c.label if c else "",
                c.number if c else "",
                f"{c.suspicion:.4f}" if c else "",
                result.predicted_name(i) if result.read[i] else "",
                f"{result.probability[i]:.4f}" if result.read[i] else "",
                "" if np.isnan(correct) else int(correct),
                "" if np.isnan(result.pointing[i]) else f"{result.pointing[i]:.0f}",
                "" if np.isnan(result.mass_inside[i]) else f"{result.mass_inside[i]:.4f}",
                int(result.read[i]),
            ]
        )
    return rows


def write_maps(result: Audit, out: Path) -> Path:
    """Every picture's size×size float16 map with its row of `pictures.csv`: maps.parquet, or maps.npz."""
    flat = result.maps.reshape(len(result.maps), -1)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path = out / "maps.npz"
        np.savez_compressed(path, maps=result.maps, names=np.array(result.names), read=result.read)
        return path
    values = pa.array(flat.reshape(-1), pa.float16())
    table = pa.table(
        {
            "index": pa.array(np.arange(len(flat))),
            "path": pa.array(list(result.names)),
            "label": pa.array([label or "" for label in result.labels]),
            "predicted": pa.array(result.predicted),
            "read": pa.array(result.read),
            "map": pa.FixedSizeListArray.from_arrays(values, flat.shape[1]),
        }
    )
    path = out / "maps.parquet"
    pq.write_table(table, path)
    return path


def read_maps(path: Path) -> np.ndarray:
    """The (N, size, size) float16 maps of `write_maps`' file."""
    if path.suffix == ".npz":
        return np.asarray(np.load(path)["maps"])
    import pyarrow.parquet as pq

    column = pq.read_table(path, columns=["map"]).column("map").combine_chunks()
    width = column.type.list_size
    size = round(width**0.5)
    return np.asarray(column.values.to_numpy(zero_copy_only=False), np.float16).reshape(-1, size, size)


# ----- HTML -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Card:
    """One cluster as the page shows it: words, then the mean map and the prototypes (name, PNG data URI)."""

    number: int
    flagged: bool
    sentence: str
    verdict: str
    details: str
    mean: str
    prototypes: list[tuple[str, str]]


@dataclass(frozen=True)
class _Section:
    label: str
    pictures: int
    clusters: int
    status: str
    cards: list[_Card]
    hidden: int  # clusters not shown (they are in clusters.csv)


def render_audit_html(result: Audit, *, title: str = "", shown_per_class: int = 4) -> str:
    """One self-contained page (templates/audit.html): each class's clusters, most suspicious first."""
    sections = []
    for label, view in result.classes.items():
        clusters = result.for_class(label)
        flagged = sum(c.flagged for c in clusters)
        sections.append(
            _Section(
                label=label,
                pictures=len(view.members),
                clusters=len(clusters),
                status=f"{flagged} flagged group{'s' if flagged != 1 else ''}" if flagged else "nothing flagged",
                cards=[_card(result, c) for c in clusters[:shown_per_class]],
                hidden=len(clusters) - shown_per_class,
            )
        )
    flagged_all = result.flagged()
    summary = (
        f"{len(flagged_all)} flagged group{'s' if len(flagged_all) != 1 else ''} in {len(result.classes)} classes."
        if flagged_all
        else f"Nothing flagged in {len(result.classes)} classes."
    )
    return render_page(
        "audit.html",
        title=title or f"cnnvis audit: {result.model}",
        model=result.model,
        method=result.method,
        layer=result.layer or "default",
        count=int(result.read.sum()),
        summary=summary,
        notes=result.notes,
        skipped=result.skipped[:200],
        skipped_count=len(result.skipped),
        sections=sections,
    )


def _card(result: Audit, cluster: Cluster) -> _Card:
    return _Card(
        number=cluster.number,
        flagged=cluster.flagged,
        sentence=describe(cluster, result),
        verdict=verdict(cluster),
        details=details(cluster, result),
        mean=_png(render_heatmap(_upscale(_stretch(cluster.mean_map)), "jet")),
        prototypes=[(result.names[m], _png(_overlay(result, m))) for m in cluster.prototypes],
    )


def _overlay(result: Audit, index: int, side: int = 112) -> np.ndarray:
    values = _stretch(result.maps[index])
    try:
        picture = (
            decode_image(result.paths[index], inside=result.bound)
            .image.convert("RGB")
            .resize((side, side), Image.Resampling.BILINEAR)
        )
    except ImageError:
        return render_heatmap(_upscale(values, side))
    return render_overlay(np.asarray(picture), values, "jet", 0.45)


def _stretch(values: np.ndarray) -> np.ndarray:
    """A map to [0, 1] by its own range, for display; a flat (empty) map shows as all zeros."""
    values = np.asarray(values, np.float32)
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high - low < 1e-6 * max(high, 1e-12) else (values - low) / (high - low)


def _upscale(values: np.ndarray, side: int = 112) -> np.ndarray:
    return np.asarray(Image.fromarray(values.astype(np.float32), "F").resize((side, side), Image.Resampling.BILINEAR))


def _png(picture: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
