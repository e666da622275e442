"""`audit`: explain every picture of a set, then run SpRAy per class (see `spectral`) and rank the clusters.

from cnnvis_engine.audit import audit
result = audit(bundle, "photos/")           # photos/<class>/<picture>.png
worst = result.clusters[0]                   # the most suspicious cluster of any class
worst.label, worst.members, worst.suspicion, worst.mean_map
worst.flagged, worst.reasons                 # whether the evidence points at a shortcut, and why ("spot", ...)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..explainer import Explainer
from ..models.bundle import ModelBundle
from .dataset import AuditError, ImageSet, ImageSource, Skipped, read_image_set
from .localisation import Region
from .maps import MapTable, Progress, check_method, collect_maps, stream_maps
from .parallel import Engine, map_classes, workers_for
from .ray_engine import ray_batches, ray_session
from .spectral import analyse_class, layout_2d
from .verdict import SUSPICIOUS, Evidence, kin, weigh

PROTOTYPES = 6  # members shown per cluster: those whose maps are nearest the cluster's mean map


@dataclass(frozen=True)
class Cluster:
    """One SpRAy cluster of one class: `members` are indices into the input order."""

    label: str  # the class it belongs to
    number: int  # within the class, 0..; by first appearance in the input
    members: tuple[int, ...]
    suspicion: (
        float  # the verdict's strongest reason, scaled so 0.4 flags (`verdict`); the group's size never lowers it
    )
    mean_map: np.ndarray  # (size, size) float32, sums to 1
    accuracy: float | None  # share of members the model got right (None without labels)
    share: float  # members / pictures of the class
    conductance: float  # how strongly the cluster connects to the rest of its class (0: not at all)
    prototypes: tuple[int, ...]  # members nearest the mean map, nearest first
    pointing: float | None = None  # mean pointing game over members with a known object region
    mass_inside: float | None = None  # mean relevance mass inside the object
    evidence: Evidence | None = None  # what the verdict saw (`verdict.weigh`); `suspicion` is its strongest reason

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def flagged(self) -> bool:
        return self.suspicion >= SUSPICIOUS

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why it is flagged: "spot", "off object", "accuracy" (see `verdict`), strongest first; () if it is not."""
        return self.evidence.reasons if self.evidence is not None else ()


@dataclass(frozen=True)
class ClassView:
    """One class's pictures (input indices), their 2-D layout and cluster numbers, for plots."""

    label: str
    members: tuple[int, ...]
    layout: np.ndarray  # (n, 2) float32
    clusters: np.ndarray  # (n,) int: cluster number of each member
    eigenvalues: np.ndarray
    note: str = ""


@dataclass(frozen=True)
class Audit:
    """The whole audit. Per-picture arrays are in input order (length = pictures found); pictures that could
    not be read have `read` False and a uniform map."""

    names: tuple[str, ...]  # paths relative to the set's folder
    paths: tuple[str, ...]
    labels: tuple[str | None, ...]  # given labels
    read: np.ndarray  # (N,) bool
    predicted: np.ndarray  # (N,) int64, -1 where unread
    probability: np.ndarray  # (N,) float32
    target: np.ndarray  # (N,) int64: the class each map explains
    correct: np.ndarray  # (N,) float: 1 / 0, NaN where the label is unknown or the picture unread
    maps: np.ndarray  # (N, size, size) float16, each sums to 1
    pointing: np.ndarray  # (N,) float64, NaN without a region
    mass_inside: np.ndarray  # (N,) float64
    clusters: list[Cluster]  # every class's clusters, most suspicious first
    classes: dict[str, ClassView]
    class_names: tuple[str, ...]
    model: str
    method: str
    layer: str | None
    size: int
    group: str  # "true" or "predicted": which label the classes are
    skipped: tuple[Skipped, ...] = ()
    notes: tuple[str, ...] = ()
    settings: dict[str, object] = field(default_factory=dict)
    bound: str | None = None  # the real folder the pictures were listed in; they are opened only inside it

    def flagged(self, threshold: float = SUSPICIOUS) -> list[Cluster]:
        return [c for c in self.clusters if c.suspicion >= threshold]

    def for_class(self, label: str) -> list[Cluster]:
        return [c for c in self.clusters if c.label == label]

    def predicted_name(self, index: int) -> str:
        p = int(self.predicted[index])
        return self.class_names[p] if 0 <= p < len(self.class_names) else ""


