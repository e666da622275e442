"""`cnnvis report` (also `python -m cnnvis_engine report`): explain every picture in a folder, see
`cnnvis_engine.folder_report`.

    cnnvis report --model resnet50 --weights pretrained --images photos/ \\
        --methods gradcam,cam,integrated_gradients --out report/ [--layer layer4] [--target 281] \\
        [--device cuda] [--batch-size 16] [--steps 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeAlias

from cnnvis_engine.folder_report import ReportSettings, check_settings, report_files, write_folder_report
from cnnvis_engine.methods import METHODS
from cnnvis_engine.models.options import add_model_options, command_device, load_from_options

from .progress import progress_bar

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what add_subparsers returns


def add_parser(commands: Commands) -> argparse.ArgumentParser:
    """The `report` command's parser, with the shared model options; `run` is its action."""
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
    report.set_defaults(run=run)
    return report


def run(args: argparse.Namespace) -> int:
    """Check the settings and the folder, load the model, write the report; 1 when every picture failed."""
    settings = ReportSettings(
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        layer=args.layer,
        target=args.target,
        batch_size=args.batch_size,
        steps=args.steps,
        colormap=args.colormap,
        opacity=args.opacity,
    )
    check_settings(settings)
    total = len(report_files(args.images))  # before loading the model: an empty folder fails fast
    device = command_device(args.device)
    bundle = load_from_options(args)
    bundle.module.to(device)
    with progress_bar(total) as progress:
        report = write_folder_report(bundle, args.images, args.out, settings, progress=progress)
    failed = f"; {report.errors} pictures failed." if report.errors else "."
    print(f"Wrote {len(report.rows) - report.errors} reports and the index to {args.out}{failed}", file=sys.stderr)
    return 1 if report.errors == len(report.rows) else 0
