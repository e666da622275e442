"""The report command: explain every picture in a folder and write one PNG and one HTML page per picture
plus an index table (index.html, index.csv) with the prediction, the layer and Grad-CAM's faithfulness scores.

    python -m cnnvis_engine report --model resnet50 --weights pretrained --images photos/ \\
        --methods gradcam,cam,integrated_gradients --out report/ [--layer layer4] [--target 281] \\
        [--device cuda] [--batch-size 16] [--steps 50]

Images go through `Explainer.explain_batch` `--batch-size` at a time on the GPU when there is one; the
panels are drawn by `render` and laid out by `report`, exactly as the dashboard draws them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from .audit.cli import add_parser as add_audit_parser
from .errors import EngineError, ImageError
from .explainer import Explainer, Explanation
from .faithfulness import Faithfulness, evaluate_maps
from .images import UPLOAD_EXTENSIONS, DecodedImage, decode_image
from .methods import METHODS, MethodResult
from .models import ModelBundle
from .models.options import add_model_options, load_from_options
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnnvis_engine", description="cnnvis engine commands.")
    commands = parser.add_subparsers(dest="command", required=True)
    report = commands.add_parser("report", help="Explain every picture in a folder; write PNG/HTML pages and an index.")
    add_model_options(report)
    report.add_argument("--images", required=True, type=Path, help="folder of pictures")
    report.add_argument("--methods", default="gradcam", help=f"comma-separated: {', '.join(METHODS)}")
    report.add_argument("--layer", help="layer for layer-based methods (default: each method's default)")
    report.add_argument("--target", type=int, help="class index to explain (default: each picture's top-1)")
    report.add_argument("--out", required=True, type=Path, help="output folder (created)")
    report.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    report.add_argument("--batch-size", type=int, default=8, help="pictures per batch (default 8)")
    report.add_argument("--steps", type=int, default=50, help="deletion/insertion steps for the index (default 50)")
    report.add_argument("--colormap", default="jet", help="heat-map colours (default jet)")
    report.add_argument("--opacity", type=float, default=0.5, help="how strongly maps cover the picture (default 0.5)")
    add_audit_parser(commands)
    args = parser.parse_args(argv)
    try:
        return getattr(args, "run", run_report)(args)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run_report(args: argparse.Namespace) -> int:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise EngineError(f"Unknown method '{unknown[0] if unknown else ''}'. Available methods: {', '.join(METHODS)}.")
    if args.batch_size < 1:
        raise EngineError("The batch size must be at least 1.")
    found = args.images.iterdir() if args.images.is_dir() else []
    files = sorted(p for p in found if p.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS)
    if not files:
        raise EngineError(f"There are no pictures ({', '.join(UPLOAD_EXTENSIONS)}) in {args.images}.")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    bundle = load_from_options(args)
    bundle.module.to(device)
    explainer = Explainer(bundle, cache_size=0)
    args.out.mkdir(parents=True, exist_ok=True)
    versions = {**library_versions(), "device": str(device)}
    rows: list[Row] = []
    with Progress(len(files)) as advance:
        for batch in _batches(files, args.batch_size):
            decoded, failed = _decode_all(batch)
            rows += failed
            if decoded:
                rows += _report_batch(explainer, decoded, methods, args, versions)
            advance(len(batch))
    rows.sort(key=lambda row: row.image)
    _write_index(args.out, rows, bundle)
    errors = sum(1 for row in rows if row.error)
    ending = f"; {errors} pictures failed." if errors else "."
    print(f"Wrote {len(rows) - errors} reports and the index to {args.out}{ending}", file=sys.stderr)
    return 1 if errors == len(rows) else 0


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
    args: argparse.Namespace,
    versions: dict[str, str],
) -> list[Row]:
    bundle = explainer.bundle
    wanted = list(dict.fromkeys([*methods, SCORED]))
    images = [image for _, image in decoded]
    explanations = explainer.explain_batch(images, layer=args.layer, targets=args.target, methods=wanted)
    scored = [e[SCORED] for e in explanations]
    usable = [i for i, result in enumerate(scored) if result.applicable]
    scores: dict[int, Faithfulness] = {}
    if usable:
        found = evaluate_maps(
            bundle,
            [images[i] for i in usable],
            [scored[i].arrays()[0] for i in usable],
            [explanations[i].target for i in usable],
            steps=args.steps,
            batch_size=max(64, args.batch_size),
        )
        scores = dict(zip(usable, found))
    rows = []
    for i, ((path, _), explanation) in enumerate(zip(decoded, explanations)):
        top = explanation.predictions[0]
        faith = scores.get(i)
        settings = {"Methods": ", ".join(methods), "Prediction": f"{top.name} ({top.probability:.1%})"}
        if faith is not None:
            settings["Grad-CAM faithfulness"] = (
                f"deletion AUC {faith.deletion.auc:.3f} (low is good), insertion AUC {faith.insertion.auc:.3f} "
                f"(high is good), average drop {faith.average_drop:.1%}"
            )
        stamp = ReportStamp(
            model=bundle.name,
            weights=" ".join(filter(None, [bundle.weights_source, bundle.weights_detail])),
            layer=explanation.layer or "",
            target=explanation.target.label,
            image=path.name,
            settings=settings,
            versions=versions,
        )
        drawn = {
            m: result_panel(explanation[m], explanation.image, explanation.target.label, args.colormap, args.opacity)
            for m in methods
        }
        panels = [
            ReportPanel("Image", explanation.image, caption=f"{top.name} · {top.probability:.1%}"),
            *drawn.values(),
        ]
        stem = path.stem
        for method, panel in drawn.items():  # each as the dashboard's panel download saves it
            if panel.picture is not None:
                (args.out / f"{stem}.{method.replace('+', 'p')}.png").write_bytes(render_panel_png(panel))
        (args.out / f"{stem}.png").write_bytes(render_report_png(panels, stamp))
        (args.out / f"{stem}.html").write_text(render_report_html(panels, stamp), encoding="utf-8")
        _write_thumbnail(args.out / _thumbnail_name(f"{stem}.png"), explanation, scored[i], args.colormap)
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


class Progress:
    """A progress bar on stderr: tqdm when installed, else a plain one. `with Progress(total) as advance:`."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.close: Callable[[], object] | None = None  # the tqdm bar's, when tqdm is installed

    def __enter__(self) -> Callable[[int], object]:
        try:
            from tqdm import tqdm
        except ImportError:
            self._draw()
            return self._plain
        bar = tqdm(total=self.total, unit="image", file=sys.stderr)
        self.close = bar.close
        update: Callable[[int], object] = bar.update
        return update

    def __exit__(self, *exc: object) -> None:
        if self.close is not None:
            self.close()
        else:
            print(file=sys.stderr)

    def _plain(self, count: int) -> None:
        self.done += count
        self._draw()

    def _draw(self) -> None:
        filled = int(30 * self.done / max(self.total, 1))
        bar = "#" * filled + "." * (30 - filled)
        print(f"\r[{bar}] {self.done}/{self.total} images", end="", file=sys.stderr, flush=True)
