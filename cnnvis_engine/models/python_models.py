"""A person's own model from their own Python code: `path/to/net.py:build` or `package.module:attr`.

Code is imported only from a path or module name its owner typed (on the command line or in Python), never from
anything uploaded in the browser. The attribute is an `nn.Module` class (built with no arguments), a factory (called
with none) or a module instance. Weights, when given, are a state_dict read with `torch.load(weights_only=True)` and
loaded strictly, with the readable messages of `model_checks`. The model must be a classifier: one image in, one
tensor `(1, K)` out with K >= 2. A single output is refused, because softmax over one class is always 100 % and
its explanation would say nothing; wrap a one-logit binary model to return `torch.cat([-z, z], 1)`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from ..errors import ModelFileError
from .bundle import IMAGENET_MEAN, IMAGENET_STD, ModelBundle, Normalization
from .labels import parse_labels
from .model_checks import error_summary, load_weights, probe, read_state_dict
from .registry import NameSource, register_name_source

Labels = str | os.PathLike[str] | Sequence[str] | None


def is_python_spec(name: str) -> bool:
    """ "net.py:build", "dir/net.py:Net", "package.module:attr": a `:` with something on both sides."""
    source, sep, attr = str(name).rpartition(":")
    return bool(sep and source and attr and attr.isidentifier())


def load_python_model(
    spec: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    labels: Labels = None,
    input_size: tuple[int, int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    name: str | None = None,
) -> ModelBundle:
    """Import `spec`'s attribute, build the module, load `weights` (a state_dict file) if given, check it with one
    forward pass at `input_size` (default 224×224) and bundle it. Raises ModelFileError with a sentence."""
    source, _, attr = str(spec).rpartition(":")
    module_obj, where = _import(source)
    if not hasattr(module_obj, attr):
        defined = sorted(n for n, v in vars(module_obj).items() if not n.startswith("_") and _is_candidate(v))
        hint = f" It defines: {', '.join(defined[:8])}." if defined else ""
        raise ModelFileError(f"{where} has no attribute '{attr}'.{hint}")
    model = build_module(getattr(module_obj, attr), f"{where}:{attr}")
    detail = f"as built by {where}:{attr} (no weights file)"
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ModelFileError(f"There is no weights file {path}.")
        load_weights(model, read_state_dict(path.read_bytes(), path.name), f"{where}:{attr}")
        detail = str(path)
    return wrap_module(
        model,
        name=name or f"{Path(source).name if where.endswith('.py') else source}:{attr}",
        labels=labels,
        input_size=input_size,
        mean=mean,
        std=std,
        scale=scale,
        weights_source="file",
        weights_detail=detail,
        description=f"Imported from {where}:{attr}, with "
        + (f"the weights in {Path(weights).name}." if weights else "the weights its code gives it."),
    )


def build_module(obj: object, what: str) -> nn.Module:
    """An `nn.Module` from a class (no arguments), a factory (no arguments) or an instance."""
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise ModelFileError(f"{what} is a {type(obj).__name__}: give an nn.Module class, a factory or a model.")
    try:
        built = obj()
    except Exception as exc:  # a user's code can raise anything: say what, in one line
        raise ModelFileError(f"{what}() raised {type(exc).__name__}: {error_summary(exc)}.") from exc
    if not isinstance(built, nn.Module):
        raise ModelFileError(f"{what}() returned a {type(built).__name__}, not a torch.nn.Module.")
    return built


def wrap_module(
    model: nn.Module,
    *,
    name: str | None = None,
    labels: Labels = None,
    input_size: tuple[int, int] | int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    scale: float | None = None,
    weights_source: str = "file",
    weights_detail: str = "",
    description: str = "",
) -> ModelBundle:
    """An in-memory classifier as a bundle: eval mode, one checking forward pass, labels and preprocessing.
    `mean`/`std` are per channel on RGB divided by `scale` (255 by default: mean/std of pixels in [0, 1])."""
    if not isinstance(model, nn.Module):
        raise ModelFileError(f"The model is a {type(model).__name__}, not a torch.nn.Module.")
    size = _input_size(input_size)
    normalization = normalization_of(mean, std, scale)
    model.eval()
    count = probe(model, size)
    if count < 2:
        raise ModelFileError(
            "The model has a single output; cnnvis explains classifiers with two or more classes (softmax over one "
            "class is always 100 %). For a one-logit binary model, return torch.cat([-z, z], dim=1)."
        )
    class_names = _labels(labels, count)
    return ModelBundle(
        name=name or type(model).__name__,
        module=model,
        class_names=class_names,
        input_size=size,
        normalization=normalization,
        weights_source=weights_source,  # type: ignore[arg-type]
        weights_detail=weights_detail or f"the {type(model).__name__} in memory",
        description=description or f"Your model {type(model).__name__}.",
    )


def _import(source: str) -> tuple[object, str]:
    """The module named by `source` (a .py path or a dotted module name) and how to call it in messages."""
    looks_like_path = source.endswith(".py") or os.sep in source or "/" in source
    if not looks_like_path:
        try:
            return importlib.import_module(source), source
        except ModuleNotFoundError as exc:
            if exc.name and source.startswith(exc.name):
                raise ModelFileError(f"There is no Python module '{source}' (nor a file of that name).") from exc
            raise ModelFileError(f"Importing {source} failed: {type(exc).__name__}: {error_summary(exc)}.") from exc
        except Exception as exc:
            raise ModelFileError(f"Importing {source} failed: {type(exc).__name__}: {error_summary(exc)}.") from exc
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise ModelFileError(f"There is no file {source}.")
    # A unique module name per file, so two files called net.py do not replace each other in sys.modules.
    module_name = f"cnnvis_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelFileError(f"{path.name} cannot be imported as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ModelFileError(f"Importing {path.name} failed: {type(exc).__name__}: {error_summary(exc)}.") from exc
    finally:
        sys.path.remove(str(path.parent))
    return module, path.name


def _is_candidate(value: object) -> bool:
    return (
        isinstance(value, nn.Module)
        or (isinstance(value, type) and issubclass(value, nn.Module))
        or (
            callable(value)
            and not isinstance(value, type)
            and getattr(value, "__module__", "").startswith("cnnvis_user")
        )
    )


def _input_size(size: Sequence[int] | int | None) -> tuple[int, int]:
    if size is None:
        return (224, 224)
    values = (size, size) if isinstance(size, int) else tuple(size)
    if len(values) != 2 or not all(isinstance(v, int) and 8 <= v <= 4096 for v in values):
        raise ModelFileError(f"The input size must be two whole numbers (height, width) from 8 to 4096, not {size}.")
    return values


def normalization_of(mean: Sequence[float] | None, std: Sequence[float] | None, scale: float | None) -> Normalization:
    """x = (rgb / scale - mean) / std from a person's numbers (ImageNet's where None); ModelFileError if unusable."""
    mean_t = tuple(float(v) for v in (IMAGENET_MEAN if mean is None else mean))
    std_t = tuple(float(v) for v in (IMAGENET_STD if std is None else std))
    if not all(math.isfinite(v) for v in (*mean_t, *std_t, 255.0 if scale is None else float(scale))):
        raise ModelFileError("Mean, std and scale must be ordinary numbers (not nan or inf).")
    if len(mean_t) == 1:
        mean_t *= 3
    if len(std_t) == 1:
        std_t *= 3
    if len(mean_t) != 3 or len(std_t) != 3:
        raise ModelFileError("Mean and std need three values each (red, green, blue), or one for all three.")
    if not all(v > 0 for v in std_t):
        raise ModelFileError("Every std value must be above zero.")
    scale_v = 255.0 if scale is None else float(scale)
    if scale_v <= 0:
        raise ModelFileError("The scale must be above zero (255: pixels in [0, 1]; 1: pixels in [0, 255]).")
    return Normalization(mean=mean_t, std=std_t, scale=scale_v)


def _labels(labels: Labels, count: int) -> tuple[str, ...]:
    if labels is None:
        return tuple(f"class {i}" for i in range(count))
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.is_file():
            raise ModelFileError(f"There is no labels file {path}.")
        names = parse_labels(path.read_bytes())
    else:
        names = tuple(str(n) for n in labels)
    if len(names) != count:
        raise ModelFileError(f"The labels name {len(names)} classes, but the model has {count} outputs.")
    return names


register_name_source(NameSource("python", is_python_spec, load_python_model))
