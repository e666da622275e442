"""ONNX uploads: converted to PyTorch layers named after their ONNX nodes, explained as the original network
is, and every file that must not load refused with a sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnvis_engine import Explainer, ModelBundle, ModelFileError
from cnnvis_engine.models import load_model_file, onnx_files
from tests.conftest import leaves_model_untouched, synthetic_image
from tests.onnx_cases import (
    CLASSES,
    ChannelsLast,
    declared_huge,
    export,
    external_data,
    small_cnn,
    two_inputs,
    unsupported_op,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = (40, 48)


@pytest.fixture(scope="module")
def original() -> torch.nn.Module:
    return small_cnn()


@pytest.fixture(scope="module")
def uploaded(original: torch.nn.Module) -> ModelBundle:
    labels = "\n".join(CLASSES).encode()
    return load_model_file(export(original, (1, 3, *SIZE)), "net.onnx", labels=labels)


def conv_names(bundle: ModelBundle, image) -> list[str]:
    return [layer.name for layer in Explainer(bundle).layers(image) if layer.kind == "Conv2d"]


def test_the_onnx_model_lists_its_convolutions_by_node_name(uploaded: ModelBundle) -> None:
    assert uploaded.input_size == SIZE  # read from the graph's static height and width
    assert uploaded.class_names == CLASSES and uploaded.channels == 3
    assert uploaded.description.startswith("Your ONNX model net.onnx")
    names = conv_names(uploaded, synthetic_image(1))
    assert names == ["features/features/0/Conv", "features/features/3/Conv", "features/features/6/Conv"]


def test_the_converted_model_computes_what_the_original_and_onnxruntime_do(original, uploaded) -> None:
    x = torch.randn(3, 3, *SIZE)  # three images through a file exported with one: the batch axis is dynamic
    with torch.no_grad():
        expected, got = original(x), uploaded.module(x)
    assert torch.allclose(got, expected, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(export(original, (1, 3, *SIZE)), providers=["CPUExecutionProvider"])
    (second_opinion,) = session.run(None, {"input": x.numpy()})
    assert np.allclose(second_opinion, got.numpy(), atol=1e-5)


def test_grad_cam_at_the_last_conv_matches_the_pytorch_original(original, uploaded) -> None:
    image = synthetic_image(3, (96, 80))
    reference = Explainer(ModelBundle(name="net", module=original, class_names=CLASSES, input_size=SIZE))
    mine = Explainer(uploaded)
    with leaves_model_untouched(uploaded.module):
        for target in range(len(CLASSES)):
            ours = mine.explain(image, layer="features/features/6/Conv", target=target, methods=["gradcam"])
            theirs = reference.explain(image, layer="features.6", target=target, methods=["gradcam"])
            a, b = ours["gradcam"].map.ravel(), theirs["gradcam"].map.ravel()
            assert np.corrcoef(a, b)[0, 1] > 0.99
            assert np.abs(a - b).max() < 1e-3


def test_every_method_runs_on_the_onnx_model_and_a_batch_of_two(uploaded: ModelBundle) -> None:
    explainer = Explainer(uploaded)
    images = [synthetic_image(4), synthetic_image(5)]
    with leaves_model_untouched(uploaded.module):
        result = explainer.explain(
            images[0],
            methods=["feature_maps", "kernels", "saliency", "guided_backprop", "cam", "gradcam", "guided_gradcam"],
        )
        batch = explainer.explain_batch(images, methods=["gradcam", "integrated_gradients"])
    assert all(r.applicable and r.map is not None for r in result.values()), {m: r.reason for m, r in result.items()}
    assert result["gradcam"].map.shape == result["cam"].map.shape == SIZE
    assert result.layer == "features/features/7/Relu" and not result.notes
    assert len(batch) == 2 and batch[0]["gradcam"].map.shape == SIZE


def test_a_channels_last_export_takes_channels_first_input() -> None:
    inner = small_cnn(1)
    bundle = load_model_file(export(ChannelsLast(inner), (1, *SIZE, 3)), "keras.onnx")
    assert bundle.input_size == SIZE and bundle.channels == 3
    x = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), inner(x), atol=1e-5)
    assert len(conv_names(bundle, synthetic_image(2))) == 3


def test_a_grayscale_onnx_model_gets_one_channel_and_a_dynamic_size_takes_the_choice() -> None:
    data = export(small_cnn(2, channels=1), (1, 1, *SIZE), dynamic_size=True)
    assert onnx_files.read_input(data) == onnx_files.OnnxInput(1, None, None, channels_last=False)
    bundle = load_model_file(data, "gray.onnx", input_size=(64, 32))
    assert bundle.input_size == (64, 32) and bundle.channels == 1
    assert load_model_file(data, "gray.onnx").input_size == (224, 224)  # nothing said: the usual size
    display, x = bundle.prepare(synthetic_image(6))
    assert display.shape == (64, 32, 3) and tuple(x.shape) == (1, 64, 32)


def test_an_unsupported_operation_is_named() -> None:
    with pytest.raises(ModelFileError, match=r"cannot handle: Hardmax \(opset 17\)\. Export the model"):
        load_model_file(unsupported_op(), "odd.onnx")


def test_the_converters_own_refusal_is_a_sentence_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_files, "_unsupported_ops", lambda proto: [])  # as if the pre-check had missed it
    with pytest.raises(ModelFileError, match=r"cannot handle: Converter is not implemented .*Hardmax"):
        load_model_file(unsupported_op(), "odd.onnx")


def test_external_data_is_refused_before_anything_reads_it(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 36)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    monkeypatch.chdir(tmp_path)
    for location in (str(secret), "secret.bin", "../" * 8 + str(secret).lstrip("/")):
        with pytest.raises(ModelFileError, match=r"keeps some of its weights in separate files \('external data'"):
            load_model_file(external_data(location), "model.onnx")
    assert not [path for path in opened if "secret" in path]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (declared_huge, r"weights declare 3,814,697 MB in all; the limit is 512 MB"),
        (two_inputs, r"takes 2 inputs; an image classifier here takes one"),
        (lambda: b"\x08\x07garbage" * 10, r"is not an ONNX model file"),
    ],
    ids=["declared-huge", "two-inputs", "garbage"],
)
def test_files_that_cannot_work_are_refused(data, words: str) -> None:
    with pytest.raises(ModelFileError, match=words):
        load_model_file(data(), "bad.onnx")


def test_too_many_nodes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_files, "MAX_NODES", 5)
    with pytest.raises(ModelFileError, match=r"has \d+ operations; the limit is 5"):
        load_model_file(export(small_cnn(), (1, 3, *SIZE)), "big.onnx")


def test_onnx_bytes_are_recognised_without_the_extension(uploaded: ModelBundle, original) -> None:
    data = export(original, (1, 3, *SIZE))
    assert onnx_files.is_onnx(data, "model.bin")
    assert not onnx_files.is_onnx(b"PK\x03\x04 zip", "model.bin") and not onnx_files.is_onnx(b"\x80\x02", "w.pt")
    assert load_model_file(data, "model.bin").input_size == SIZE


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_says_how_to_get_every_layer(original) -> None:
    import io

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(original), buffer)
    bundle = load_model_file(buffer.getvalue(), "net.pt", input_size=SIZE)
    result = Explainer(bundle).explain(synthetic_image(8), methods=["gradcam", "guided_backprop", "saliency"])
    assert result["saliency"].applicable
    for method in ("gradcam", "guided_backprop"):
        assert "upload the model as ONNX" in result[method].reason and "`cnnvis serve`" in result[method].reason


def test_a_torchvision_resnet_export_with_shared_weights_converts() -> None:
    """PyTorch's exporter stores equal weights once (resnet18's zero biases after folding its batch norms) and
    hands them out through Identity nodes, which onnx2torch alone cannot convert."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        resnet = torchvision.models.resnet18(num_classes=5).eval()
    data = export(resnet, (1, 3, 64, 64))
    assert any(node.op_type == "Identity" for node in onnx_files._parse(data).graph.node)
    bundle = load_model_file(data, "resnet18.onnx")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), resnet(x), atol=1e-4)
    assert "layer4/layer4/1/conv2/Conv" in conv_names(bundle, synthetic_image(9))
