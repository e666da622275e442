"""A person's own model file: a TorchScript archive, or a state_dict for a registered architecture.

Nothing here unpickles arbitrary Python: `torch.load` always runs with `weights_only=True`, so a file holding a
pickled object (a whole `nn.Module`, or anything with a `__reduce__`) is refused before any of its code runs.
A TorchScript file is a program: its code is read first (torchscript_check.py), and it is loaded and run only in a
locked-in worker process (contained.py), never in this one. An ONNX file is checked here (onnx_files.check_onnx)
and converted and run only in such a worker too, which also computes its explanations (onnx_worker.py). Before any loader sees a zip, its directory is read
and a zip that would inflate beyond the size limit is refused.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Mapping

import torch

from ..errors import EngineError, ModelFileError
from .bundle import ModelBundle, Normalization
from .contained import ContainedError, ContainedModel, Limits, Worker, summary
from .contained_onnx import ContainedOnnxModel
from .heads import fit_head
from .labels import MAX_LABEL_LINES, parse_labels  # noqa: F401  (re-exported: parse_labels lived here)
from .model_checks import UNCONNECTED, Returned, check_output, image_kind, load_weights, probe, read_state_dict
from .onnx_external import attach_external_data
from .onnx_files import CheckedOnnx, OnnxInput, check_onnx, is_onnx
from .preprocessing import resolve_preprocessing
from .registry import load_model
from .torchscript_check import check_archive, check_torchscript

TORCHSCRIPT_OFF = (
    "TorchScript uploads are turned off on this server: it can be reached from other machines, and a TorchScript "
    "file is a program. Upload an ONNX file, or a state_dict for one of the listed architectures, instead (the "
    "operator can allow TorchScript with CNNVIS_ALLOW_TORCHSCRIPT=1)."
)


def load_model_file(
    data: bytes,
    filename: str,
    *,
    architecture: str | None = None,
    labels: bytes | None = None,
    input_size: tuple[int, int] | None = None,
    channels: int | None = None,
    normalization: Normalization | None = None,
    max_bytes: int = 512 * 2**20,
    allow_torchscript: bool = True,
    limits: Limits | None = None,
    check_code: bool = True,
    data_files: Mapping[str, bytes] | None = None,
) -> ModelBundle:
    """Bundle for an uploaded model file, checked with one forward and one backward pass on a black `input_size`
    image. Every failure is a ModelFileError with a sentence.

    The file is an ONNX model (converted to PyTorch modules, so every layer shows), a TorchScript archive, or a
    state_dict. `architecture` (a registry name) is needed when the file holds only a state_dict; the bundle then
    keeps that architecture's input size and preprocessing, and its class names when the output count matches
    and no labels are given; a classifier with another output count (a fine-tuned head) is resized to fit.
    The model must return one float tensor `(1, K)` that depends on the input; `labels` (if given, any format of
    `labels.parse_labels`) must name exactly K classes, otherwise they are "class 0" ... "class K-1".

    Preprocessing: `input_size` (height, width), `channels` (3 for RGB, 1 for grayscale) and `normalization`
    override what the file says (an ONNX input's static shape), else the architecture's, else 224×224 RGB with
    ImageNet mean and std.

    A TorchScript file is refused when `allow_torchscript` is False (a server exposed to a network), and
    otherwise becomes a `ContainedModel` running in its own worker process under `limits`. `check_code=False`
    skips the static check of its code (only tests do that, to show the worker holds on its own).

    `data_files` ({uploaded name: bytes}) are an ONNX model's external data, uploaded with it (`model.onnx.data`, as
    today's exporter writes it): resolved in memory by exact name, never from a path (`onnx_external`).
    """
    try:
        if data_files:
            data = attach_external_data(data, filename, data_files, max_bytes=max_bytes)
        return _load_model_file(
            data,
            filename,
            architecture=architecture,
            labels=labels,
            input_size=input_size,
            channels=channels,
            normalization=normalization,
            max_bytes=max_bytes,
            allow_torchscript=allow_torchscript,
            limits=limits,
            check_code=check_code,
        )
    except ModelFileError:
        raise
    except ContainedError as exc:
        raise ModelFileError(str(exc)) from exc
    except EngineError as exc:  # e.g. an unknown architecture
        raise ModelFileError(str(exc)) from exc
    except Exception as exc:  # anything we did not foresee: still a sentence, never a traceback
        raise ModelFileError(f"{filename} could not be loaded: {summary(str(exc) or type(exc).__name__)}.") from exc


def _load_model_file(
    data: bytes,
    filename: str,
    *,
    architecture: str | None,
    labels: bytes | None,
    input_size: tuple[int, int] | None,
    channels: int | None,
    normalization: Normalization | None,
    max_bytes: int,
    allow_torchscript: bool,
    limits: Limits | None,
    check_code: bool,
) -> ModelBundle:
    if len(data) > max_bytes:
        raise ModelFileError(f"{filename} is {_size(len(data))}; the limit is {_size(max_bytes)}.")
    check_archive(data, filename, max_bytes)
    base: ModelBundle | None = None  # the registry architecture a state_dict belongs to
    file_input: OnnxInput | None = None  # what an ONNX file says about its input
    module: torch.nn.Module
    if is_onnx(data, filename):
        module, checked = _load_onnx(data, filename, max_bytes, limits)
        file_input = checked.input
        description = f"Your ONNX model {filename}, converted to PyTorch layers." + (
            f" {checked.note}" if checked.note else ""
        )
    elif _is_torchscript(data):
        if not allow_torchscript:
            raise ModelFileError(TORCHSCRIPT_OFF)
        if check_code:
            check_torchscript(data, filename)
        module = _load_torchscript(data, filename, limits)
        description = f"Your TorchScript model {filename}."
    else:
        state_dict = read_state_dict(data, filename)
        if architecture is None:
            raise ModelFileError(
                f"{filename} holds only weights (a state_dict); choose the architecture they belong to."
            )
        base = load_model(architecture, "random")
        module = base.module
        resized = fit_head(module, state_dict)
        load_weights(module, state_dict, architecture)
        description = " ".join(filter(None, [f"{architecture} with the weights from your file {filename}.", resized]))
    try:
        return _finish(module, description, filename, labels, base, file_input, input_size, channels, normalization)
    except BaseException:
        if isinstance(module, ContainedModel):
            module.close()  # its worker process ends with the refusal
        raise


def _finish(
    module: torch.nn.Module,
    description: str,
    filename: str,
    labels: bytes | None,
    base: ModelBundle | None,
    file_input: OnnxInput | None,
    input_size: tuple[int, int] | None,
    channels: int | None,
    normalization: Normalization | None,
) -> ModelBundle:
    """Preprocessing, the probe and the class names of a loaded model, into its bundle."""
    input_size, normalization = resolve_preprocessing(input_size, channels, normalization, base, file_input)
    module.eval()
    if isinstance(module, ContainedModel):
        num_classes = _probe_contained(module, input_size, normalization.channels)
    else:
        num_classes = probe(module, input_size, normalization.channels)
    if labels is None and base is not None and len(base.class_names) == num_classes:
        class_names = base.class_names  # fine-tuned on the same classes: keep the architecture's names
    elif labels is None:
        class_names = tuple(f"class {i}" for i in range(num_classes))
    else:
        class_names = parse_labels(labels)
        if len(class_names) != num_classes:
            raise ModelFileError(
                f"The labels file names {len(class_names)} classes, but the model has {num_classes} outputs."
            )
    return ModelBundle(
        name=filename,
        module=module,
        class_names=class_names,
        input_size=input_size,
        normalization=normalization,
        weights_source="file",
        weights_detail=filename,
        description=description,
    )


def _size(num_bytes: int) -> str:
    """Rounded up, so a file just over a 512 MB limit reads "513 MB", not "512 MB"."""
    for unit, factor in (("MB", 2**20), ("KB", 2**10)):
        if num_bytes >= factor:
            return f"{math.ceil(num_bytes / factor):,} {unit}"
    return f"{num_bytes} bytes"


def is_torchscript(data: bytes) -> bool:
    """Whether `data` is a TorchScript archive (a program, not data)."""
    return _is_torchscript(data)


def _is_torchscript(data: bytes) -> bool:
    """TorchScript archives are zips with a `<archive>/code/` folder and `constants.pkl`; torch.save zips are not."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        return False
    return any("/code/" in name or name.endswith("constants.pkl") for name in names)


def _load_torchscript(data: bytes, filename: str, limits: Limits | None) -> ContainedModel:
    """Start the model's worker process and load the file there (its `__setstate__`, if any, runs locked in)."""
    worker = _started(
        Worker(data, limits),
        f"{filename} could not be opened",
        f"{filename} looks like TorchScript but could not be opened",
    )
    return ContainedModel(worker)


def _load_onnx(
    data: bytes, filename: str, max_bytes: int, limits: Limits | None
) -> tuple[ContainedOnnxModel, CheckedOnnx]:
    """Check the file here (quick refusals), then start the model's worker process and convert it there: the
    conversion allocates every weight again, so it runs under the worker's memory limit and deadline."""
    checked = check_onnx(data, filename, max_bytes=max_bytes)
    worker = Worker(
        checked.data,
        limits,
        mode="onnx",
        load={"filename": filename, "channels_last": checked.input.channels_last, "max_bytes": max_bytes},
    )
    worker = _started(worker, f"{filename} could not be converted", f"{filename} could not be converted to PyTorch")
    return ContainedOnnxModel(worker), checked


def _started(worker: Worker, failed: str, refused: str) -> Worker:
    """`worker`, started (it loads the model first); on any failure it is stopped and a ModelFileError says why:
    `failed: <why the worker stopped>` (time, memory, a crash) or `refused: <the model's own error>`."""
    try:
        worker.request({"op": "forget"})
    except ContainedError as exc:
        worker.close()
        if exc.kind != "error":
            raise ModelFileError(f"{failed}: {exc}") from exc
        raise ModelFileError(f"{refused}: {summary(exc.detail)}.") from exc
    except BaseException:  # the converter's own refusal (a ModelFileError with its sentence), or anything else
        worker.close()
        raise
    return worker


def _probe_contained(module: ContainedModel, input_size: tuple[int, int], channels: int = 3) -> int:
    """The same probe as `probe`, through the model's worker process."""
    height, width = input_size
    x = torch.zeros(1, channels, height, width)
    graph_id = module.worker.new_id()
    try:
        output, reply = module.worker.forward(x, grad=True, graph_id=graph_id)
        num_classes = check_output(output if output is not None else Returned(reply.get("returned", "nothing")))
        connected = (
            output is not None
            and bool(reply.get("requires_grad"))
            and (module.worker.backward(graph_id, x, torch.ones_like(output)) is not None)
        )
        module.worker.request({"op": "forget"})
    except ContainedError as exc:
        if exc.kind != "error":
            raise ModelFileError(str(exc)) from exc
        raise ModelFileError(
            f"The model failed on a {height}×{width} {image_kind(channels)} image: {summary(exc.detail)}."
        ) from exc
    if not connected:
        raise ModelFileError(UNCONNECTED)
    return num_classes
