"""The complete static checks on an uploaded ONNX file (cnnvis_engine/models/onnx_checks.py), each case from a
hostile-input probe: external data hidden anywhere, memory and work bombs, loops; and real exports still load."""

from __future__ import annotations

import gc
import io
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnvis_engine import ModelFileError
from cnnvis_engine.models import load_model_file, onnx_checks, onnx_cost, onnx_files
from tests.onnx_cases import (
    HIDDEN_EXTERNAL,
    VALUE_SIZED_OPS,
    constant_of_shape_bomb,
    dangling,
    export,
    matmul_chain_bomb,
    relu_loop,
    shared_weight_bomb,
    small_cnn,
    two_node_loop,
    value_sized,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SECRET = b"TOP-SECRET-36-BYTES-of-server-data!!"  # 9 float32s: what a hostile file would read in as a weight


@pytest.fixture
def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path opened through builtins.open, io.open, os.open or onnx's own C++ opener while the test runs, in a
    folder that holds the secret file (so that relative references find it). onnx 1.23 opens external data in C++
    (`c_checker._open_external_data`), which a patch of Python's open functions alone never sees."""
    import onnx.external_data_helper

    (tmp_path / "secret.bin").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    paths: list[str] = []

    def recording(real: Callable, at: int = 0) -> Callable:
        return lambda *args, **kwargs: paths.append(str(args[at])) or real(*args, **kwargs)

    monkeypatch.setattr("builtins.open", recording(open))
    monkeypatch.setattr(io, "open", recording(io.open))
    monkeypatch.setattr(os, "open", recording(os.open))
    checker = onnx.external_data_helper.c_checker
    monkeypatch.setattr(checker, "_open_external_data", recording(checker._open_external_data, at=1))
    return paths


@pytest.mark.parametrize("case", list(HIDDEN_EXTERNAL))
def test_external_data_anywhere_is_refused_with_one_sentence_and_nothing_opened(
    case: str, tmp_path: Path, opened: list[str]
) -> None:
    secret = tmp_path / "secret.bin"
    locations = [str(secret), "secret.bin", "../" * 8 + str(secret).lstrip("/"), "/nonexistent/elsewhere.bin"]
    messages = set()
    for location in locations:
        with pytest.raises(ModelFileError) as refused:
            load_model_file(HIDDEN_EXTERNAL[case](location), "model.onnx")
        messages.add(str(refused.value))
    assert messages == {onnx_checks.EXTERNAL_SENTENCE.format(filename="model.onnx")}  # no oracle, no location
    assert not [path for path in opened if "secret" in path or "elsewhere" in path]


def test_without_the_checks_the_converter_reads_the_secret(opened: list[str], monkeypatch) -> None:
    """The probe's hole, shown real so that the test above can fail: a `value` attribute declared FLOAT holding an
    external tensor is read by onnx2torch (the old check looked at TENSOR-typed attributes only), and the secret's
    bytes become a weight. In this process, that is: an upload converts in its locked-in worker, where the same
    file cannot be opened (tests/test_onnx_contained.py), so the checks are the first fence, not the only one."""
    monkeypatch.setattr(onnx_files, "check_external", lambda parts, filename: None)
    monkeypatch.setattr(onnx_files, "check_forward_cost", lambda proto, filename, spec: None)
    module, _ = onnx_files.load_onnx(HIDDEN_EXTERNAL["float-typed"]("secret.bin"), "model.onnx", max_bytes=2**20)
    assert "secret.bin" in opened  # by onnx's C++ opener (then os.fdopen: open(<descriptor>))
    weights = [t for t in (*module.parameters(), *module.buffers()) if t.numel() == 9]
    assert [t.detach().numpy().tobytes() for t in weights] == [SECRET]


def _peak_growth_mb(call: Callable[[], object]) -> tuple[float, float, BaseException | None]:
    """(seconds, peak resident-memory growth in MB, the exception) of `call`: the kernel's high-water mark (VmHWM),
    reset to the current size first through /proc/self/clear_refs."""

    def status(field: str) -> float:
        with Path("/proc/self/status").open() as lines:
            return next(int(line.split()[1]) for line in lines if line.startswith(field)) / 1024

    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("this kernel does not let a process reset its peak memory (/proc/self/clear_refs)")
    before, start, error = status("VmRSS:"), time.perf_counter(), None
    try:
        call()
    except BaseException as exc:  # noqa: BLE001 - handed back to the test
        error = exc
    return time.perf_counter() - start, status("VmHWM:") - before, error


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (
            constant_of_shape_bomb,
            (
                r"^bomb\.onnx's operations would need about 2\.4 GB of memory for one picture \(8×8; node 'big' "
                r"\(ConstantOfShape\) alone makes 2\.4 GB\); the limit is 2\.0 GB\.$"
            ),
        ),
        (
            shared_weight_bomb,
            (
                r"^bomb\.onnx's weights declare 2,400 MB in all; the limit is 512 MB \(a weight several operations read "
                r"counts once for each, as converting copies it\)\.$"
            ),
        ),
        (
            matmul_chain_bomb,
            (
                r"^bomb\.onnx's operations would take about 1,341 billion multiply-adds for one picture \(8×8\); the limit "
                r"is 200 billion, so that explaining it stays quick\.$"
            ),
        ),
        (
            value_sized,
            (
                r"^bomb\.onnx's shapes cannot be bounded before it runs: node 'big' \(ConstantOfShape\) makes a tensor "
                r"whose size depends on values computed from the picture"
            ),
        ),
    ],
    ids=["constant-of-shape-2.4GB", "shared-weight-150-uses", "matmul-chain-19987", "value-sized"],
)
def test_memory_and_work_bombs_are_refused_quickly_without_memory(build, words: str) -> None:
    start = time.perf_counter()
    data = build()
    assert time.perf_counter() - start < 5
    load_model_file(export(small_cnn(), (1, 3, 40, 48)), "warm.onnx")  # imports and first-use costs out of the figure
    seconds, growth, error = _peak_growth_mb(lambda: load_model_file(data, "bomb.onnx"))
    assert isinstance(error, ModelFileError), error
    assert re.search(words, str(error)), str(error)
    assert seconds < 5, seconds  # 0.0-0.6 s on an idle machine; up to 3.5 s seen beside 5 other busy processes
    assert growth <= 50, growth


