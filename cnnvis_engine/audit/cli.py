"""The audit command: SpRAy over a folder of pictures, written as maps, clusters and an HTML report.

    python -m cnnvis_engine audit --model tanks_shortcut --images photos/ --out audit/ \\
        [--method gradcam] [--layer se] [--size 32] [--engine local|ray] [--ray-address auto]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import EngineError
from ..methods import METHODS
from ..models.options import add_model_options, load_from_options


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit", help="Audit a whole picture set for shortcuts (SpRAy): cluster each class's maps."
    )
    add_model_options(audit)
    audit.add_argument(
        "--images",
        required=True,
        type=Path,
        help="a folder with one subfolder per class, a flat folder, or a CSV of path,label",
    )
    audit.add_argument("--out", required=True, type=Path, help="output folder (created)")
    audit.add_argument(
        "--method", default="gradcam", help=f"the map to cluster (default gradcam): {', '.join(METHODS)}"
    )
    audit.add_argument("--layer", help="layer for layer-based methods (default: the method's default)")
    audit.add_argument("--size", type=int, default=32, help="maps are kept at size×size (default 32)")
    audit.add_argument("--clusters", type=int, help="clusters per class (default: by the eigengap)")
    audit.add_argument("--neighbours", type=int, default=10, help="k of the nearest-neighbour graph (default 10)")
    audit.add_argument(
        "--group", choices=("true", "predicted"), help="classes by true label (default when known) or prediction"
    )
    audit.add_argument(
        "--class-of",
        action="append",
        default=[],
        metavar="FOLDER=CLASS",
        help="which of the model's classes a folder is, where its name differs (repeat for each folder)",
    )
    audit.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray (Ray Data)")
    audit.add_argument("--ray-address", help="a Ray cluster to join (default: a local Ray for this run)")
    audit.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    audit.add_argument("--batch-size", type=int, default=32, help="pictures per batch (default 32)")
    audit.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    audit.set_defaults(run=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from ..cli import Progress
    from .analysis import audit
    from .dataset import read_image_set
    from .describe import describe
    from .report import write_audit

    if args.batch_size < 1:
        raise EngineError("The batch size must be at least 1.")
    bundle = load_from_options(args)
    if args.engine == "local":
        bundle.module.to(torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu")))
    count = len(read_image_set(args.images))  # for the progress bar; audit() reads the set again (cheap)
    with Progress(count) as advance:
        shown = [0]

        def progress(done: int, total: int) -> None:
            advance(done - shown[0])
            shown[0] = done

        result = audit(
            bundle,
            args.images,
            method=args.method,
            layer=args.layer,
            size=args.size,
            clusters=args.clusters,
            neighbours=args.neighbours,
            group=args.group,
            batch_size=args.batch_size,
            engine=args.engine,
            ray_address=args.ray_address,
            workers=args.workers,
            progress=progress,
            class_of=_class_of(args.class_of),
        )
    files = write_audit(result, args.out)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.skipped:
        print(f"skipped {len(result.skipped)} files (listed in {files['report'].name}):", file=sys.stderr)
        for s in result.skipped[:10]:
            print(f"  {s.path}: {s.reason}", file=sys.stderr)
    flagged = result.flagged()
    print(
        f"Audited {int(result.read.sum())} pictures in {len(result.classes)} classes: "
        + (f"{len(flagged)} flagged group{'s' if len(flagged) != 1 else ''}" if flagged else "nothing flagged")
        + f". Wrote {', '.join(p.name for p in files.values())} to {args.out}",
        file=sys.stderr,
    )
    for cluster in flagged:
        print(f"flagged: {describe(cluster, result)}", file=sys.stderr)
    return 0


def _class_of(pairs: list[str]) -> dict[str, str]:
    """--class-of FOLDER=CLASS values as {folder: class}; EngineError for one without '='."""
    mapping = {}
    for pair in pairs:
        folder, equals, name = pair.partition("=")
        if not equals or not folder.strip() or not name.strip():
            raise EngineError(f"--class-of takes FOLDER=CLASS, such as --class-of kitty='tabby cat'; got {pair!r}.")
        mapping[folder.strip()] = name.strip()
    return mapping
