"""The Audit page's helpers: which folders a visitor may audit, the cached audit run, the pictures and tables it
shows, and the page's session keys (the plain ones that a link carries are `state`'s; zip uploads are
`audit_zip`'s).

Visitors are strangers: only folders under the audit root (`CNNVIS_AUDIT_ROOT`, default a `cnnvis-audit` folder
in the system's temporary folder) are read, checked on the real path, so neither `..` nor a symbolic link leads
out of it. Results are cached per model, folder (and its files' names, sizes and times) and settings.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import os
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from cnnvis_engine import METHODS, EngineError, Explainer, decode_image
from cnnvis_engine.audit import Audit, AuditError, Cluster, ImageSet, audit, read_image_set
from cnnvis_engine.audit.describe import describe, verdict
from cnnvis_engine.audit.report import PICTURE_COLUMNS, details, picture_rows
from cnnvis_engine.demos.tank_scenes import TANK_CLASSES, tank_dataset
from cnnvis_engine.render import render_heatmap, render_overlay

from . import state
from .audit_folders import DEMO_FOLDER, audit_root, inside_root, offered_folders, subfolders
from .slow_jobs import slow_job

# Session keys of the page. The plain keys a link carries (folder, method, size, class, group, shown) are state's.
FOLDER = state.AUDIT_FOLDER  # the folder chosen (a path under the root)
METHOD = state.AUDIT_METHOD
SIZE = state.AUDIT_SIZE
CLASS = state.AUDIT_CLASS  # the class shown (None: the most suspicious one)
GROUP = state.AUDIT_GROUP  # the group (cluster number) whose pictures are shown (None: none chosen)
SHOWN = state.AUDIT_SHOWN  # an audit is shown: a link reopens it
RUN = "audit_last_run"  # the settings of the audit shown in this session: {"model", "folder", ..., "class_of"}
ZIP = "_w_audit_zip"
ZIP_ERROR = "audit_zip_error"
CLASS_OF = "audit_class_of"  # {folder name: the model's class it is}, chosen on the page where the names differ
ZIP_NAMES = "audit_zip_names"  # {folder: the uploaded zip's own file name}, for this session's uploads

SIZES = state.AUDIT_SIZES
DEMO_COUNT, DEMO_SEED = 120, 4242  # the demo set: 120 drawn field scenes, sun and clouds at random
GRID_LIMIT = 24  # selected pictures shown at once
COLOURS = ("#e4572e", "#2e86ab", "#f3a712", "#6a994e", "#8d6a9f", "#29335c", "#c44569", "#7f8c8d")


def resolve_folder(text: str, root: Path | None = None, *, owner: str | None = None) -> Path:
    """The folder `text` names (relative to the root, or absolute), refused unless it really lies under the root
    and, for an uploaded zip, was uploaded by `owner` (this browser session)."""
    root = root or audit_root()
    text = (text or "").strip()
    if not text:
        raise AuditError("Choose a folder to audit.")
    path = Path(text) if Path(text).is_absolute() else root / text
    if not inside_root(path, root):
        raise AuditError(f"Only folders under {root} can be audited here.")
    uploads = root / "uploads"
    if inside_root(path, uploads) and not (owner and inside_root(path, uploads / owner)):
        raise AuditError("That folder is an upload of another browser session; upload the zip here to audit it.")
    if not path.is_dir():
        raise AuditError(f"There is no folder '{text}' under {root}.")
    return Path(os.path.realpath(path))


def folders(root: Path | None = None, *, owner: str | None = None) -> list[str]:
    """The folders a visitor can pick (`audit_folders.offered_folders`), the demo set drawn first if it is not yet:
    the demo set and every folder under the root, then the zips `owner` (this browser session) uploaded, each only if
    its real path stays under the root. Another session's uploads are never offered."""
    root = root or audit_root()
    demo_folder(root)
    return offered_folders(root, owner=owner)


def unknown_class_folders(folder: Path, class_names: tuple[str, ...]) -> list[str]:
    """The class folders of `folder` (not hidden ones, real paths inside it) whose names are none of the model's
    classes (case aside): the ones a person may map to a class."""
    known = {name.lower() for name in class_names}
    return sorted(p.name for p in subfolders(folder, folder) if p.name.lower() not in known)


