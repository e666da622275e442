"""One set of model options for every command (`cnnvis serve`, `report`, `audit`), defined once.

    --model     a registered name (resnet50), torchvision:<name> / timm:<name>, your path/to/net.py:attr or
                package.module:attr, or a model file (.onnx, TorchScript .pt)
    --weights   a weights choice (pretrained, random, embedded) or a state_dict file
    --labels    class names, one per line (or JSON / CSV; see `labels.parse_labels`)
    --input-size H W, --mean ..., --std ..., --scale S     the preprocessing of your own model

`add_model_options` adds them to a parser; `load_from_options` builds the bundle they describe. Labels and
preprocessing are for your own models (a file or Python code): a registered or zoo model brings its own, so giving
them there is refused with a sentence rather than silently ignored.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import ModelFileError
from .bundle import ModelBundle
from .python_models import is_python_spec, normalization_of
from .registry import MODELS, load_model
from .user_files import load_model_file
from .zoo import is_zoo_name

MODEL_FILE_SUFFIXES = (".onnx", ".pt", ".pth", ".ts")


def add_model_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """Add --model, --weights, --labels, --input-size, --mean, --std and --scale to `parser`."""
    parser.add_argument(
        "--model",
        required=required,
        help="a registered model name (e.g. resnet50, efficientnet_lite0), torchvision:<name>, timm:<name>, your own "
        "path/to/net.py:attr or package.module:attr, or a model file (.onnx, TorchScript .pt)",
    )
    parser.add_argument(
        "--weights",
        help="a weights choice (pretrained, random, embedded) or a state_dict file (torch.save(model.state_dict()))",
    )
    parser.add_argument("--labels", type=Path, help="your model's class names, one per line (or JSON / CSV)")
    parser.add_argument(
        "--input-size", nargs=2, type=int, metavar=("H", "W"), help="your model's input (default 224 224)"
    )
    parser.add_argument("--mean", nargs="+", type=float, help="per-channel mean of RGB / scale (default ImageNet's)")
    parser.add_argument("--std", nargs="+", type=float, help="per-channel std of RGB / scale (default ImageNet's)")
    parser.add_argument("--scale", type=float, help="RGB is divided by this first: 255 (default) or 1")


def load_from_options(args: argparse.Namespace) -> ModelBundle:
    """The model that `add_model_options`' arguments describe; ModelError / ModelFileError with a sentence."""
    return load_for_command(
        args.model,
        args.weights,
        labels=args.labels,
        input_size=tuple(args.input_size) if args.input_size else None,
        mean=args.mean,
        std=args.std,
        scale=args.scale,
    )


def load_for_command(
    model: str,
    weights: str | None = None,
    *,
    labels: Path | None = None,
    input_size: tuple[int, ...] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
) -> ModelBundle:
    """See the module's docstring: a model file, a registered or zoo architecture with a state_dict file, your
    Python model, or a registered or zoo name with a weights choice."""
    own = labels is not None or input_size is not None or any(v is not None for v in (mean, std, scale))
    size = _input_size(input_size)
    registered = model.lower() in MODELS or is_zoo_name(model)
    if not registered and is_python_spec(model):
        return load_model(
            model, weights, labels=labels, input_size=size, mean=mean, std=std, scale=scale
        )  # your net.py:build, with its state_dict file if given
    path = Path(model)
    if not registered and (path.suffix.lower() in MODEL_FILE_SUFFIXES or path.is_file()):
        if weights is not None:
            raise ModelFileError(f"{path.name} is a model file with its weights inside; --weights is not used with it.")
        return _from_file(path, None, labels, size, mean, std, scale)
    if weights is not None and Path(weights).is_file():
        return _from_file(Path(weights), model, labels, size, mean, std, scale)
    if own:
        raise ModelFileError(
            f"--labels, --input-size, --mean, --std and --scale describe your own model (a file, or net.py:attr); "
            f"{model} brings its own class names and preprocessing."
        )
    return load_model(model, weights)


def _from_file(
    path: Path,
    architecture: str | None,
    labels: Path | None,
    input_size: tuple[int, int] | None,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    scale: float | None,
) -> ModelBundle:
    if not path.is_file():
        raise ModelFileError(f"There is no model file {path}.")
    if labels is not None and not labels.is_file():
        raise ModelFileError(f"There is no labels file {labels}.")
    preprocessing = any(v is not None for v in (mean, std, scale))
    return load_model_file(
        path.read_bytes(),
        path.name,
        architecture=architecture,
        labels=labels.read_bytes() if labels is not None else None,
        input_size=input_size,
        normalization=normalization_of(mean, std, scale) if preprocessing else None,
    )


def _input_size(size: tuple[int, ...] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if len(size) != 2 or not all(8 <= v <= 4096 for v in size):
        raise ModelFileError(f"The input size must be two whole numbers (height, width) from 8 to 4096, not {size}.")
    return (size[0], size[1])


def command_device(choice: str | None) -> torch.device:
    """The device a command's `--device` names, or CUDA when there is one, else the CPU."""
    return torch.device(choice or ("cuda" if torch.cuda.is_available() else "cpu"))
