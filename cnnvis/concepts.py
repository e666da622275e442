"""The concepts command: build a reference index over a picture set and write its HTML atlas.

    cnnvis concepts --model resnet50 --images photos/ --layers layer3,layer4 --out atlas/ \\
        [--top 16] [--channels 32] [--crops 6] [--vis-steps 48] [--engine local|ray] [--batch-size 32]

`--images` is a folder, a zip of pictures, a CSV of paths, or "samples" (the bundled photos). The index is kept in
the cache folder ($CNNVIS_CACHE_DIR, else ~/.cache/cnnvis; `--cache-dir`), so a second atlas of the same pictures,
model and layers runs no picture through the model again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeAlias

from cnnvis_engine.concepts.atlas import AtlasSettings, write_atlas
from cnnvis_engine.concepts.reference import reference_index
from cnnvis_engine.concepts.reference_set import SAMPLES, read_reference_set
from cnnvis_engine.errors import EngineError
from cnnvis_engine.models.options import add_model_options, command_device, load_from_options

from .progress import progress_bar

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what add_subparsers returns


def add_parser(commands: Commands) -> argparse.ArgumentParser:
    """The `concepts` command's parser, with the shared model options; `run` is its action."""
    concepts = commands.add_parser(
        "concepts", help="Index a picture set's top pictures per channel and write an HTML atlas of the channels."
    )
    add_model_options(concepts)
    concepts.add_argument(
        "--images", required=True, help="a folder of pictures, a .zip of them, a CSV of paths, or 'samples'"
    )
    concepts.add_argument("--layers", required=True, help="comma-separated layer names, e.g. layer3,layer4")
    concepts.add_argument("--out", required=True, type=Path, help="output folder (created)")
    concepts.add_argument("--top", type=int, default=16, help="top pictures kept per channel (default 16)")
    concepts.add_argument(
        "--channels", type=int, default=32, help="channels per layer in the atlas, by total contribution (default 32)"
    )
    concepts.add_argument("--crops", type=int, default=6, help="reference crops per channel card (default 6)")
    concepts.add_argument(
        "--vis-steps", type=int, default=48, help="feature visualisation steps per layer (default 48; 0: none)"
    )
    concepts.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray")
    concepts.add_argument("--ray-address", help="a Ray cluster to join (default: a local Ray for this run)")
    concepts.add_argument("--workers", type=int, default=2, help="Ray actors (default 2)")
    concepts.add_argument("--batch-size", type=int, default=32, help="pictures per batch (default 32)")
    concepts.add_argument("--cache-dir", type=Path, help="where indexes are kept (default ~/.cache/cnnvis)")
    concepts.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    concepts.set_defaults(run=run)
    return concepts


def run(args: argparse.Namespace) -> int:
    """Load the model, build (or reopen) the reference index with a progress bar, write the atlas."""
    layers = [name.strip() for name in args.layers.split(",") if name.strip()]
    if min(args.top, args.channels, args.batch_size) < 1 or args.crops < 0 or args.vis_steps < 0:
        raise EngineError("--top, --channels and --batch-size must be at least 1; --crops and --vis-steps at least 0.")
    images = args.images if args.images == SAMPLES else Path(args.images)
    bundle = load_from_options(args)
    if args.engine == "local":
        bundle.module.to(command_device(args.device))
    count = len(read_reference_set(images))  # for the progress bar; reference_index reads the set again (cheap)
    with progress_bar(count) as progress:
        index = reference_index(
            bundle,
            images,
            layers,
            args.top,
            engine=args.engine,
            batch_size=args.batch_size,
            cache_dir=args.cache_dir,
            workers=args.workers,
            ray_address=args.ray_address,
            progress=progress,
        )
    settings = AtlasSettings(channels=args.channels, crops=args.crops, vis_steps=args.vis_steps)
    page = write_atlas(index, bundle, args.out, settings, cache_dir=args.cache_dir, source=str(args.images))
    if index.skipped:
        print(f"skipped {len(index.skipped)} files (listed in {page.name}):", file=sys.stderr)
        for s in index.skipped[:10]:
            print(f"  {s.path}: {s.reason}", file=sys.stderr)
    how = "opened the stored index" if index.from_cache else f"indexed {int((index.predicted >= 0).sum())} pictures"
    print(f"{how[0].upper()}{how[1:]} at {', '.join(layers)}; wrote {page}", file=sys.stderr)
    return 0
