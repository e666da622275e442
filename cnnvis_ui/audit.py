"""The Audit page's helpers: which folders a visitor may audit, zip uploads, the cached audit run, the pictures
and tables it shows, and the page's session keys.

Visitors are strangers: only folders under the audit root (`CNNVIS_AUDIT_ROOT`, default a `cnnvis-audit` folder
in the system's temporary folder) are read, checked on the real path, so neither `..` nor a symbolic link leads
out of it. A zip upload is bounded (size, number of files, uncompressed total) and its member names may not
climb out of the folder it is unpacked into. Results are cached per model, folder (and its files' names, sizes
and times) and settings.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import itertools
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
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
from cnnvis_engine.images import within
from cnnvis_engine.render import render_heatmap, render_overlay

from .audit_folders import audit_root
from .compute import slow_job

# Session keys of the page.
FOLDER = "audit_folder"  # the folder chosen (a path under the root)
METHOD = "audit_method"
SIZE = "audit_size"
RUN = "audit_run"  # the settings of the audit last run in this session: {"model", "weights", "folder", ...}
CLASS = "audit_class"
ZIP = "_w_audit_zip"
ZIP_ERROR = "audit_zip_error"
CLASS_OF = "audit_class_of"  # {folder name: the model's class it is}, chosen on the page where the names differ
ZIP_NAMES = "audit_zip_names"  # {folder: the uploaded zip's own file name}, for this session's uploads

SIZES = (16, 32)
DEMO_FOLDER = "tank-photos"  # made on first use: 120 drawn field scenes, sun and clouds at random
DEMO_COUNT, DEMO_SEED = 120, 4242
MAX_ZIP_BYTES = 20 * 1024 * 1024
MAX_ZIP_FILES = 2000
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
MAX_NAME_CHARS = 1024  # a member's whole path; each folder level at most 255 bytes, as on most file systems
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
GRID_LIMIT = 24  # selected pictures shown at once
COLOURS = ("#e4572e", "#2e86ab", "#f3a712", "#6a994e", "#8d6a9f", "#29335c", "#c44569", "#7f8c8d")


def inside_root(path: Path, root: Path) -> bool:
    """Whether `path`'s real path (every link followed) lies under `root` (itself a real path)."""
    return within(os.path.realpath(path), str(root))


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
    """The folders a visitor can pick: the demo set, then every folder under the root, then the zips `owner` (this
    browser session) uploaded, under `uploads/<owner>/` (not hidden ones: a zip being unpacked), each only if its
    real path stays under the root. Another session's uploads are never offered."""
    root = root or audit_root()
    demo_folder(root)
    found = sorted(p.name for p in _subfolders(root, root) if p.name != "uploads")
    mine = root / "uploads" / owner if owner else None
    if mine is not None and mine.is_dir() and not mine.is_symlink() and inside_root(mine, root):
        found += sorted(f"uploads/{owner}/{p.name}" for p in _subfolders(mine, root))
    return found


def unknown_class_folders(folder: Path, class_names: tuple[str, ...]) -> list[str]:
    """The class folders of `folder` (not hidden ones, real paths inside it) whose names are none of the model's
    classes (case aside): the ones a person may map to a class."""
    known = {name.lower() for name in class_names}
    return sorted(p.name for p in _subfolders(folder, folder) if p.name.lower() not in known)


def _subfolders(folder: Path, root: Path) -> list[Path]:
    return [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir() and inside_root(p, root)]


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