def demo_folder(root: Path) -> Path:
    """The bundled demo set under the root, drawn once from seeded scenes (sun and clouds at random)."""
    folder = root / DEMO_FOLDER
    if not (folder / ".complete").exists():
        scenes = tank_dataset(DEMO_COUNT, DEMO_SEED, light="clean")
        for i, (image, label) in enumerate(zip(scenes.images, scenes.labels)):
            (folder / TANK_CLASSES[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / TANK_CLASSES[label] / f"{i:03d}.png")
        (folder / ".complete").write_text("drawn by cnnvis_ui.audit.demo_folder\n")
    return folder


def picture_set(folder: Path) -> ImageSet:
    """The folder's pictures. The engine checks each file's and subfolder's real path while listing (a link
    leading out of the folder is skipped and listed, as are pipes and devices) and again when opening a picture."""
    return read_image_set(folder)


def signature(folder: Path) -> str:
    """Names, sizes and modification times of the folder's entries (links as links, never followed): a new or
    changed file is a new audit."""
    digest = hashlib.sha256()
    for top, inner, files in os.walk(folder):  # os.walk does not follow links to folders
        inner.sort()
        for name in sorted(files):
            path = Path(top) / name
            info = path.lstat()
            digest.update(f"{path.relative_to(folder)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@st.cache_data(max_entries=8, show_spinner=False)  # an audit is N × size² half floats and its clusters
@slow_job("the audit")
def run_audit(
    model_key: str,
    folder: str,
    files: str,
    method: str,
    size: int,
    _explainer: Explainer,
    class_of: tuple[tuple[str, str], ...] = (),
) -> Audit:
    """The audit of `folder` (`files`: its signature) with the model `model_key`, each class folder named in
    `class_of` taken as that class, with a progress bar while it runs (drawn inside, so a cache hit replays it, as
    `result_cache.randomisation` does)."""
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Explaining pictures: {done} of {total}")

    try:
        return audit(
            _explainer.bundle,
            picture_set(Path(folder)),
            method=method,
            size=size,
            progress=progress,
            class_of=dict(class_of),
        )
    finally:
        bar.empty()


def layout_figure(result: Audit, label: str, height: int = 420) -> go.Figure:
    """The class's 2-D layout, one colour per cluster, the flagged ones named as such; each point's customdata is
    its picture's index in the audit."""
    view = result.classes[label]
    members = np.array(view.members)
    clusters = {c.number: c for c in result.for_class(label)}
    points = spread_duplicates(view.layout)
    fig = go.Figure()
    for rank, number in enumerate(sorted(clusters, key=lambda n: -clusters[n].suspicion)):
        c = clusters[number]
        inside = view.clusters == number
        name = f"group {number} · {c.size} pictures" + (" · flagged ⚠" if c.flagged else "")
        fig.add_trace(
            go.Scatter(
                x=points[inside, 0],
                y=points[inside, 1],
                mode="markers",
                name=name,
                customdata=members[inside],
                text=[result.names[m] for m in members[inside]],
                hovertemplate="%{text}<extra></extra>",
                marker={
                    "size": 9,
                    "color": COLOURS[rank % len(COLOURS)],
                    "line": {"width": 1.5 if c.flagged else 0, "color": "#262730"},
                },
            )
        )
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        dragmode="select",
        legend={"orientation": "h", "y": -0.05},
        xaxis={"visible": False},
        yaxis={"visible": False},
        title={"text": "Each dot is a picture; near dots have similar maps", "font": {"size": 13}},
    )
    return fig


def spread_duplicates(layout: np.ndarray) -> np.ndarray:
    """Pictures with identical maps (empty ones, say) land on one spot; spread them on a small seeded disc so each
    can be seen and selected. Display only: the clusters were made from the maps."""
    points = np.array(layout, np.float64)
    if len(points) == 0:
        return points
    scale = 0.02 * max(float(np.ptp(points, axis=0).max()), 1e-6)
    _, first, counts = np.unique(points.round(6), axis=0, return_inverse=True, return_counts=True)
    first = first.ravel()
    rng = np.random.default_rng(0)
    for group in np.flatnonzero(counts > 1):
        where = np.flatnonzero(first == group)
        angle = rng.uniform(0, 2 * np.pi, len(where))
        radius = scale * np.sqrt(rng.uniform(0, 1, len(where))) * np.sqrt(len(where))
        points[where] += np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points


def selected_indices(event) -> list[int]:
    """The audit indices of the points a box, lasso or click selected (from `st.plotly_chart`'s event)."""
    if not event:
        return []
    selection = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
    points = selection.get("points", []) if isinstance(selection, dict) else getattr(selection, "points", [])
    out = []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, list):
            data = data[0] if data else None
        if data is not None:
            out.append(int(data))
    return list(dict.fromkeys(out))