@pytest.mark.parametrize("op", VALUE_SIZED_OPS)
def test_a_size_computed_from_the_picture_cannot_be_bounded(op: str) -> None:
    with pytest.raises(ModelFileError) as refused:
        load_model_file(value_sized(op), "sized.onnx")
    assert str(refused.value) == (
        f"sized.onnx's shapes cannot be bounded before it runs: node 'big' ({op}) makes a tensor whose size depends "
        "on values computed from the picture, so the memory it needs is unknown."
    )


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (relu_loop, "cannot be run: its operations form a loop: node 'relu1' (Relu) needs its own output 'looped'."),
        (
            two_node_loop,
            (
                "cannot be run: its operations form a loop: node 'add' (Add) needs 'back', which node 'relu' (Relu) makes "
                "from its result."
            ),
        ),
        (
            dangling,
            (
                "cannot be run: node 'matmul' (MatMul) needs 'missing_weight', which no operation, weight or input in the "
                "file makes."
            ),
        ),
    ],
    ids=["own-output", "two-node-loop", "dangling"],
)
def test_operations_out_of_order_are_named(build, words: str) -> None:
    with pytest.raises(ModelFileError) as refused:
        load_model_file(build(), "loop.onnx")
    assert str(refused.value) == f"loop.onnx {words}"


def test_a_converter_failure_names_the_node_not_a_bare_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the order check the loop reached onnx2torch, whose KeyError came out as the bare text `'Relu'.`"""
    monkeypatch.setattr(onnx_files, "check_order", lambda proto, filename: None)
    with pytest.raises(ModelFileError) as refused:
        load_model_file(relu_loop(), "loop.onnx")
    message = str(refused.value)
    assert message.startswith("loop.onnx could not be converted to PyTorch: node 'relu1' (Relu): "), message
    assert "which the converter could not find" in message


def test_converted_weights_count_each_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnx2torch copies a weight into every node that reads it: 20 uses of a 256 KB weight convert to 5 MB."""
    data = shared_weight_bomb(side=256, uses=20)
    with pytest.raises(ModelFileError, match=r"weights declare 5 MB in all; the limit is 4 MB \(a weight several"):
        load_model_file(data, "shared.onnx", max_bytes=4 * 2**20)
    monkeypatch.setattr(onnx_files, "weight_bytes", lambda parts: (0, False))  # as if the count before had missed
    with pytest.raises(ModelFileError, match=r"^shared\.onnx became 5 MB of weights once converted to PyTorch \("):
        load_model_file(data, "shared.onnx", max_bytes=4 * 2**20)