def audit(
    bundle: ModelBundle,
    images: ImageSource,
    labels: Sequence[str | int | None] | None = None,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    size: int = 32,
    classes: Sequence[str] | None = None,
    boxes: Sequence[Region | None] | None = None,
    progress: Progress | None = None,
    group: Literal["true", "predicted"] | None = None,
    neighbours: int = 10,
    clusters: int | None = None,
    batch_size: int = 32,
    seed: int = 0,
    engine: Engine = "local",
    ray_address: str | None = None,
    workers: int = 2,
    class_of: Mapping[str, str] | None = None,
    analysis_workers: int | None = None,
) -> Audit:
    """Explain every picture of `images` (a folder of class folders, a flat folder, a CSV of `path,label`, or
    a list of paths with `labels`) with `method` at `layer`, keep its map at `size`×`size`, and run SpRAy per
    class (`group`: the true label where known, else the prediction; `classes` restricts which). `boxes`
    gives, per picture, the object's box (x0, y0, x1, y1) in its own pixels or an (H, W) mask, or None.
    `engine="ray"` explains on Ray Data (`ray_engine`), results equal. `class_of` maps labels (folder names) to
    the model's class names where they differ ({"kitty": "tabby cat"}). Each class is analysed (clustered, weighed,
    laid out) on its own: in parallel local processes (`analysis_workers`; by default `parallel.workers_for`), or as
    Ray tasks with the Ray engine; results equal. Raises AuditError on bad input."""
    if bundle.task != "classification":
        raise AuditError(f"An audit clusters the maps of classes; {bundle.name} is a {bundle.task} model.")
    if size < 4 or size > 256:
        raise AuditError(f"The map size must be between 4 and 256 pixels; got {size}.")
    check_method(method)
    if engine not in ("local", "ray"):
        raise AuditError(f"Unknown engine '{engine}'; choose local or ray.")
    image_set = read_image_set(images, labels)
    if boxes is not None and len(boxes) != len(image_set):
        raise AuditError(f"There are {len(image_set)} pictures but {len(boxes)} boxes; give one per picture (or None).")
    notes: list[str] = []
    label_index, unknown = _label_indices(image_set, bundle.class_names, class_of or {})
    group = group or ("true" if any(i is not None for i in label_index) else "predicted")
    if unknown:
        notes.append(_unknown_labels_note(unknown, bundle.class_names, group))
    targets = label_index if group == "true" else [None] * len(image_set)
    with ray_session(ray_address, workers) if engine == "ray" else nullcontext():  # one Ray for both stages
        if engine == "ray":
            batches = ray_batches(
                bundle,
                image_set,
                targets,
                method=method,
                layer=layer,
                size=size,
                regions=boxes,
                batch_size=batch_size,
                address=ray_address,
                workers=workers,
                progress=progress,
            )
        else:
            explainer = Explainer(bundle, cache_size=0)
            batches = stream_maps(
                explainer,
                image_set,
                targets,
                method=method,
                layer=layer,
                size=size,
                regions=boxes,
                batch_size=batch_size,
                progress=progress,
            )
        table = collect_maps(batches, len(image_set), size)
        if not table.read.any():
            raise AuditError(
                f"None of the {len(image_set)} pictures could be read; see the skipped list: "
                f"{_first_reasons(table.skipped)}"
            )
        n = len(image_set)
        correct = np.full(n, np.nan)
        for i, known in enumerate(label_index):
            if known is not None and table.read[i]:
                correct[i] = float(table.predicted[i] == known)
        names = bundle.class_names
        group_of = [
            None
            if not table.read[i]
            else (image_set.labels[i] if index is None else names[index])
            if group == "true"
            else (names[table.predicted[i]] if table.predicted[i] < len(names) else f"class {table.predicted[i]}")
            for i, index in enumerate(label_index)
        ]
        wanted = set(classes) if classes is not None else None
        if wanted is not None and not wanted & {g for g in group_of if g is not None}:
            raise AuditError(f"None of the classes {', '.join(sorted(wanted))} occurs among the pictures.")
        jobs = []
        for label in dict.fromkeys(g for g in group_of if g is not None):
            if wanted is not None and label not in wanted:
                continue
            members = np.array([i for i in range(n) if group_of[i] == label and table.read[i]], np.int64)
            if len(members):
                jobs.append(_job(label, members, table, correct, neighbours, clusters, seed))
        count = workers_for([len(job.members) for job in jobs], analysis_workers)
        analysed = map_classes(analyse_class_job, jobs, engine=engine, workers=count)
    found_clusters: list[Cluster] = []
    views: dict[str, ClassView] = {}
    for view, cls_clusters in analysed:
        views[view.label] = view
        found_clusters += cls_clusters
        if view.note:
            notes.append(f"'{view.label}': {view.note}.")
    if len(views) == 1:
        notes.append("There is only one class, so every cluster is compared with the rest of that class only.")
    found_clusters.sort(key=lambda c: (-c.suspicion, c.label, c.number))
    return Audit(
        names=tuple(image_set.name(i) for i in range(n)),
        paths=tuple(str(p) for p in image_set.paths),
        labels=image_set.labels,
        read=table.read,
        predicted=table.predicted,
        probability=table.probability,
        target=table.target,
        correct=correct,
        maps=table.maps,
        pointing=table.pointing,
        mass_inside=table.mass,
        clusters=found_clusters,
        classes=views,
        class_names=tuple(names),
        model=bundle.name,
        method=method,
        layer=layer or table.layer,
        size=size,
        group=group,
        skipped=tuple(image_set.skipped) + tuple(table.skipped),
        notes=tuple(notes),
        bound=None if image_set.bound is None else str(image_set.bound),
        settings={
            "method": method,
            "layer": layer,
            "size": size,
            "neighbours": neighbours,
            "clusters": clusters,
            "group": group,
            "engine": engine,
            "seed": seed,
        },
    )


