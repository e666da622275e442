"""The `cnnvis` command (and `python -m cnnvis`, `python -m cnnvis_engine`): one argparse front-end per command.

    cnnvis serve [--model path/to/net.py:build --weights w.pt --labels labels.txt --input-size 32 32
                  --mean 0.49 0.48 0.45 --std 0.25 0.24 0.26 --scale 255] [--port 8501]
    cnnvis report --model resnet50 --images photos/ --out report/ ...   (`cnnvis.report`)
    cnnvis audit --model tanks_shortcut --images photos/ --out audit/ ...   (`cnnvis.audit`)
    cnnvis concepts --model resnet50 --images photos/ --layers layer4 --out atlas/ ...   (`cnnvis.concepts`)

Each command is a module with `add_parser(commands)`, which builds its parser on the shared model options of
`cnnvis_engine.models.options` and sets `run`, its action; a new command adds one line to `COMMANDS`. The engine
keeps the work itself (`cnnvis_engine.folder_report`, `cnnvis_engine.audit`, `cnnvis_engine.concepts`); here are only options, progress bars
and what is printed.

`serve` loads the model here first, so a bad file, a factory that raises or weights of the wrong shape end the
command with a sentence before any server starts; then it runs the dashboard in this process with that model
first and selected (see `cnnvis.server`). `--model` also takes `torchvision:<name>` and `timm:<name>`, with
`--weights pretrained|random`. Code is imported only from the path typed here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import TypeAlias

from cnnvis_engine import EngineError
from cnnvis_engine.models import MODELS, offer_model
from cnnvis_engine.models.options import add_model_options, load_from_options

from . import audit, concepts, report, server

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"  # what add_subparsers returns


def add_serve_parser(commands: Commands) -> argparse.ArgumentParser:
    """The `serve` command's parser: the model options, none required, a screen name and a port."""
    parser = commands.add_parser("serve", help="start the dashboard, optionally with your own model first")
    add_model_options(parser, required=False)
    parser.add_argument("--name", help="what to call your model on screen (default file:attr)")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default 8501, or a free one when taken)")
    parser.set_defaults(run=serve)
    return parser


# The commands in the order `--help` lists them.
COMMANDS: tuple[Callable[[Commands], argparse.ArgumentParser], ...] = (
    add_serve_parser,
    report.add_parser,
    audit.add_parser,
    concepts.add_parser,
)


def build_parser(prog: str = "cnnvis") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Show what a convolutional neural network looks at.")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "cnnvis") -> int:
    """Run one command; its EngineError ends it with `error: <sentence>` and exit status 2."""
    args = build_parser(prog).parse_args(argv)
    try:
        code: int = args.run(args)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code


def serve(args: argparse.Namespace) -> int:
    if args.model:
        if args.model.lower() in MODELS:
            raise EngineError(
                f"{args.model} is one of the dashboard's built-in models, in its list already; --model is for "
                "your own (net.py:attr or a model file) and for torchvision:<name> / timm:<name>."
            )
        bundle = load_from_options(args)
        if args.name:
            bundle = dataclasses.replace(bundle, name=args.name)
        offer_model(bundle)
    address = server.start(args.port)
    shown = f" with {bundle.name}" if args.model else ""
    print(f"cnnvis: the dashboard{shown} is at {address}  (Ctrl-C stops it)", flush=True)
    server.wait()
    return 0
