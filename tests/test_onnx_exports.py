"""ONNX as today's PyTorch writes it: the TorchScript exporter's default opset 20 (brought down to the converter's
opset 17), and the default dynamo exporter's `model.onnx` + `model.onnx.data` pair, uploaded together and resolved
in memory. Hostile pairs get a sentence and no file is opened."""

from __future__ import annotations

import builtins
import io
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from cnnvis_engine import Explainer, ModelBundle, ModelFileError
from cnnvis_engine.models import load_model_file
from tests.conftest import synthetic_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = (32, 32)
CLASSES = ("red", "green", "blue", "grey")


class MeanPooled(nn.Module):
    """Pools with `x.mean((2, 3))`: ReduceMean, whose opset-18+ form onnx2torch lacks."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(8, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def original() -> nn.Module:
    torch.manual_seed(5)
    return MeanPooled().eval()


@pytest.fixture(scope="module")
def dynamo_pair(original: nn.Module, tmp_path_factory) -> tuple[bytes, bytes]:
    """`torch.onnx.export(model, (x,), "m.onnx")` with the installed torch's defaults: (m.onnx, m.onnx.data)."""
    folder = tmp_path_factory.mktemp("dynamo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(original, (torch.zeros(1, 3, *SIZE),), str(folder / "m.onnx"))
    assert (folder / "m.onnx.data").is_file(), os.listdir(folder)  # today's default: the weights apart
    return (folder / "m.onnx").read_bytes(), (folder / "m.onnx.data").read_bytes()


def torchscript_export(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, *SIZE),), buffer, dynamo=False, input_names=["input"])
    return buffer.getvalue()


def agrees_with_the_original(bundle: ModelBundle, original: nn.Module) -> None:
    """Its convolutions are listed, and Grad-CAM at the last one correlates > 0.99 with the PyTorch original's."""
    image = synthetic_image(3, (48, 40))
    mine = Explainer(bundle)
    convs = [layer.name for layer in mine.layers(image) if layer.kind == "Conv2d"]
    assert len(convs) == 2, [layer.name for layer in mine.layers(image)]
    reference = Explainer(ModelBundle(name="net", module=original, class_names=CLASSES, input_size=SIZE))
    for target in range(len(CLASSES)):
        ours = mine.explain(image, layer=convs[-1], target=target, methods=["gradcam"])["gradcam"].map
        theirs = reference.explain(image, layer="features.2", target=target, methods=["gradcam"])["gradcam"].map
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99


def test_the_torchscript_exporters_default_opset_is_brought_down_and_explained(original):
    data = torchscript_export(original)
    assert max(o.version for o in onnx.load_model_from_string(data).opset_import if o.domain == "") >= 18
    bundle = load_model_file(data, "net.onnx", labels="\n".join(CLASSES).encode())
    assert "converted to operator set 17" in bundle.description
    agrees_with_the_original(bundle, original)


def test_the_dynamo_exporters_pair_uploads_together(original, dynamo_pair):
    model, weights = dynamo_pair
    with pytest.raises(ModelFileError, match=r"Upload the model's \.onnx file together with the \.onnx\.data file"):
        load_model_file(model, "m.onnx")  # alone it still gets the sentence, now saying to upload both
    bundle = load_model_file(model, "m.onnx", labels="\n".join(CLASSES).encode(), data_files={"m.onnx.data": weights})
    agrees_with_the_original(bundle, original)


def relocated(model: bytes, **entry: str) -> bytes:
    """`model` with every external tensor's entry fields replaced by `entry`."""
    proto = onnx.load_model_from_string(model)
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            fields = {item.key: item.value for item in tensor.external_data} | entry
            del tensor.external_data[:]
            for key, value in fields.items():
                tensor.external_data.add(key=key, value=value)
    return proto.SerializeToString()


@pytest.mark.parametrize(
    ("change", "files", "words"),
    [
        ({"offset": str(10**9)}, None, "which has only"),
        ({"location": "other.bin"}, None, "was not uploaded with it"),
        ({"location": "../m.onnx.data"}, None, "was not uploaded with it"),
        ({"location": "/etc/passwd"}, None, "was not uploaded with it"),
        ({"length": "3"}, None, "the two files do not belong together"),
        ({"offset": "-4"}, None, "not a whole number"),
        ({}, {"m.onnx.data": b""}, "is empty"),
        ({}, {"m.onnx.data": "weights", "extra.bin": b"x"}, "does not use"),
    ],
    ids=["offset-past-the-end", "another-file", "dot-dot", "absolute", "wrong-length", "negative", "empty", "extra"],
)
def test_hostile_pairs_get_sentences_and_nothing_is_opened(dynamo_pair, monkeypatch, change, files, words):
    model, weights = dynamo_pair
    files = {name: weights if blob == "weights" else blob for name, blob in (files or {"m.onnx.data": weights}).items()}
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_os_open(path, *a, **k))
    with pytest.raises(ModelFileError, match=words) as info:
        load_model_file(relocated(model, **change), "m.onnx", data_files=files)
    message = str(info.value)
    assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    assert opened == [], opened  # resolved in memory only: no path was ever opened


def test_a_pair_whose_weights_exceed_the_limit_is_refused(dynamo_pair):
    model, weights = dynamo_pair
    with pytest.raises(ModelFileError, match="the limit"):
        load_model_file(model, "m.onnx", data_files={"m.onnx.data": weights}, max_bytes=len(weights) // 2)


def test_no_path_of_the_upload_reaches_the_disk(original, dynamo_pair, tmp_path, monkeypatch):
    """A data file lying beside the working folder under the named location is never read: only the uploaded
    bytes count (here they differ from the file on disk, and the model computes with the uploaded ones)."""
    model, weights = dynamo_pair
    monkeypatch.chdir(tmp_path)
    Path("m.onnx.data").write_bytes(bytes(len(weights)))  # zeros on disk under the very name
    bundle = load_model_file(model, "m.onnx", data_files={"m.onnx.data": weights})
    x = torch.rand(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), original(x), atol=1e-5)  # the uploaded weights, not the zeros
