"""`cnnvis audit` (also `python -m cnnvis_engine audit`): SpRAy over a folder of pictures, written as maps, clusters
and an HTML report (`cnnvis_engine.audit`).

    cnnvis audit --model tanks_shortcut --images photos/ --out audit/ \\
        [--method gradcam] [--layer se] [--size 32] [--engine local|ray] [--ray-address auto]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeAlias

from cnnvis_engine.audit import audit, read_image_set
from cnnvis_engine.audit.describe import describe
from cnnvis_engine.audit.report import write_audit
from cnnvis_engine.errors import EngineError
from cnnvis_engine.methods import METHODS
from cnnvis_engine.models.options import add_model_options, command_device, load_from_options

from .progress import progress_bar

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what add_subparsers returns


def add_parser(commands: Commands) -> argparse.ArgumentParser:
    """The `audit` command's parser, with the shared model options; `run` is its action."""
    parser = commands.add_parser(
        "audit", help="Audit a whole picture set for shortcuts (SpRAy): cluster each class's maps."
    )
    add_model_options(parser)
    parser.add_argument(
        "--images",
        required=True,
        type=Path,
        help="a folder with one subfolder per class, a flat folder, or a CSV of path,label",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created)")
    parser.add_argument(
        "--method", default="gradcam", help=f"the map to cluster (default gradcam): {', '.join(METHODS)}"
    )
    parser.add_argument("--layer", help="layer for layer-based methods (default: the method's default)")
    parser.add_argument("--size", type=int, default=32, help="maps are kept at size×size (default 32)")
    parser.add_argument("--clusters", type=int, help="clusters per class (default: by the eigengap)")
    parser.add_argument("--neighbours", type=int, default=10, help="k of the nearest-neighbour graph (default 10)")
    parser.add_argument(
        "--group", choices=("true", "predicted"), help="classes by true label (default when known) or prediction"
    )
    parser.add_argument(
        "--class-of",
        action="append",
        default=[],
        metavar="FOLDER=CLASS",
        help="which of the model's classes a folder is, where its name differs (repeat for each folder)",
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray (Ray Data)")
    parser.add_argument("--ray-address", help="a Ray cluster to join (default: a local Ray for this run)")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    parser.add_argument("--batch-size", type=int, default=32, help="pictures per batch (default 32)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Load the model, audit the set with a progress bar, write the report and say what was flagged."""
    if args.batch_size < 1:
        raise EngineError("The batch size must be at least 1.")
    bundle = load_from_options(args)
    if args.engine == "local":
        bundle.module.to(command_device(args.device))
    count = len(read_image_set(args.images))  # for the progress bar; audit() reads the set again (cheap)
    with progress_bar(count) as progress:
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
    mapping: dict[str, str] = {}
    for pair in pairs:
        folder, equals, name = pair.partition("=")
        if not equals or not folder.strip() or not name.strip():
            raise EngineError(f"--class-of takes FOLDER=CLASS, such as --class-of kitty='tabby cat'; got {pair!r}.")
        mapping[folder.strip()] = name.strip()
    return mapping