def unpack_zip(data: bytes, root: Path | None = None, *, owner: str) -> str:
    """Unpack an uploaded zip under root/uploads/<owner>/zip-<its sha256>, private to `owner` (the uploading
    browser session, whose uploads are deleted once it has gone); returns that folder relative to the root.

    Every member is checked before anything is written (`zip_plan`), then the zip is unpacked into a fresh hidden
    folder beside and renamed into place in one step: the folder exists only complete, so no marker file (which
    a member could forge) says whether it is, and a refusal or crash half-way leaves nothing behind."""
    root = root or audit_root()
    if len(data) > MAX_ZIP_BYTES:
        raise AuditError(f"The zip is {len(data) / 2**20:.1f} MB; the limit is {MAX_ZIP_BYTES // 2**20} MB.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError) as error:
        raise AuditError("This file is not a zip archive that can be read.") from error
    with archive:
        plan = zip_plan(archive, len(data))
        if not re.fullmatch(r"[A-Za-z0-9_ -]{1,64}", owner) or owner.strip() != owner:
            raise AuditError("This upload does not belong to a browser session, so it is not kept.")
        name = f"{owner}/zip-{hashlib.sha256(data).hexdigest()[:16]}"
        uploads = root / "uploads" / owner
        uploads.mkdir(parents=True, exist_ok=True)
        target = root / "uploads" / name
        if target.is_dir() and not target.is_symlink():  # the same zip, unpacked before: it is complete
            return f"uploads/{name}"
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=uploads))
        try:
            _unpack(archive, plan, partial)
            try:
                os.rename(partial, target)
            except OSError:  # another session unpacked the same zip meanwhile: keep theirs
                if not target.is_dir():
                    raise
                shutil.rmtree(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return f"uploads/{name}"


def zip_plan(archive: zipfile.ZipFile, size: int) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members to unpack with their path parts, or an AuditError with one sentence for the first member that
    cannot be unpacked as a plain file or folder under the upload's own folder."""
    entries = archive.infolist()
    if len(entries) > MAX_ZIP_FILES:
        raise AuditError(f"The zip holds {len(entries):,} files and folders; the limit is {MAX_ZIP_FILES:,}.")
    files = [m for m in entries if not m.filename.endswith("/")]
    if not files:
        raise AuditError("The zip is empty: it holds no files to audit.")
    if sum(m.file_size for m in files) > MAX_UNZIPPED_BYTES:
        raise AuditError(f"The zip unpacks to more than {MAX_UNZIPPED_BYTES // 2**20} MB.")
    _refuse_overlaps(entries, size)
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    seen: dict[tuple[str, bool], str] = {}  # (the name as a case-blind file system sees it, a folder?) -> name
    folders: set[str] = set()
    for m in entries:
        parts = _member_parts(m)
        key = "/".join(unicodedata.normalize("NFC", part).casefold() for part in parts)
        is_dir = m.filename.endswith("/")
        earlier = seen.get((key, is_dir))
        if earlier is not None:
            what = (
                "twice"
                if earlier == m.filename
                else f"and '{_shown(earlier)}', which some file systems take for one name"
            )
            raise AuditError(f"The zip holds '{_shown(m.filename)}' {what}; it is refused.")
        seen[(key, is_dir)] = m.filename
        folders.update("/".join(key.split("/")[:depth]) for depth in range(1, len(parts) + is_dir))
        plan.append((m, parts))
    for (key, is_dir), name in seen.items():
        if not is_dir and key in folders:
            raise AuditError(
                f"The zip holds both a file and a folder named '{_shown(name)}'; one name cannot be both, so it "
                "is refused."
            )
    return plan


def _member_parts(m: zipfile.ZipInfo) -> tuple[str, ...]:
    """The parts of a member's path, or an AuditError saying in a sentence why the member is refused."""
    raw = m.orig_filename  # before zipfile cut it at a NUL byte
    shown = _shown(raw)
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise AuditError(f"The zip's member name '{shown}' holds control characters (a NUL, say); it is refused.")
    name = raw.replace("\\", "/")
    parts = name.rstrip("/").split("/")
    if name.startswith("/") or ".." in parts or re.match(r"[A-Za-z]:", name):
        raise AuditError(f"The zip's member name '{shown}' points outside its folder; it is refused.")
    if "\\" in raw:
        raise AuditError(
            f"The zip's member name '{shown}' separates folders with backslashes (a Windows path); zip the folder "
            "again with a standard tool."
        )
    if ":" in raw:
        raise AuditError(
            f"The zip's member name '{shown}' holds a colon (a drive or hidden stream on Windows); it is refused."
        )
    if len(raw) > MAX_NAME_CHARS or any(len(part.encode()) > 255 for part in parts):
        raise AuditError(
            f"The zip's member name '{shown}' is too long ({len(raw):,} characters; at most 255 bytes a folder level "
            f"and {MAX_NAME_CHARS:,} in all); it is refused."
        )
    if any(part in ("", ".") for part in parts):
        raise AuditError(f"The zip's member name '{shown}' holds an empty or '.' folder level; it is refused.")
    mode = m.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise AuditError(f"The zip's member '{shown}' is a link; links are refused.")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise AuditError(f"The zip's member '{shown}' is a device, pipe or socket, not a file; it is refused.")
    if m.filename.endswith("/") and (m.file_size or m.compress_size):
        raise AuditError(f"The zip's member '{shown}' is a folder entry that holds data; it is refused.")
    if m.flag_bits & 0x1:
        raise AuditError(f"The zip's member '{shown}' is encrypted (password-protected); unpack it and zip it again.")
    if m.compress_type not in ZIP_METHODS:
        raise AuditError(
            f"The zip's member '{shown}' is compressed in a way this server cannot unpack (method "
            f"{m.compress_type}); zip it again with the usual (deflate) compression."
        )
    return tuple(parts)


def _refuse_overlaps(entries: list[zipfile.ZipInfo], size: int) -> None:
    """Entries whose data overlap (one local header quoted inside another's data: the zip bomb of
    CVE-2024-0450, which Python 3.11.7's zipfile does not catch) or reach past the central directory."""
    spans = sorted((m.header_offset, m.header_offset + 30 + _name_bytes(m) + m.compress_size) for m in entries)
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise AuditError("The zip's entries overlap each other (a zip bomb's trick); it is refused.")
    if spans and spans[-1][1] > size:
        raise AuditError("The zip's entries reach past its end; it is damaged, so it is refused.")


def _name_bytes(m: zipfile.ZipInfo) -> int:
    """The length of a member's name as stored (UTF-8 when flagged, else code page 437); 0 if it cannot be told."""
    try:
        return len(m.orig_filename.encode("utf-8" if m.flag_bits & 0x800 else "cp437"))
    except UnicodeEncodeError:
        return 0


def _unpack(archive: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], folder: Path) -> None:
    """Write the planned members under `folder` (fresh and empty): new files only, never through a link."""
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for m, parts in plan:
        path = folder.joinpath(*parts)
        if m.filename.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(m) as source:
                content = source.read(m.file_size + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError, NotImplementedError, OSError) as e:
            raise AuditError(f"The zip's member '{_shown(m.filename)}' is damaged and cannot be unpacked.") from e
        written += len(content)
        if len(content) != m.file_size or written > MAX_UNZIPPED_BYTES:
            raise AuditError("The zip's sizes do not match its contents; it is refused.")
        with os.fdopen(os.open(path, flags, 0o644), "wb") as handle:
            handle.write(content)


def _shown(name: str) -> str:
    """A member name fit for a sentence: control characters escaped, at most 80 characters."""
    text = "".join(c if 32 <= ord(c) != 127 else f"\\x{ord(c):02x}" for c in name)
    return text if len(text) <= 80 else text[:77] + "..."


def picture_set(folder: Path) -> ImageSet:
    """The folder's pictures. The engine checks each file's and subfolder's real path while listing (a link
    leading out of the folder is skipped and listed, as are pipes and devices) and again when opening a picture."""
    return read_image_set(folder)


def signature(folder: Path) -> str:
    """Names, sizes and modification times of the folder's entries (links as links, never followed): a new or
    changed file is a new audit."""
    digest = hashlib.sha256()
    for top, subfolders, files in os.walk(folder):  # os.walk does not follow links to folders
        subfolders.sort()
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
    `compute.randomisation` does)."""
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
        name = f"cluster {number} · {c.size} pictures" + (" · flagged ⚠" if c.flagged else "")
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
    from . import compute

    bundle = compute.registry_explainer(model, "demo").bundle
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
