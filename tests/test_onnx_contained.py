"""An uploaded ONNX model is converted and run in its worker, never in the server: a conversion that allocates
gigabytes, a forward that runs too long and a conversion that reads a file are stopped there with a sentence;
every panel's engine call (explanations, the randomisation test, faithfulness, the channel gallery) gives in
the worker what it gives in-process; and what crosses the pipe is only what contained_codec allows. Figures go
to test-artifacts/hardening/onnx-*.json and docs/RELIABILITY.md."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from cnnvis_engine import ClassTarget, Explainer, LayerError, ModelBundle, ModelFileError
from cnnvis_engine.contained_explainer import ContainedExplainer
from cnnvis_engine.faithfulness import evaluate_map
from cnnvis_engine.featurevis import render_channels
from cnnvis_engine.models import contained, load_model_file, onnx_files
from cnnvis_engine.models.contained import ContainedError, Limits
from cnnvis_engine.models.contained_codec import CodecError, decode, encode
from cnnvis_engine.models.contained_onnx import ContainedOnnxModel
from cnnvis_engine.sanity import randomisation_test
from tests.conftest import synthetic_image
from tests.containment_cases import gone, rss_mib, sentence
from tests.onnx_cases import CLASSES, export, external_data, small_cnn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIGURES = Path(__file__).resolve().parent.parent / "test-artifacts" / "hardening"
SIZE = (40, 48)
SECRET = np.arange(9, dtype=np.float32) + 0.25  # what external_data's 3×3 weight would read


def record(name: str, **figures: object) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"onnx-{name}.json").write_text(json.dumps(figures, indent=1, default=str))


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    return export(small_cnn(), (1, 3, *SIZE))


@pytest.fixture(scope="module")
def uploaded(onnx_bytes: bytes) -> ModelBundle:
    return load_model_file(onnx_bytes, "net.onnx", labels="\n".join(CLASSES).encode())


@pytest.fixture(scope="module")
def in_process(onnx_bytes: bytes, uploaded: ModelBundle) -> ModelBundle:
    """The same file converted in this process (as before issue 21), with the upload's settings."""
    module, _ = onnx_files.load_onnx(onnx_bytes, "net.onnx", max_bytes=2**29)
    return dataclasses.replace(uploaded, module=module, lock=threading.RLock())