def _label_indices(
    image_set: ImageSet, class_names: Sequence[str], class_of: Mapping[str, str]
) -> tuple[list[int | None], dict[str, int]]:
    """Each given label (through `class_of` where it maps it) as the model's class index, None where there is none
    or the model does not know it; and the unknown labels with their counts."""
    exact = {name: i for i, name in enumerate(class_names)}
    folded = {name.lower(): i for i, name in enumerate(class_names)}
    missing = [target for target in class_of.values() if target not in exact and target.lower() not in folded]
    if missing:
        raise AuditError(
            f"The model has no class named {missing[0]!r}; map each folder to one of its classes "
            f"({', '.join(class_names[:8])}{', …' if len(class_names) > 8 else ''})."
        )
    out: list[int | None] = []
    unknown: dict[str, int] = {}
    for given in image_set.labels:
        if given is None:
            out.append(None)
            continue
        label = class_of.get(given, given)
        index = exact.get(label, folded.get(label.lower()))
        if index is None and label.isdigit() and int(label) < len(class_names):
            index = int(label)
        if index is None:
            unknown[given] = unknown.get(given, 0) + 1
        out.append(index)
    return out, unknown


def _unknown_labels_note(unknown: dict[str, int], class_names: Sequence[str], group: str) -> str:
    """What happens to pictures whose label is none of the model's classes, as it does happen."""
    listed = ", ".join(f"'{k}' ({v})" for k, v in list(unknown.items())[:5])
    shown = ", ".join(class_names[:8]) + (", …" if len(class_names) > 8 else "")
    if group == "predicted":
        return (
            f"None of the labels is one of the model's classes ({listed}; the model's are {shown}), so every picture "
            "is explained for the class the model predicts and grouped by that prediction, not by its folder; "
            "whether the model is right is unknown. Name the folders after the model's classes, or say which class "
            "each folder is (on the Audit page under 'Which class is each folder?', --class-of FOLDER=CLASS in the "
            "command)."
        )
    return (
        f"{sum(unknown.values())} pictures have labels the model does not know: {listed}. The model's classes are "
        f"{shown}. Those pictures are explained for their predicted class, grouped under their folder's name, and "
        "whether the model is right on them is unknown; say which class each folder is (on the Audit page under "
        "'Which class is each folder?', --class-of FOLDER=CLASS in the command)."
    )