@st.cache_data(max_entries=512, show_spinner=False)
def overlay_png(path: str, stamp: float, values: bytes, size: int, side: int = 128, inside: str | None = None) -> bytes:
    """A picture with its audit map over it, as PNG bytes (`stamp`: the file's mtime, so a changed file redraws);
    the picture is opened only if its real path lies inside the folder `inside` (the audit root by default)."""
    heat = np.frombuffer(values, np.float16).astype(np.float32).reshape(size, size)
    low, high = float(heat.min()), float(heat.max())
    heat = np.zeros_like(heat) if high - low < 1e-9 else (heat - low) / (high - low)
    try:
        image = decode_image(path, inside=inside or str(audit_root())).image
        picture = np.asarray(image.resize((side, side), Image.Resampling.BILINEAR))
        shown = render_overlay(picture, heat, "jet", 0.45)
    except EngineError:
        shown = render_heatmap(np.asarray(Image.fromarray(heat, "F").resize((side, side))))
    buffer = io.BytesIO()
    Image.fromarray(shown).save(buffer, "PNG")
    return buffer.getvalue()


def picture_png(result: Audit, index: int) -> bytes:
    path = result.paths[index] if index < len(result.paths) else ""
    stamp = os.lstat(path).st_mtime if path and os.path.lexists(path) else 0.0
    return overlay_png(path, stamp, result.maps[index].tobytes(), result.size, inside=result.bound)


def mean_map_png(cluster: Cluster, side: int = 128) -> bytes:
    values = cluster.mean_map
    low, high = float(values.min()), float(values.max())
    values = np.zeros_like(values) if high - low < 1e-9 else (values - low) / (high - low)
    big = np.asarray(Image.fromarray(values.astype(np.float32), "F").resize((side, side), Image.Resampling.BILINEAR))
    buffer = io.BytesIO()
    Image.fromarray(render_heatmap(big)).save(buffer, "PNG")
    return buffer.getvalue()


def cluster_sentence(cluster: Cluster, result: Audit) -> str:
    return describe(cluster, result)


def cluster_verdict(cluster: Cluster) -> str:
    return verdict(cluster)


def cluster_details(cluster: Cluster, result: Audit) -> str:
    """The numbers behind a card: the verdict's scores, then SpRAy's conductance and eigengap."""
    return details(cluster, result)


def flagged_csv(result: Audit, indices: list[int] | None = None) -> bytes:
    """The flagged clusters' pictures (or `indices`) as CSV: one row per picture, with its cluster and sentence."""
    if indices is None:
        indices = [m for c in result.flagged() for m in c.members]
    rows = picture_rows(result)
    owner = {m: c for c in result.clusters for m in c.members}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*PICTURE_COLUMNS, "sentence"])
    for i in indices:
        c = owner.get(i)
        writer.writerow([*rows[i], describe(c, result) if c else ""])
    return out.getvalue().encode("utf-8")


# ----- the tanks story's step 4 ----------------------------------------------------------------------------------
@st.cache_data(show_spinner="Auditing 120 field photos…")
@slow_job("the audit of the field photos")
def story_audit(model: str) -> dict:
    """The audit of the demo set (120 fresh photos, sun and clouds at random, tank boxes known) with one tank
    detector: its flagged clusters with sentences, the weather of their photos and pictures to show."""
    from . import model_cache

    bundle = model_cache.registry_explainer(model, "demo").bundle
    folder = demo_folder(audit_root())
    scenes = tank_dataset(DEMO_COUNT, DEMO_SEED, light="clean")
    image_set = picture_set(folder)
    order = [int(p.stem) for p in image_set.paths]
    boxes: list[tuple[int, int, int, int] | None] = [
        (int(b[0]), int(b[1]), int(b[2]), int(b[3])) if (b := scenes.boxes[i])[0] >= 0 else None for i in order
    ]
    sunny = scenes.sunny[order]
    result = audit(bundle, image_set, boxes=boxes, size=16)
    flagged = []
    for cluster in result.flagged():
        share = float(sunny[list(cluster.members)].mean())
        weather = (
            "all sunny"
            if share == 1
            else "all cloudy"
            if share == 0
            else f"{share:.0%} sunny"
            if share >= 0.5
            else f"{1 - share:.0%} cloudy"
        )
        flagged.append(
            {
                "label": cluster.label,
                "sentence": describe(cluster, result),
                "suspicion": cluster.suspicion,
                "weather": weather,
                "pictures": [mean_map_png(cluster)] + [picture_png(result, m) for m in cluster.prototypes[:3]],
            }
        )
    return {
        "pictures": int(result.read.sum()),
        "flagged": flagged,
        "highest": max((c.suspicion for c in result.clusters), default=0.0),
    }


def map_methods() -> list[str]:
    """The methods an audit may map with: one map per picture, no extra forward passes (a set has thousands); the
    engine's default (`cnnvis_engine.audit.audit`'s `method`) first, so the page starts with it."""
    default = inspect.signature(audit).parameters["method"].default
    offered = [m for m, method in METHODS.items() if method.scorable and not method.slow]
    return sorted(offered, key=lambda m: m != default)
