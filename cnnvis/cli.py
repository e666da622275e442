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

USAGE = """usage: cnnvis {serve,report} ...

  serve    start the dashboard, optionally with your own model first:
           cnnvis serve --model net.py:build --weights w.pt --labels labels.txt --input-size 32 32
  report   explain every picture in a folder (cnnvis report --help)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        return serve(args[1:])
    if args and args[0] == "report":
        return engine_main(args)
    print(USAGE, file=sys.stdout if args[:1] in (["-h"], ["--help"]) else sys.stderr, end="")
    return 0 if args[:1] in (["-h"], ["--help"]) else 2


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnvis serve", description="Start the cnnvis dashboard.")
    parser.add_argument(
        "--model",
        help="your model: path/to/net.py:attr or package.module:attr (an nn.Module class, a factory or a "
        "model), or torchvision:<name> / timm:<name>",
    )
    parser.add_argument(
        "--weights",
        help="a state_dict file for your model (torch.save(model.state_dict(), 'w.pt')); for zoo names "
        "pretrained or random",
    )
    parser.add_argument("--labels", help="class names, one per line")
    parser.add_argument(
        "--input-size", nargs=2, type=int, metavar=("H", "W"), help="the model's input (default 224 224)"
    )
    parser.add_argument("--mean", nargs="+", type=float, help="per-channel mean of RGB / scale (default ImageNet's)")
    parser.add_argument("--std", nargs="+", type=float, help="per-channel std of RGB / scale (default ImageNet's)")
    parser.add_argument("--scale", type=float, help="RGB is divided by this first: 255 (default) or 1")
    parser.add_argument("--name", help="what to call your model on screen (default file:attr)")
    parser.add_argument("--port", type=int, help="port on 127.0.0.1 (default 8501, or a free one when taken)")
    return parser


def serve(argv: Sequence[str]) -> int:
    args = serve_parser().parse_args(argv)
    from cnnvis_engine.models import load_model, offer_model
    from cnnvis_engine.models.python_models import is_python_spec
    from cnnvis_engine.models.zoo import is_zoo_name

    from . import server

    try:
        if args.model:
            if is_zoo_name(args.model):
                bundle = load_model(args.model, args.weights)
            elif is_python_spec(args.model):
                bundle = load_model(
                    args.model,
                    args.weights,
                    labels=args.labels,
                    input_size=tuple(args.input_size) if args.input_size else None,
                    mean=args.mean,
                    std=args.std,
                    scale=args.scale,
                )
            else:
                raise EngineError(
                    f"'{args.model}' is neither path/to/net.py:attr, package.module:attr, torchvision:<name> nor "
                    "timm:<name>; the built-in models are in the dashboard's list already."
                )
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
