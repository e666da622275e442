"""The `cnnvis` command.

    cnnvis serve [--model path/to/net.py:build --weights w.pt --labels labels.txt --input-size 32 32
                  --mean 0.49 0.48 0.45 --std 0.25 0.24 0.26 --scale 255] [--port 8501]
    cnnvis report --model resnet50 --images photos/ --out report/ ...   (as `python -m cnnvis_engine report`)

`serve` loads the model here first, so a bad file, a factory that raises or weights of the wrong shape end the
command with a sentence before any server starts; then it runs the dashboard in this process with that model
first and selected (see `cnnvis.server`). `--model` also takes `torchvision:<name>` and `timm:<name>`, with
`--weights pretrained|random`. Code is imported only from the path typed here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cnnvis_engine import EngineError
from cnnvis_engine.cli import main as engine_main

USAGE = """usage: cnnvis {serve,report,concepts} ...

  serve    start the dashboard, optionally with your own model first:
           cnnvis serve --model net.py:build --weights w.pt --labels labels.txt --input-size 32 32
  report   explain every picture in a folder (cnnvis report --help)
  concepts index a picture set's top pictures per channel, write an HTML atlas (cnnvis concepts --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        return serve(args[1:])
    if args and args[0] in ("report", "concepts"):
        return engine_main(args)
    print(USAGE, file=sys.stdout if args[:1] in (["-h"], ["--help"]) else sys.stderr, end="")
    return 0 if args[:1] in (["-h"], ["--help"]) else 2


def serve_parser() -> argparse.ArgumentParser:
    from cnnvis_engine.models.options import add_model_options

    parser = argparse.ArgumentParser(prog="cnnvis serve", description="Start the cnnvis dashboard.")
    add_model_options(parser, required=False)
    parser.add_argument("--name", help="what to call your model on screen (default file:attr)")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default 8501, or a free one when taken)")
    return parser


def serve(argv: Sequence[str]) -> int:
    args = serve_parser().parse_args(argv)
    from cnnvis_engine.models import MODELS, offer_model
    from cnnvis_engine.models.options import load_from_options

    from . import server

    try:
        if args.model:
            if args.model.lower() in MODELS:
                raise EngineError(
                    f"{args.model} is one of the dashboard's built-in models, in its list already; --model is for "
                    "your own (net.py:attr or a model file) and for torchvision:<name> / timm:<name>."
                )
            bundle = load_from_options(args)
            if args.name:
                import dataclasses

                bundle = dataclasses.replace(bundle, name=args.name)
            offer_model(bundle)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    address = server.start(args.port)
    shown = f" with {bundle.name}" if args.model else ""
    print(f"cnnvis: the dashboard{shown} is at {address}  (Ctrl-C stops it)", flush=True)
    server.wait()
    return 0