# ----- hostile graphs ----------------------------------------------------------------------------------------
def conversion_bomb(nodes: int = 150) -> bytes:
    """(N, 1, 32, 64) -> Flatten -> `nodes` MatMuls that all read one 16 MB weight (2048 × 2048) -> Gemm to 3
    classes: a 16 MB file that onnx2torch turns into a copy of the weight per node (2.4 GB)."""
    weight = numpy_helper.from_array(np.full((2048, 2048), 1e-4, np.float32), "shared")
    head = numpy_helper.from_array(np.ones((3, 2048), np.float32), "head")
    chain = [helper.make_node("Flatten", ["input"], ["h0"])]
    chain += [helper.make_node("MatMul", [f"h{i}", "shared"], [f"h{i + 1}"]) for i in range(nodes)]
    chain.append(helper.make_node("Gemm", [f"h{nodes}", "head"], ["logits"], transB=1))
    graph = helper.make_graph(
        chain,
        "bomb",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 32, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        [weight, head],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def slow_forward(rounds: int = 60) -> bytes:
    """(N, 1, S, S) with any S -> `rounds` times y = tanh(y @ x) -> mean -> 1 output: a few milliseconds at 8 px,
    minutes at 1536 px."""
    chain = [helper.make_node("Identity", ["input"], ["y0"])]
    for i in range(rounds):
        chain.append(helper.make_node("MatMul", [f"y{i}", "input"], [f"m{i}"]))
        chain.append(helper.make_node("Tanh", [f"m{i}"], [f"y{i + 1}"]))
    chain += [
        helper.make_node("GlobalAveragePool", [f"y{rounds}"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["logits"]),
    ]
    graph = helper.make_graph(
        chain,
        "slow",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, "size", "size"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_a_conversion_that_needs_gigabytes_is_stopped_by_the_workers_memory_limit(monkeypatch: pytest.MonkeyPatch):
    """Two fences: the server's check counts the shared weight once per use and refuses the file at once; were it
    to count it once (as it did), the worker's memory limit stops the conversion."""
    data = conversion_bomb()
    assert len(data) < 17 * 2**20
    with pytest.raises(ModelFileError, match="counts once for each"):
        onnx_files.check_onnx(data, "bomb.onnx", max_bytes=2**29)
    monkeypatch.setattr(onnx_files, "weight_bytes", lambda parts: (16 * 2**20, False))  # as if it missed the copies
    onnx_files.check_onnx(data, "bomb.onnx", max_bytes=2**29)  # the static checks pass: 16 MB of weights
    gc.collect()
    before = rss_mib()
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        load_model_file(data, "bomb.onnx", limits=Limits(timeout_s=60, memory_bytes=2**30))
    seconds = time.perf_counter() - start
    message = sentence(str(info.value))
    assert message == (
        "bomb.onnx could not be converted: The model needed more than 1 GB of memory, the limit for an uploaded "
        "model, so it was stopped."
    )
    growth = rss_mib() - before
    assert growth <= 50, f"the server grew by {growth:.0f} MB"
    record("conversion-bomb", message=message, seconds=round(seconds, 2), server_rss_growth_mib=round(growth, 1))


def test_a_forward_past_the_deadline_is_stopped_while_another_model_answers(uploaded: ModelBundle):
    bundle = load_model_file(slow_forward(), "slow.onnx", input_size=(8, 8), channels=1, limits=Limits(timeout_s=2))
    worker = bundle.module.worker
    first = worker.pid
    outcome: dict[str, object] = {}

    def stuck() -> None:
        start = time.perf_counter()
        try:
            with torch.no_grad():
                bundle.module(torch.rand(1, 1, 1536, 1536))
        except ContainedError as error:
            outcome["message"] = str(error)
        outcome["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=stuck)
    thread.start()
    time.sleep(0.3)
    start = time.perf_counter()  # meanwhile another upload's worker explains, for another "session"
    explanation = Explainer(uploaded).explain(synthetic_image(11), methods=["gradcam", "saliency"])
    other_seconds = time.perf_counter() - start
    thread.join(60)
    assert all(np.isfinite(r.map).all() for r in explanation.values())
    assert outcome["message"] == "The model did not answer within 2 s, so it was stopped."
    assert 2 <= outcome["seconds"] < 5
    assert gone(first) and worker.pid is None
    with torch.no_grad():  # the next request starts a fresh worker and converts the model again
        assert bundle.module(torch.rand(2, 1, 8, 8)).shape == (2, 1)
    assert worker.pid not in (None, first)
    record(
        "deadline",
        message=outcome["message"],
        seconds=round(outcome["seconds"], 2),
        other_session_explain_seconds=round(other_seconds, 2),
    )
    bundle.module.close()


def test_a_conversion_that_reads_a_file_gets_no_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """External data names a file; the server refuses it (test_onnx.py). Were that check to miss one, the
    conversion reads the file relative to its folder: here it is, in-process, for the server's folder. The
    worker's folder is then made to hold the same file, and the worker still cannot open it: it has no free
    file descriptor (RLIMIT_NOFILE)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    SECRET.tofile(folder / "secret.bin")
    monkeypatch.chdir(folder)
    module = onnx_files.convert_onnx(external_data("secret.bin"), "reader.onnx")
    read = next(iter(module.state_dict().values()))
    assert np.array_equal(read.flatten().numpy(), SECRET)  # the payload is live in-process
    monkeypatch.chdir(tmp_path)

    monkeypatch.setattr(onnx_files, "_check_safe", lambda proto, filename, max_bytes: None)  # as if it missed it
    # the worker's folder holds the file, readable by the worker's user (pytest's tmp_path is not): only the
    # descriptor limit stands in the way; the worker's folder is removed when it stops
    shared = Path(tempfile.mkdtemp(prefix="cnnvis-reader-"))
    os.chmod(shared, 0o755)
    SECRET.tofile(shared / "secret.bin")
    os.chmod(shared / "secret.bin", 0o644)
    monkeypatch.setattr(contained.tempfile, "mkdtemp", lambda prefix="": str(shared))
    with pytest.raises(ModelFileError) as info:
        load_model_file(external_data("secret.bin"), "reader.onnx")
    message = sentence(str(info.value))
    # onnx found the file (its path resolved, a regular file: otherwise it says so) and could not open it
    assert message.startswith("reader.onnx could not be converted to PyTorch: ")
    assert message.endswith("Cannot open external data for tensor weight.")
    assert str(SECRET[1]) not in message
    record("reads-a-file", message=message)


# ----- every panel's call, in the worker -----------------------------------------------------------------------
def test_the_upload_runs_in_its_worker_and_the_server_keeps_no_activations(uploaded: ModelBundle):
    """Four 64-channel convolutions at 224 px: a recorded pass holds ~100 MB of activations and gradients, all
    in the worker; the server gets a 224×224 map."""
    assert isinstance(uploaded.module, ContainedOnnxModel) and not list(uploaded.module.parameters())
    assert isinstance(Explainer(uploaded), ContainedExplainer)
    layers: list[torch.nn.Module] = [torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU()]
    for _ in range(3):
        layers += [torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU()]
    wide = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 3))
    bundle = load_model_file(export(wide.eval(), (1, 3, 224, 224)), "wide.onnx")
    explainer = Explainer(bundle)
    worker_before = bundle.module.worker.anon_mib  # converted and probed
    explainer.explain(synthetic_image(12), methods=["gradcam", "saliency"])
    gc.collect()
    before = rss_mib()
    for seed in range(13, 16):
        result = explainer.explain(synthetic_image(seed), methods=["gradcam", "saliency"])
    growth = rss_mib() - before
    assert result["gradcam"].map.shape == (224, 224)
    assert growth < 20, f"the server grew by {growth:.0f} MB"
    assert bundle.module.worker.anon_mib - worker_before > 80  # the recorded passes the worker's Explainer keeps
    record(
        "activations",
        server_rss_growth_mib=round(growth, 1),
        worker_anon_mib=round(bundle.module.worker.anon_mib, 1),
        worker_peak_mib=round(bundle.module.worker.peak_mib, 1),
    )
    bundle.module.close()


def test_explanations_equal_those_of_the_same_file_converted_in_process(uploaded, in_process):
    images = [synthetic_image(20), synthetic_image(21, (30, 90))]
    mine, theirs = Explainer(uploaded), Explainer(in_process)
    assert mine.layers(images[0], "gradcam") == theirs.layers(images[0], "gradcam")
    assert mine.predict(images[0], top_k=3) == theirs.predict(images[0], top_k=3)
    options = {"integrated_gradients": {"steps": 8}, "occlusion": {"window": 16, "stride": 8}}
    methods = ["feature_maps", "kernels", "saliency", "guided_backprop", "cam", "gradcam", "guided_gradcam"]
    ours = mine.explain(images[1], target=ClassTarget(2, "triangle"), methods=[*methods, *options], options=options)
    reference = theirs.explain(
        images[1], target=ClassTarget(2, "triangle"), methods=[*methods, *options], options=options
    )
    assert ours.target == reference.target and ours.layer == reference.layer and ours.notes == reference.notes
    assert np.array_equal(ours.image, reference.image)
    for method in reference:
        assert ours[method].layer == reference[method].layer and ours[method].meta == reference[method].meta
        assert np.allclose(ours[method].map, reference[method].map, atol=1e-5), method
    batch = mine.explain_batch(images, targets=[1, None], methods=["gradcam", "saliency"])
    expected = theirs.explain_batch(images, targets=[1, None], methods=["gradcam", "saliency"])
    assert [b.target for b in batch] == [e.target for e in expected]
    assert all(np.allclose(b["gradcam"].map, e["gradcam"].map, atol=1e-5) for b, e in zip(batch, expected))


def test_sanity_faithfulness_and_the_gallery_run_in_the_worker_as_in_process(uploaded, in_process):
    image = synthetic_image(30)
    reported: list[tuple] = []
    steps = randomisation_test(uploaded, image, "gradcam", progress=lambda *args: reported.append(args))
    expected = randomisation_test(in_process, image, "gradcam")
    assert [s.layer for s in steps] == [s.layer for s in expected] and len(steps) > 3
    assert np.allclose([s.spearman for s in steps], [s.spearman for s in expected], atol=1e-4)
    assert reported == [(i + 1, len(steps), s.layer) for i, s in enumerate(steps)]  # progress crossed the pipe

    saliency = steps[0].map
    ours = evaluate_map(uploaded, image, saliency, target=1, steps=10)
    theirs = evaluate_map(in_process, image, saliency, target=1, steps=10)
    assert np.allclose(ours.deletion.scores, theirs.deletion.scores, atol=1e-5)
    assert abs(ours.average_drop - theirs.average_drop) < 1e-5

    layer = "features/features/3/Conv"
    gallery = render_channels(uploaded, layer, [0, 5], size=32, steps=6, seed=3)
    reference = render_channels(in_process, layer, [0, 5], size=32, steps=6, seed=3)
    assert [g.settings for g in gallery] == [r.settings for r in reference]
    assert all(np.abs(g.images.astype(int) - r.images.astype(int)).max() <= 1 for g, r in zip(gallery, reference))


def test_the_engines_refusals_come_back_as_the_same_errors(uploaded: ModelBundle):
    with pytest.raises(LayerError, match=r"has no layer called 'features/6/Conv'\. Did you mean"):
        Explainer(uploaded).explain(synthetic_image(40), layer="features/6/Conv", methods=["gradcam"])
    result = Explainer(uploaded).explain(synthetic_image(40), layer="fc/Gemm", methods=["gradcam"])
    assert "not a spatial feature map" in result["gradcam"].reason
    with pytest.raises(CodecError, match=r"A function cannot be sent"):
        render_channels(uploaded, "features/features/3/Conv", 2, steps=2, cancel=lambda: False)


def test_the_worker_stops_when_the_model_is_dropped(onnx_bytes: bytes):
    bundle = load_model_file(onnx_bytes, "net.onnx")
    pid = bundle.module.worker.pid
    assert pid is not None and not gone(pid)
    del bundle
    gc.collect()
    assert gone(pid)


# ----- the codec ---------------------------------------------------------------------------------------------
def test_the_codec_carries_engine_results_and_refuses_everything_else(uploaded: ModelBundle):
    explanation = Explainer(uploaded).explain(synthetic_image(50), methods=["gradcam", "kernels"])
    structure, tensors = encode(explanation)
    json.dumps(structure)  # plain JSON, with the arrays beside it
    again = decode(json.loads(json.dumps(structure)), tensors)
    assert again.target == explanation.target and again.predictions == explanation.predictions
    assert np.array_equal(again["kernels"].map, explanation["kernels"].map)

    @dataclasses.dataclass
    class Explanation:  # the name of an allowed type, not the type
        results: dict

    for value in (Explanation({}), print, object(), {1: "a"}, np.array([object()])):
        with pytest.raises(CodecError):
            encode(value)
    deep: object = 1
    for _ in range(30):
        deep = [deep]
    for message in (
        {"$dc": "Popen", "f": {"args": "sh"}},  # a type that is not on the list
        {"$dc": "ClassTarget", "f": {"index": 1, "name": "a", "extra": 2}},  # fields it does not have
        {"$pt": 3},  # a tensor the message does not hold
        {"$import": "os"},
        deep,  # deeper than allowed
    ):
        with pytest.raises(CodecError):
            decode(message, [])
    assert decode({"$dc": "ClassTarget", "f": {"index": 1, "name": "a"}}, []) == ClassTarget(1, "a")
