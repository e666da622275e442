"""An uploaded model is code: each hostile case of issue 12 is contained (engine side; the browser side is in
test_containment_browser.py). Every payload is first shown to be live in-process, then harmless through
`load_model_file`: by the static check, and with the check turned off (`check_code=False`) by the worker alone.
Figures go to test-artifacts/hardening/contain-*.json and docs/RELIABILITY.md.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from containment_cases import (
    Allocates,
    IgnoresItsInput,
    LoopsForever,
    ReadsAFile,
    ReturnsDetached,
    ReturnsIntegers,
    ReturnsNoClasses,
    SavesAFile,
    SavesAFileOnLoad,
    StartsABackgroundTask,
    TooManyClasses,
    code_archive,
    gone,
    rewritten,
    rss_mib,
    sentence,
    zip_bomb,
)
from hardening_cases import SmallNet, torch_saved, torchscript
from PIL import Image

from cnnvis_engine import Explainer, ModelError, ModelFileError
from cnnvis_engine.models import load_model, load_model_file, user_files
from cnnvis_engine.models.contained import ContainedModel, Limits, Worker
from cnnvis_engine.models.torchscript_check import check_torchscript
from cnnvis_engine.models.user_files import TORCHSCRIPT_OFF
from cnnvis_ui.uploads import is_loopback, torchscript_allowed

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants:UserWarning"),
]
FIGURES = Path(__file__).resolve().parent.parent / "test-artifacts" / "hardening"
SHORT = Limits(timeout_s=3, memory_bytes=2**30)
SECRET = "cnnvis-secret-3f9a1c"


def record(name: str, **figures: object) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"contain-{name}.json").write_text(json.dumps(figures, indent=1, default=str))


def loads_in_process(data: bytes) -> torch.jit.ScriptModule:
    return torch.jit.load(io.BytesIO(data))


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> list[Worker]:
    """Every worker `load_model_file` starts in the test, to read its figures (peak memory) afterwards."""
    started: list[Worker] = []

    class Recorded(Worker):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            started.append(self)

    monkeypatch.setattr(user_files, "Worker", Recorded)
    return started


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "written-by-the-model"
    assert not path.exists()
    return path


# ----- writing a file ----------------------------------------------------------------------------------------
def test_a_forward_that_writes_a_file_is_refused_and_writes_nothing(target: Path):
    data = torchscript(SavesAFile(str(target)))
    loads_in_process(data)(torch.zeros(1, 3, 8, 8))
    assert target.exists()  # the payload is live
    target.unlink()
    with pytest.raises(ModelFileError) as info:
        load_model_file(data, "writer.pt", limits=SHORT)
    assert "torch.save (file access)" in sentence(str(info.value))
    assert not target.exists()
    record("save-in-forward", message=str(info.value), written=target.exists())


def test_a_getattr_look_up_that_writes_a_file_is_refused_and_writes_nothing(target: Path):
    data = rewritten(torchscript(SavesAFile(str(target))), "torch.save(", 'getattr(torch, "save")(')
    loads_in_process(data)(torch.zeros(1, 3, 8, 8))
    assert target.exists()  # torch.jit.load compiles the edited code: the payload is live
    target.unlink()
    with pytest.raises(ModelFileError) as info:
        load_model_file(data, "getattr.pt", limits=SHORT)
    assert sentence(str(info.value)) == (
        "getattr.pt is refused: its code looks an attribute up by name (getattr(torch, 'save')), which could reach "
        "file access or any other function around this check; a model that only computes needs none of that."
    )
    assert not target.exists()
    record("getattr-save", message=str(info.value), written=target.exists())


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('getattr(torch, "save")(x, "p")', "looks an attribute up by name (getattr(torch, 'save'))"),
        ('getattr(ops.aten, "save")(x, "p")', "looks an attribute up by name (getattr(ops.aten, 'save'))"),
        ("getattr(self, name)", "looks an attribute up by name (getattr(self, name))"),
        ('getattr(self, "__class__")', "looks an attribute up by name (getattr(self, '__class__'))"),
        ("f = getattr", "passes getattr around as a value"),
        ('setattr(self, "w", x)', "uses setattr,"),
        ('hasattr(self, "w")', "uses hasattr,"),
        ('delattr(self, "w")', "uses delattr,"),
        ("vars(self)", "uses vars,"),
        ("globals()", "uses globals,"),
        ("locals()", "uses locals,"),
        ('__import__("os")', "uses __import__,"),
        ('eval("1")', "uses eval,"),
        ('exec("1")', "uses exec,"),
        ('compile("1", "f", "exec")', "uses compile,"),
        ("__builtins__.open", "uses __builtins__,"),
        ('self.__getattribute__("w")', "reaches into an object by name (self.__getattribute__)"),
        ('self.__getattr__("w")', "reaches into an object by name (self.__getattr__)"),
        ('torch.__dict__["save"]', "reaches into an object by name (torch.__dict__)"),
        ("x.__class__.__mro__[1].__subclasses__()", "reaches into an object by name"),
        ("self.__class__.__bases__", "reaches into an object by name"),
        ("t = torch", "holds torch as a value instead of calling it"),
        ("t = torch.ops", "holds torch.ops as a value instead of calling it"),
        ("t = ops.aten", "holds ops.aten as a value instead of calling it"),
    ],
)
def test_every_look_up_by_name_is_refused_with_the_sentence(line: str, words: str):
    source = f"class M(Module):\n  def forward(self, x: Tensor) -> Tensor:\n    {line}\n    return x\n"
    with pytest.raises(ModelFileError) as info:
        check_torchscript(code_archive(source), "m.pt")
    message = sentence(str(info.value))
    assert message.startswith("m.pt is refused: its code ") and words in message, message


def test_the_compilers_own_getattr_on_a_submodule_passes():
    """TorchScript prints `getattr(blocks, "0")` for submodules whose names are not identifiers (ModuleList,
    Sequential, ModuleDict keys such as "a-b"), in scripted and traced code alike."""

    class Nested(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.ReLU())])
            self.heads = torch.nn.ModuleDict({"a-b": torch.nn.Linear(3, 2)})

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            return torch.cat([head(x.mean((2, 3))) for head in self.heads.values()], 1)

    scripted, traced = io.BytesIO(), io.BytesIO()
    torch.jit.save(torch.jit.script(Nested()), scripted)
    torch.jit.save(torch.jit.trace(Nested(), torch.zeros(1, 3, 8, 8)), traced)
    for data in (scripted.getvalue(), traced.getvalue()):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            code = b"".join(archive.read(e) for e in archive.infolist() if "/code/" in e.filename)
        assert b'getattr(blocks, "0")' in code or b'getattr(heads, "a-b")' in code
        check_torchscript(data, "nested.pt")  # no refusal


def test_without_the_static_check_the_worker_still_cannot_write(target: Path):
    data = torchscript(SavesAFile(str(target)))
    start = time.perf_counter()
    bundle = load_model_file(data, "writer.pt", limits=SHORT, check_code=False)
    seconds = time.perf_counter() - start
    try:  # the write fails inside the worker (no descriptor can be opened), the model itself still answers
        output = bundle.module(torch.zeros(2, 3, 8, 8))
        assert output.shape == (2, 5)
        assert not target.exists()
        assert not any(target.parent.iterdir())
        record(
            "save-in-forward-worker-only",
            written=target.exists(),
            load_and_probe_seconds=round(seconds, 2),
            worker_peak_mib=round(bundle.module.worker.peak_mib, 1),
            worker_anon_mib=round(bundle.module.worker.anon_mib, 1),
        )
    finally:
        bundle.module.close()


def test_a_setstate_that_writes_during_loading_is_refused_before_loading(target: Path):
    data = torchscript(SavesAFileOnLoad(str(target)))
    assert not target.exists()  # scripting and saving did not write
    loads_in_process(data)
    assert target.exists()  # plain torch.jit.load writes it
    target.unlink()
    with pytest.raises(ModelFileError) as info:
        load_model_file(data, "onload.pt", limits=SHORT)
    assert "own (un)packing code, which runs while the file is being opened" in sentence(str(info.value))
    assert not target.exists()
    bundle = load_model_file(data, "onload.pt", limits=SHORT, check_code=False)  # the worker alone
    try:
        assert bundle.module(torch.zeros(1, 3, 8, 8)).shape == (1, 5)
        assert not target.exists()
    finally:
        bundle.module.close()
    record("save-in-setstate", message=str(info.value), written=target.exists())


# ----- reading a file ----------------------------------------------------------------------------------------
def test_a_model_that_reads_a_server_file_gets_nothing_of_it(tmp_path: Path):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET * 4)
    data = torchscript(ReadsAFile(str(secret)))
    leaked = loads_in_process(data)(torch.zeros(1, 3, 8, 8))
    assert bytes(leaked[0].byte().tolist()) == SECRET.encode()[:16]  # the payload is live
    with pytest.raises(ModelFileError) as info:
        load_model_file(data, "reader.pt", limits=SHORT)
    assert "torch.from_file (file access)" in sentence(str(info.value))
    messages = {"static check": str(info.value)}
    for path in (secret, Path("/etc/passwd"), tmp_path / "does-not-exist"):  # the worker alone: exists or not
        with pytest.raises(ModelFileError) as info:
            load_model_file(torchscript(ReadsAFile(str(path))), "reader.pt", limits=SHORT, check_code=False)
        message = sentence(str(info.value))
        assert SECRET not in message and "root:" not in message  # the model knows its path; the content stays
        messages[path.name] = message.replace(str(path), "<path>")
    # the same sentence whether the file exists or not: nothing about the path is revealed
    assert messages["secret.txt"] == messages["passwd"] == messages["does-not-exist"]
    assert "Too many open files" in messages["passwd"]
    record("from-file", messages=messages)


# ----- loops and allocations ---------------------------------------------------------------------------------
def test_a_model_that_loops_forever_is_stopped_within_its_time_and_the_server_goes_on():
    worker = Worker(torchscript(LoopsForever()), SHORT)
    worker.request({"op": "forget"})  # started and loaded: the loop is in forward
    pid, peak, anon = worker.pid, worker.peak_mib, worker.anon_mib
    assert pid is not None
    outcome: dict[str, object] = {}

    def probe() -> None:
        start = time.perf_counter()
        try:
            worker.forward(torch.zeros(1, 3, 8, 8), grad=False)
        except ModelError as error:
            outcome["message"] = str(error)
        outcome["seconds"] = time.perf_counter() - start

    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(0.5)
    explainer = Explainer(
        load_model_file(
            torch_saved(load_model("resnet18", "random").module.state_dict()), "w.pth", architecture="resnet18"
        )
    )
    start = time.perf_counter()  # meanwhile this process answers another "session"
    explanation = explainer.explain(Image.new("RGB", (32, 32)), methods=("saliency",))
    other_seconds = time.perf_counter() - start
    assert np.isfinite(explanation["saliency"].map).all()
    thread.join(30)
    assert outcome["message"] == "The model did not answer within 3 s, so it was stopped."
    assert 3 <= outcome["seconds"] < 6
    assert gone(pid) and worker.pid is None
    record(
        "loop",
        seconds=round(outcome["seconds"], 2),
        message=outcome["message"],
        other_session_explain_seconds=round(other_seconds, 2),
        worker_gone=gone(pid),
        worker_peak_mib_before_the_loop=round(peak, 1),
        worker_anon_mib_before_the_loop=round(anon, 1),
    )


def test_a_looping_upload_is_refused_with_the_sentence():
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"^The model did not answer within 3 s, so it was stopped\.$"):
        load_model_file(torchscript(LoopsForever()), "loop.pt", limits=SHORT)
    record("loop-upload", seconds_including_worker_start=round(time.perf_counter() - start, 2))


def test_a_model_that_allocates_20_gb_is_stopped_and_the_server_keeps_its_memory(workers):
    before = rss_mib()
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        load_model_file(torchscript(Allocates(20)), "hungry.pt", limits=SHORT)
    seconds = time.perf_counter() - start
    message = sentence(str(info.value))
    assert message == ("The model needed more than 1 GB of memory, the limit for an uploaded model, so it was stopped.")
    growth = rss_mib() - before
    assert growth < 100, f"the server grew by {growth:.0f} MB"
    record(
        "allocate-20gb",
        message=message,
        seconds=round(seconds, 2),
        server_rss_growth_mib=round(growth, 1),
        worker_peak_mib=round(workers[0].peak_mib, 1),
        worker_anon_mib=round(workers[0].anon_mib, 1),
    )


# ----- zip bombs ---------------------------------------------------------------------------------------------
def test_a_zip_bomb_is_refused_from_its_directory_without_inflating():
    bomb = zip_bomb()
    assert len(bomb) < 3 * 2**20
    before = rss_mib()
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        load_model_file(bomb, "bomb.pt", architecture="resnet18")
    seconds = time.perf_counter() - start
    message = sentence(str(info.value))
    assert message.startswith("bomb.pt would unpack to 2,049 MB (it is 2 MB compressed); the limit is 512 MB")
    growth = rss_mib() - before
    assert growth < 100 and seconds < 1
    record(
        "zip-bomb",
        file_mib=round(len(bomb) / 2**20, 2),
        message=message,
        seconds=round(seconds, 4),
        rss_growth_mib=round(growth, 1),
    )


def test_an_archive_naming_a_path_outside_itself_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("../../etc/cron.d/evil", b"* * * * * root true\n")
    with pytest.raises(ModelFileError, match="names a file outside its own archive"):
        load_model_file(buffer.getvalue(), "escape.pt", architecture="resnet18")


def test_an_archive_with_more_code_than_any_model_needs_is_refused_before_parsing():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/code/__torch__/big.py", "x = 1\n" * (6 * 2**20))  # 36 MB of source, 40 KB zipped
        archive.writestr("archive/constants.pkl", b"\x80\x02).")
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"^big.pt holds 36 MB of TorchScript code; the limit is 32 MB"):
        load_model_file(buffer.getvalue(), "big.pt", limits=SHORT)
    assert time.perf_counter() - start < 1


def test_a_model_that_starts_a_background_task_is_refused():
    with pytest.raises(ModelFileError, match="starts a background task \\(fork\\), which could go on running"):
        load_model_file(torchscript(StartsABackgroundTask()), "fork.pt", limits=SHORT)


# ----- outputs the probe refuses -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("module", "words"),
    [
        (ReturnsNoClasses(), "The model returned a tensor of shape (1, 0): no class scores at all."),
        (ReturnsIntegers(), "The model returned int64 values, not floating-point scores"),
        (ReturnsDetached(), "The model's output does not depend on its input image"),
        (IgnoresItsInput(), "The model's output does not depend on its input image"),
        (TooManyClasses(), "The model returned 200,000 class scores; the limit is 100,000 classes."),
    ],
    ids=["1x0", "integers", "detached", "ignores-input", "200k-classes"],
)
def test_an_output_no_map_could_explain_is_refused_with_a_sentence(module: torch.nn.Module, words: str):
    with pytest.raises(ModelFileError) as info:
        load_model_file(torchscript(module), "odd.pt", limits=SHORT)
    assert words in sentence(str(info.value))
    record(f"output-{type(module).__name__}", message=str(info.value))


@pytest.fixture(scope="module")
def resnet18_weights() -> dict[str, torch.Tensor]:
    return load_model("resnet18", "random").module.state_dict()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("sparse", "its weight fc.weight is a sparse tensor (sparse_coo); weights must be dense."),
        ("meta", "its weight fc.weight is a meta tensor: it has a shape but no values."),
        ("integers", "fc.weight holds whole numbers in the file, but the model needs floating-point values there."),
        ("complex", "its weight fc.weight holds complex numbers."),
    ],
)
def test_an_odd_tensor_in_a_state_dict_is_refused_with_a_sentence(change: str, words: str, resnet18_weights):
    weight = resnet18_weights["fc.weight"]
    odd = {
        "sparse": lambda: weight.to_sparse(),
        "meta": lambda: torch.empty(weight.shape, device="meta"),
        "integers": lambda: weight.long(),
        "complex": lambda: weight.to(torch.complex64),
    }[change]()
    with pytest.raises(ModelFileError) as info:
        load_model_file(torch_saved({**resnet18_weights, "fc.weight": odd}), "odd.pth", architecture="resnet18")
    assert words in sentence(str(info.value))
    record(f"state-dict-{change}", message=str(info.value))


def test_anything_else_a_load_raises_is_still_a_sentence(monkeypatch: pytest.MonkeyPatch, resnet18_weights):
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError('Traceback (most recent call last):\n  File "x.py"\nRuntimeError: something odd')

    monkeypatch.setattr(user_files, "load_model", broken)
    with pytest.raises(ModelFileError) as info:
        load_model_file(torch_saved(resnet18_weights), "w.pth", architecture="resnet18")
    assert str(info.value) == "w.pth could not be loaded: something odd."


# ----- what still works --------------------------------------------------------------------------------------
def test_a_valid_torchscript_upload_runs_in_its_worker_and_is_explained_like_in_process():
    torch.manual_seed(0)
    net = SmallNet().eval()
    bundle = load_model_file(torchscript(net), "small.pt", input_size=(32, 32))
    module = bundle.module
    assert isinstance(module, ContainedModel)
    pid = module.worker.pid
    assert pid is not None and pid != os.getpid()
    try:
        x = torch.randn(3, 3, 32, 32, requires_grad=True)
        output = module(x)
        (gradient,) = torch.autograd.grad(output[:, 2].sum(), x)
        x_local = x.detach().clone().requires_grad_(True)
        (local,) = torch.autograd.grad(net(x_local)[:, 2].sum(), x_local)
        assert torch.allclose(output, net(x), atol=1e-6) and torch.allclose(gradient, local, atol=1e-6)
        image = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
        explanation = Explainer(bundle).explain(
            Image.fromarray(image),
            methods=("saliency", "integrated_gradients", "smoothgrad", "occlusion", "gradcam"),
            target=1,
        )
        for method in ("saliency", "integrated_gradients", "smoothgrad", "occlusion"):
            assert explanation[method].applicable and np.isfinite(explanation[method].map).all(), method
        assert "TorchScript" in explanation["gradcam"].reason
        _, prepared = bundle.prepare(Image.fromarray(image))
        assert explanation.predictions[0].index == int(net(prepared[None]).argmax())
    finally:
        module.close()
    assert gone(pid)


def test_real_exported_models_pass_the_code_check_and_a_traced_one_loads():
    import torchvision

    torch.manual_seed(0)
    for name, how in (("resnet18", "script"), ("mobilenet_v3_small", "script"), ("mobilenet_v3_small", "trace")):
        net = torchvision.models.get_model(name, weights=None).eval()
        exported = torch.jit.script(net) if how == "script" else torch.jit.trace(net, torch.zeros(1, 3, 224, 224))
        buffer = io.BytesIO()
        torch.jit.save(exported, buffer)
        check_torchscript(buffer.getvalue(), f"{name}.pt")  # no refusal
    traced = torchvision.models.get_model("resnet18", weights=None, num_classes=7).eval()
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(traced, torch.zeros(1, 3, 64, 64)), buffer)
    bundle = load_model_file(buffer.getvalue(), "traced.pt", input_size=(64, 64), limits=SHORT)
    try:
        assert len(bundle.class_names) == 7
        assert torch.allclose(bundle.module(torch.ones(1, 3, 64, 64)), traced(torch.ones(1, 3, 64, 64)), atol=1e-5)
    finally:
        bundle.module.close()


def test_the_worker_restarts_after_a_timeout_and_stops_when_the_model_is_dropped():
    import gc

    worker = Worker(torchscript(SmallNet()), SHORT)
    module = ContainedModel(worker)
    module(torch.zeros(1, 3, 8, 8))
    first = worker.pid
    worker.close()
    assert gone(first)
    module(torch.zeros(1, 3, 8, 8))  # a fresh worker, the model loaded again
    second = worker.pid
    assert second not in (None, first)
    del module, worker
    gc.collect()
    assert gone(second)


def test_proxy_overhead_against_in_process(tmp_path: Path):
    """One 224×224 forward + backward to the input, through the worker and in-process (median of 5)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    ).eval()
    scripted = torch.jit.script(net)
    module = ContainedModel(Worker(torchscript(net), SHORT))

    def once(model: torch.nn.Module) -> float:
        x = torch.randn(1, 3, 224, 224, requires_grad=True)
        start = time.perf_counter()
        torch.autograd.grad(model(x)[0, 3], x)
        return time.perf_counter() - start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker runs: the same work on each side
    try:
        for _ in range(3):  # TorchScript's profiling executor optimises a graph after its first runs
            once(module), once(scripted)
        remote = sorted(once(module) for _ in range(5))[2]
        local = sorted(once(scripted) for _ in range(5))[2]
        peak, anon = module.worker.peak_mib, module.worker.anon_mib
    finally:
        torch.set_num_threads(threads)
        module.close()
    record(
        "overhead",
        remote_ms=round(1000 * remote, 1),
        in_process_ms=round(1000 * local, 1),
        overhead_ms=round(1000 * (remote - local), 1),
        worker_peak_mib=round(peak, 1),
        worker_anon_mib=round(anon, 1),
    )
    assert remote < local + 0.5


# ----- deployment mode ---------------------------------------------------------------------------------------
def test_an_exposed_server_refuses_torchscript_with_the_sentence_and_still_takes_state_dicts(resnet18_weights):
    for address in ("127.0.0.1", "127.0.1.1", "::1", "localhost", "[::1]"):
        assert is_loopback(address) and torchscript_allowed(address, {}), address
    for address in ("0.0.0.0", "", None, "192.0.2.7", "::", "example.org"):
        assert not torchscript_allowed(address, {}), address
        assert torchscript_allowed(address, {"CNNVIS_ALLOW_TORCHSCRIPT": "1"}), address
    assert not torchscript_allowed("127.0.0.1", {"CNNVIS_ALLOW_TORCHSCRIPT": "0"})  # behind a reverse proxy
    with pytest.raises(ModelFileError) as info:
        load_model_file(torchscript(SmallNet()), "mine.pt", allow_torchscript=torchscript_allowed("0.0.0.0", {}))
    assert str(info.value) == TORCHSCRIPT_OFF
    bundle = load_model_file(torch_saved(resnet18_weights), "w.pth", architecture="resnet18", allow_torchscript=False)
    assert len(bundle.class_names) == 1000