@dataclass(frozen=True)
class ClassJob:
    """One class's analysis, all it needs (its own rows of the audit's arrays), sent whole to a worker."""

    label: str
    members: np.ndarray  # (n,) int64: input indices
    maps: np.ndarray  # (n, size, size) float16
    correct: np.ndarray  # (n,) 1 / 0 / NaN
    mass: np.ndarray  # (n,) relevance mass inside the object, NaN without a region
    pointing: np.ndarray  # (n,)
    neighbours: int
    clusters: int | None
    seed: int


def _job(
    label: str,
    members: np.ndarray,
    table: MapTable,
    correct: np.ndarray,
    neighbours: int,
    clusters: int | None,
    seed: int,
) -> ClassJob:
    """The class `label`'s own rows of the audit's arrays (`members`: their input indices)."""
    return ClassJob(
        label,
        members,
        table.maps[members],
        correct[members],
        table.mass[members],
        table.pointing[members],
        neighbours,
        clusters,
        seed,
    )


def analyse_class_job(job: ClassJob) -> tuple[ClassView, list[Cluster]]:
    """SpRAy, the verdict and the 2-D layout of one class (`parallel.map_classes` runs it per class)."""
    members = job.members
    maps = job.maps.astype(np.float32)
    spectrum = analyse_class(maps, neighbours=job.neighbours, clusters=job.clusters, seed=job.seed)
    view = ClassView(
        job.label,
        tuple(int(m) for m in members),
        layout_2d(maps, job.seed),
        spectrum.labels,
        spectrum.eigenvalues,
        spectrum.note,
    )
    out = []
    contrasts = kin(maps, spectrum.labels, spectrum.clusters)
    for c in range(spectrum.clusters):
        inside = spectrum.labels == c
        chosen = members[inside]
        mean = maps[inside].mean(axis=0)
        distance = ((maps[inside] - mean) ** 2).reshape(int(inside.sum()), -1).sum(axis=1)
        rights = job.correct[inside]
        known = rights[np.isfinite(rights)]
        evidence = weigh(
            maps,
            inside,
            job.correct,
            job.mass,
            job.pointing,
            float(spectrum.conductance[c]) if spectrum.clusters > 1 else 1.0,
            contrasts[c],
        )
        out.append(
            Cluster(
                label=job.label,
                number=c,
                members=tuple(int(m) for m in chosen),
                suspicion=evidence.suspicion,
                mean_map=mean.astype(np.float32),
                accuracy=float(known.mean()) if len(known) else None,
                share=float(inside.mean()),
                conductance=float(spectrum.conductance[c]),
                prototypes=tuple(int(chosen[j]) for j in np.argsort(distance, kind="stable")[:PROTOTYPES]),
                pointing=_mean(job.pointing[inside]),
                mass_inside=_mean(job.mass[inside]),
                evidence=evidence,
            )
        )
    return view, out


def _mean(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else None


def _first_reasons(skipped: list[Skipped]) -> str:
    return "; ".join(f"{s.path}: {s.reason}" for s in skipped[:3])