def test_check_converted_counts_copies_once_each_and_shared_objects_once() -> None:
    weight = nn.Parameter(torch.zeros(512, 512))  # 1 MB
    shared = nn.ModuleList(nn.Linear(512, 512, bias=False) for _ in range(3))
    for layer in shared:
        layer.weight = weight
    onnx_checks.check_converted(shared, "shared.onnx", max_bytes=2 * 2**20)  # one object: 1 MB
    copies = nn.ModuleList(nn.Linear(512, 512, bias=False) for _ in range(3))
    with pytest.raises(ModelFileError, match=r"became 3 MB of weights"):
        onnx_checks.check_converted(copies, "copies.onnx", max_bytes=2 * 2**20)


class TokenNet(nn.Module):
    """Patches → tokens with a class token, as torchvision's ViT: its export computes `h // p` with Div and Cast
    and `expand(n, -1, -1)` with Equal and Where, where onnx's data propagation stops."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        tokens = self.proj(x).reshape(n, 8, (h // 4) * (w // 4)).permute(0, 2, 1)
        tokens = torch.cat([self.cls.expand(n, -1, -1), tokens], dim=1)
        return self.fc(tokens.mean(dim=1))


def test_shape_arithmetic_is_computed_so_a_vit_style_export_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = TokenNet().eval()
    data = export(net, (1, 3, 32, 32))
    proto = onnx_files._parse(data)
    cost = onnx_cost.forward_cost(proto, "vit.onnx", onnx_files._input_spec(proto, "vit.onnx"))
    assert not cost.bounded  # every size inferred exactly, after computing the Div/Cast and Where values
    bundle = load_model_file(data, "vit.onnx")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), net(x), atol=1e-5)
    monkeypatch.setattr(onnx_cost, "MAX_FOLDED", 0)
    with pytest.raises(ModelFileError, match=r"shapes cannot be bounded before it runs: node '/Expand' \(Expand\)"):
        load_model_file(data, "vit.onnx")


def test_the_work_estimate_holds_the_multiply_adds_torch_does() -> None:
    """Multiply-adds counted with hooks on the PyTorch original lie within the estimate, which adds one per output
    element of every other operation; memory is every value's bytes, at least the convolutions' outputs."""
    net, size = small_cnn(), (40, 48)
    macs, conv_bytes = [], []

    def count(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            macs.append(output.numel() * module.in_channels // module.groups * module.weight[0, 0].numel())
            conv_bytes.append(output.numel() * 4)
        elif isinstance(module, nn.Linear):
            macs.append(output.numel() * module.in_features)

    handles = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, 3, *size))
    for handle in handles:
        handle.remove()
    proto = onnx_files._parse(export(net, (1, 3, *size)))
    cost = onnx_cost.forward_cost(proto, "net.onnx", onnx_files._input_spec(proto, "net.onnx"))
    assert (cost.height, cost.width, cost.bounded) == (*size, False)
    assert sum(macs) <= cost.work <= sum(macs) + cost.memory // 4
    assert sum(conv_bytes) < cost.memory < 3 * sum(conv_bytes)


def test_a_dynamic_size_is_bounded_at_the_default_side() -> None:
    proto = onnx_files._parse(export(small_cnn(), (1, 3, 40, 48), dynamic_size=True))
    cost = onnx_cost.forward_cost(proto, "net.onnx", onnx_files._input_spec(proto, "net.onnx"))
    assert (cost.height, cost.width) == (onnx_cost.DEFAULT_SIDE, onnx_cost.DEFAULT_SIDE)


class Upsampling(nn.Module):
    """Resize up by a scale (a constant) and back to the input's own size (a size computed from its shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.interpolate(self.conv(x), scale_factor=2.0, mode="bilinear")
        y = nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest")
        return self.fc(y.mean((2, 3)))


@pytest.mark.parametrize("dynamic_size", [False, True])
def test_resizes_by_a_scale_or_to_the_inputs_size_are_bounded_exactly(dynamic_size: bool) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Upsampling().eval()
    data = export(net, (1, 3, 32, 32), dynamic_size=dynamic_size)
    proto = onnx_files._parse(data)
    cost = onnx_cost.forward_cost(proto, "up.onnx", onnx_files._input_spec(proto, "up.onnx"))
    side = onnx_cost.DEFAULT_SIDE if dynamic_size else 32
    assert (cost.height, cost.width, cost.bounded) == (side, side, False)
    assert cost.largest == 4 * 4 * (2 * side) ** 2  # the upsampled (1, 4, 2H, 2W) float tensor
    bundle, x = load_model_file(data, "up.onnx"), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(bundle.module(x), net(x), atol=1e-5)
