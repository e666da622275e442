"""The folder report: explain every picture in a folder and write one PNG and one HTML page per picture plus an
index table (index.html, index.csv) with the prediction, the layer and Grad-CAM's faithfulness scores.

    write_folder_report(bundle, Path("photos"), Path("report"), ReportSettings(methods=("gradcam", "cam")))

Images go through `Explainer.explain_batch` `batch_size` at a time on the model's device; the panels are drawn by
`render` and laid out by `report`, exactly as the dashboard draws them. The command line (`cnnvis report`,
`python -m cnnvis_engine report`) is `cnnvis.report`'s.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .errors import EngineError, ImageError
from .explainer import Explainer, Explanation
from .faithfulness import Faithfulness, evaluate_maps
from .images import UPLOAD_EXTENSIONS, DecodedImage, decode_image
from .methods import METHODS, MethodResult
from .models import ModelBundle
from .pages import render_page
from .render import ReportPanel, draw, result_panel
from .report import ReportStamp, library_versions, render_panel_png, render_report_html, render_report_png

SCORED = "gradcam"  # the method whose map the index scores
COLUMNS = (
    "image",
    "prediction",
    "probability",
    "target",
    "layer",
    "deletion_auc",
    "insertion_auc",
    "average_drop",
    "png",
    "html",
    "error",
)


@dataclass
class Row:
    image: str
    prediction: str = ""
    probability: float | None = None
    target: str = ""
    layer: str = ""
    deletion_auc: float | None = None
    insertion_auc: float | None = None
    average_drop: float | None = None
    png: str = ""
    html: str = ""
    error: str = ""

    def values(self) -> list[str]:
        values = [getattr(self, column) for column in COLUMNS]
        return ["" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in values]


@dataclass(frozen=True)
class ReportSettings:
    """What to explain and how to draw it; `layer`/`target` None: each method's default layer, each picture's top-1."""

    methods: tuple[str, ...] = ("gradcam",)
    layer: str | None = None
    target: int | None = None
    batch_size: int = 8  # pictures per batch
    steps: int = 50  # deletion/insertion steps for the index
    colormap: str = "jet"
    opacity: float = 0.5  # how strongly maps cover the picture


@dataclass(frozen=True)
class FolderReport:
    rows: tuple[Row, ...]  # one per picture file, sorted by name; failed ones carry their error
    out: Path

    @property
    def errors(self) -> int:
        return sum(1 for row in self.rows if row.error)


def check_settings(settings: ReportSettings) -> None:
    """EngineError for an unknown method, no method at all, or a batch size below 1."""
    unknown = [m for m in settings.methods if m not in METHODS]
    if unknown or not settings.methods:
        raise EngineError(f"Unknown method '{unknown[0] if unknown else ''}'. Available methods: {', '.join(METHODS)}.")
    if settings.batch_size < 1:
        raise EngineError("The batch size must be at least 1.")


def report_files(images: Path) -> list[Path]:
    """The pictures in folder `images` (by extension, sorted); EngineError when there are none."""
    found = images.iterdir() if images.is_dir() else []
    files = sorted(p for p in found if p.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS)
    if not files:
        raise EngineError(f"There are no pictures ({', '.join(UPLOAD_EXTENSIONS)}) in {images}.")
    return files


def write_folder_report(
    bundle: ModelBundle,
    images: Path,
    out: Path,
    settings: ReportSettings,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> FolderReport:
    """Explain every picture in `images` on the device `bundle.module` is on and write the pages and the index into
    `out` (created). `progress(done, total)` is called after each batch. Raises EngineError as `check_settings` and
    `report_files` do; a picture that cannot be read is a row with its error."""
    check_settings(settings)
    methods = list(settings.methods)
    files = report_files(images)
    device = next(bundle.module.parameters(), torch.empty(0)).device
    explainer = Explainer(bundle, cache_size=0)
    out.mkdir(parents=True, exist_ok=True)
    versions = {**library_versions(), "device": str(device)}
    rows: list[Row] = []
    done = 0
    for batch in _batches(files, settings.batch_size):
        decoded, failed = _decode_all(batch)
        rows += failed
        if decoded:
            rows += _report_batch(explainer, decoded, methods, settings, out, versions)
        done += len(batch)
        if progress is not None:
            progress(done, len(files))
    rows.sort(key=lambda row: row.image)
    _write_index(out, rows, bundle)
    return FolderReport(tuple(rows), out)


def _batches(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


def _decode_all(files: Iterable[Path]) -> tuple[list[tuple[Path, DecodedImage]], list[Row]]:
    decoded, failed = [], []
    for path in files:
        try:
            decoded.append((path, decode_image(path)))
        except ImageError as error:
            failed.append(Row(image=path.name, error=str(error)))
    return decoded, failed


def _report_batch(
    explainer: Explainer,
    decoded: list[tuple[Path, DecodedImage]],
    methods: list[str],
    settings: ReportSettings,
    out: Path,
    versions: dict[str, str],
) -> list[Row]:
    bundle = explainer.bundle
    wanted = list(dict.fromkeys([*methods, SCORED]))
    images = [image for _, image in decoded]
    explanations = explainer.explain_batch(images, layer=settings.layer, targets=settings.target, methods=wanted)
    scored = [e[SCORED] for e in explanations]
    usable = [i for i, result in enumerate(scored) if result.applicable]
    scores: dict[int, Faithfulness] = {}
    if usable:
        found = evaluate_maps(
            bundle,
            [images[i] for i in usable],
            [scored[i].arrays()[0] for i in usable],
            [explanations[i].target for i in usable],
            steps=settings.steps,
            batch_size=max(64, settings.batch_size),
        )
        scores = dict(zip(usable, found))
    rows = []
    for i, ((path, _), explanation) in enumerate(zip(decoded, explanations)):
        top = explanation.predictions[0]
        faith = scores.get(i)
        shown = {"Methods": ", ".join(methods), "Prediction": f"{top.name} ({top.probability:.1%})"}
        if faith is not None:
            shown["Grad-CAM faithfulness"] = (
                f"deletion AUC {faith.deletion.auc:.3f} (low is good), insertion AUC {faith.insertion.auc:.3f} "
                f"(high is good), average drop {faith.average_drop:.1%}"
            )
        stamp = ReportStamp(
            model=bundle.name,
            weights=" ".join(filter(None, [bundle.weights_source, bundle.weights_detail])),
            layer=explanation.layer or "",
            target=explanation.target.label,
            image=path.name,
            settings=shown,
            versions=versions,
        )
        drawn = {
            m: result_panel(
                explanation[m], explanation.image, explanation.target.label, settings.colormap, settings.opacity
            )
            for m in methods
        }
        panels = [
            ReportPanel("Image", explanation.image, caption=f"{top.name} · {top.probability:.1%}"),
            *drawn.values(),
        ]
        stem = path.stem
        for method, panel in drawn.items():  # each as the dashboard's panel download saves it
            if panel.picture is not None:
                (out / f"{stem}.{method.replace('+', 'p')}.png").write_bytes(render_panel_png(panel))
        (out / f"{stem}.png").write_bytes(render_report_png(panels, stamp))
        (out / f"{stem}.html").write_text(render_report_html(panels, stamp), encoding="utf-8")
        _write_thumbnail(out / _thumbnail_name(f"{stem}.png"), explanation, scored[i], settings.colormap)
        rows.append(
            Row(
                image=path.name,
                prediction=top.name,
                probability=top.probability,
                target=explanation.target.label,
                layer=explanation.layer or "",
                deletion_auc=faith.deletion.auc if faith else None,
                insertion_auc=faith.insertion.auc if faith else None,
                average_drop=faith.average_drop if faith else None,
                png=f"{stem}.png",
                html=f"{stem}.html",
            )
        )
    return rows


THUMBNAIL = 96  # px, the longer side of an index thumbnail


def _thumbnail_name(png: str) -> str:
    return png.removesuffix(".png") + ".thumb.jpg"


def _write_thumbnail(path: Path, explanation: Explanation, result: MethodResult, colormap: str) -> None:
    """The index's small picture: the Grad-CAM overlay when it applies, else the image the model saw."""
    picture = draw(result, explanation.image, colormap) if result.applicable else explanation.image
    thumb = Image.fromarray(picture)
    thumb.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
    thumb.save(path, format="JPEG", quality=85)


def _write_index(out: Path, rows: list[Row], bundle: ModelBundle) -> None:
    with (out / "index.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(row.values() for row in rows)
    shown = [
        {
            "cells": row.values()[: len(COLUMNS) - 3],
            "thumbnail": _thumbnail_name(row.png) if row.png else "",
            "html": row.html,
            "png": row.png,
            "error": row.error,
        }
        for row in rows
    ]
    page = render_page(
        "index.html",
        title=f"cnnvis report: {bundle.name}",
        columns=[c.replace("_", " ") for c in COLUMNS[:-3]],
        rows=shown,
        thumbnail=THUMBNAIL,
    )
    (out / "index.html").write_text(page, encoding="utf-8")
