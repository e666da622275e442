"""Hardening, engine side: odd and hostile images through decode → explain, hostile and wrong model files, labels
with markup, 16 threads on one shared explainer, and a 500-explain soak (memory and hooks). The browser side of
the same cases is in test_hardening_browser.py; the figures go to test-artifacts/hardening/ and docs/RELIABILITY.md.
"""

from __future__ import annotations

import gc
import json
import pickle
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CLASSES, assert_untouched, make_tiny_bundle, synthetic_image
from hardening_cases import (
    IMAGE_CASES,
    XSS_LABELS,
    FixedInput,
    ImageCase,
    MakesAFile,
    ReturnsDict,
    ReturnsNaN,
    ReturnsTuple,
    SmallNet,
    encode,
    malicious_files,
    torch_saved,
    torchscript,
    xss_labels,
)
from PIL import Image
from torch import nn
from torch.nn.modules import module as torch_module

from cnnvis_engine import ARTICLE_METHODS, Explainer, ImageError, ModelBundle, ModelFileError, hooks
from cnnvis_engine.hooks import count_hooks, model_state
from cnnvis_engine.images import decode_image
from cnnvis_engine.models import load_model, load_model_file

FIGURES = Path(__file__).resolve().parent.parent / "test-artifacts" / "hardening"


def record(name: str, **figures: object) -> None:
    """Keep a test's measured figures for docs/RELIABILITY.md."""
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=1, default=str))


def sentence(message: str, *, starts_with_a_name: bool = False) -> str:
    assert message.endswith((".", "?")) and (starts_with_a_name or message[:1].isupper()), message
    for leak in ("Traceback", "PIL.", "Errno", "cannot identify"):
        assert leak not in message, message
    return message


def assert_displayable(explanation) -> None:
    """Every applicable map is finite and in [0, 1]; every raw value finite."""
    for method, result in explanation.items():
        if not result.applicable:
            continue
        for name in ("map", "raw", "rgb"):
            values = getattr(result, name)
            if values is not None:
                assert np.isfinite(values).all(), f"{method}.{name} has NaN/inf"
        assert 0.0 <= result.map.min() and result.map.max() <= 1.0, method


# ----- images: decode → explain ------------------------------------------------------------------------------
GOOD = decode_image(synthetic_image(1, (40, 30)))


@pytest.fixture(scope="module")
def shared_explainer() -> Explainer:
    """One explainer for every image case, as one dashboard session would have."""
    return Explainer(make_tiny_bundle(), cache_size=2)


@pytest.mark.parametrize("case", IMAGE_CASES, ids=[c.key for c in IMAGE_CASES])
def test_an_odd_image_gives_a_result_or_a_sentence_and_the_session_goes_on(case: ImageCase, shared_explainer):
    data = case.make()
    module = shared_explainer.bundle.module
    before = model_state(module)
    start = time.perf_counter()
    if case.refused:
        with pytest.raises(ImageError) as info:
            shared_explainer.explain(data, methods=ARTICLE_METHODS)
        assert case.refused in sentence(str(info.value))
        outcome = str(info.value)
    else:
        explanation = shared_explainer.explain(data, methods=ARTICLE_METHODS)
        assert case.note in " ".join(explanation.notes), explanation.notes
        assert explanation.image.shape == (*shared_explainer.bundle.input_size, 3)
        assert_displayable(explanation)
        outcome = "used" + (f" ({' '.join(explanation.notes)})" if explanation.notes else "")
    elapsed = time.perf_counter() - start
    assert elapsed < 5, f"{case.key} took {elapsed:.1f} s"
    assert_untouched(module, before)
    after = shared_explainer.explain(GOOD, methods=("gradcam", "saliency"))  # the session goes on
    assert after["gradcam"].applicable and np.isfinite(after["saliency"].map).all()
    record(f"image-{case.key}", what=case.what, file=case.filename, outcome=outcome, seconds=round(elapsed, 3))


def test_the_image_cases_cover_the_issue():
    keys = {case.key for case in IMAGE_CASES}
    assert len(keys) == len(IMAGE_CASES) >= 20
    for needed in (
        "zero_byte",
        "truncated_png",
        "text_named_png",
        "png_named_jpg",
        "bomb_50k",
        "one_pixel",
        "wide_10000x10",
        "gray16",
        "cmyk",
        "rgba",
        "palette",
        "animated_gif",
        "exif_rotated",
        "grayscale",
        "constant",
        "svg",
        "heic",
    ):
        assert needed in keys


def test_exif_rotation_reaches_the_model_upright(shared_explainer):
    case = next(c for c in IMAGE_CASES if c.key == "exif_rotated")
    decoded = decode_image(case.make())
    pixels = np.asarray(decoded.image)
    assert decoded.image.size == (32, 64)  # portrait now
    assert pixels[4, 16, 0] > 200 and pixels[-4, 16, 2] > 200  # red on top, blue at the bottom


def test_a_bomb_is_refused_from_its_header_quickly():
    for key in ("bomb_50k", "bomb_48mp", "ztxt_bomb"):
        data = next(c for c in IMAGE_CASES if c.key == key).make()
        start = time.perf_counter()
        with pytest.raises(ImageError):
            decode_image(data)
        assert time.perf_counter() - start < 2.0, key


def _flat_module() -> nn.Sequential:
    """No padding: on a constant image every feature map is spatially constant, so CAM and Grad-CAM are flat."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 4, 3),
                relu=nn.ReLU(),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(4, 3),
            )
        ).eval()


@pytest.mark.parametrize("grey", [0, 128, 255])
def test_a_constant_image_gives_flat_maps_as_zeros_never_nan(grey: int):
    bundle = ModelBundle("flat", _flat_module(), TINY_CLASSES, input_size=(8, 8), weights_source="random")
    image = encode(Image.new("RGB", (32, 32), (grey,) * 3), "PNG")
    explanation = Explainer(bundle).explain(image, methods=ARTICLE_METHODS)
    assert_displayable(explanation)
    for method in ("cam", "feature_maps"):
        result = explanation[method]
        assert result.applicable and not result.map.any(), f"{method} should be all zeros (flat), not stretched noise"
    gradcam = explanation["gradcam"]
    assert gradcam.meta["flat"] is True and np.ptp(gradcam.raw) == 0
    assert count_hooks(bundle.module) == 0


@pytest.mark.parametrize("grey", [0, 128])
def test_a_flat_grad_cam_is_zeros_not_stretched_rounding_noise(grey: int):
    bundle = ModelBundle("flat", _flat_module(), TINY_CLASSES, input_size=(8, 8), weights_source="random")
    gradcam = Explainer(bundle).explain(Image.new("RGB", (32, 32), (grey,) * 3), methods=["gradcam"])["gradcam"]
    assert gradcam.meta["flat"] is True and np.ptp(gradcam.raw) == 0 and gradcam.raw.max() > 0
    assert not gradcam.map.any(), f"a flat Grad-CAM is drawn {100 * gradcam.map.mean():.0f}% at full heat"


def test_the_default_model_on_a_grey_image_gives_finite_maps_and_a_flat_grad_cam(zoo):
    bundle = zoo("efficientnet_lite0")
    case = next(c for c in IMAGE_CASES if c.key == "constant")
    explanation = Explainer(bundle).explain(case.make(), methods=ARTICLE_METHODS)
    assert_displayable(explanation)
    gradcam = explanation["gradcam"]
    assert gradcam.meta["flat"] is True and not gradcam.map.any()  # ReLU(Σ w·A) ≤ 0 everywhere: zeros, not NaN
    assert not explanation["guided_gradcam"].map.any()
    spread = {
        m: float(np.ptp(explanation[m].raw) / max(np.abs(explanation[m].raw).max(), 1e-12)) for m in ("cam", "saliency")
    }
    record(
        "constant-default-model",
        gradcam_flat=True,
        relative_spread=spread,
        cam_mean_after_normalising=float(explanation["cam"].map.mean()),
    )


# ----- model files -------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_model_file_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(MakesAFile(proof))).close()
    assert proof.exists()  # the payload is live: plain unpickling runs it
    marker = tmp_path / "marker"
    messages = {}
    for name, data in malicious_files(marker).items():
        for architecture in (None, "resnet18"):
            with pytest.raises(ModelFileError) as info:
                load_model_file(data, "evil.pt", architecture=architecture)
            assert not marker.exists(), f"{name}: the payload ran"
            messages[name] = sentence(str(info.value), starts_with_a_name=True)
    for name in ("pickle protocol 4", "torch.save (zip)", "torch.save (legacy)", "state_dict with an object inside"):
        assert "pickled Python object, which could run arbitrary code" in messages[name], name
    assert "not a PyTorch model file" in messages["pickle protocol 0"]
    assert "could not be opened" in messages["fake TorchScript archive"]
    assert not marker.exists()
    record("model-malicious", messages=messages, marker_created=marker.exists())


@pytest.fixture(scope="module")
def resnet18_weights() -> dict[str, torch.Tensor]:
    return load_model("resnet18", "random").module.state_dict()


@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("other_input_shape", "The model failed on a 224×224 RGB image: shape '[1, 3072]' is invalid"),
        ("returns_dict", "The model returned a dict of 1 items; a classifier must return one tensor"),
        ("returns_tuple", "The model returned a tuple of 2 items"),
        ("returns_nan", "The model's output on a black test image contains NaN or infinite values"),
        ("missing_and_extra_keys", "2 the model needs are missing (fc.weight, fc.bias) and 1 in the file are not"),
        ("wrong_shape", "fc.weight is (10, 512) in the file but (1000, 512) in resnet18"),
        ("text_file", "notes.pt is not a PyTorch model file."),
        ("jpeg_named_pt", "photo.pt is not a PyTorch model file."),
        ("empty_file", "empty.pt is not a PyTorch model file."),
        ("list_of_tensors", "holds a list, not a model"),
        ("over_the_limit", "big.pt is 3 MB; the limit is 2 MB."),
    ],
)
def test_a_wrong_model_file_is_refused_with_a_reason(key: str, words: str, resnet18_weights):
    weights = dict(resnet18_weights)
    files = {
        "other_input_shape": lambda: (torchscript(FixedInput()), "fixed.pt", None),
        "returns_dict": lambda: (torchscript(ReturnsDict()), "dict.pt", None),
        "returns_tuple": lambda: (torchscript(ReturnsTuple()), "tuple.pt", None),
        "returns_nan": lambda: (torchscript(ReturnsNaN()), "nan.pt", None),
        "missing_and_extra_keys": lambda: (
            torch_saved(
                {**{k: v for k, v in weights.items() if not k.startswith("fc.")}, "head.weight": torch.zeros(1)}
            ),
            "w.pth",
            "resnet18",
        ),
        "wrong_shape": lambda: (torch_saved({**weights, "fc.weight": torch.zeros(10, 512)}), "w.pth", "resnet18"),
        "text_file": lambda: (b"these are not weights\n", "notes.pt", "resnet18"),
        "jpeg_named_pt": lambda: (encode(synthetic_image(0), "JPEG"), "photo.pt", "resnet18"),
        "empty_file": lambda: (b"", "empty.pt", "resnet18"),
        "list_of_tensors": lambda: (torch_saved([torch.zeros(2)]), "list.pt", "resnet18"),
        "over_the_limit": lambda: (b"\0" * (3 * 2**20), "big.pt", None),
    }
    data, filename, architecture = files[key]()
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        load_model_file(
            data, filename, architecture=architecture, max_bytes=2 * 2**20 if key == "over_the_limit" else 2**30
        )
    message = sentence(str(info.value), starts_with_a_name=True)
    assert words in message
    record(f"model-{key}", message=message, seconds=round(time.perf_counter() - start, 3))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_valid_torchscript_upload_can_be_explained():
    bundle = load_model_file(torchscript(SmallNet()), "small.pt")
    explanation = Explainer(bundle).explain(GOOD, methods=("saliency", "gradcam", "guided_backprop"))
    assert explanation["saliency"].applicable and np.isfinite(explanation["saliency"].map).all()
    assert explanation["gradcam"].reason  # its layers are hidden inside TorchScript: a reason, not a crash
    # its ReLUs run inside compiled code: guided backprop would silently be plain saliency, so it says why not
    assert "TorchScript" in explanation["guided_backprop"].reason
    assert count_hooks(bundle.module) == 0


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_torchscript_layer_inside_a_python_model_is_recorded_and_listed_as_unguided():
    module = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        torch.jit.script(nn.Conv2d(4, 4, 3)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()
    bundle = ModelBundle("mixed", module, TINY_CLASSES, input_size=(16, 16), weights_source="random")
    explanation = Explainer(bundle).explain(GOOD, layer="2", methods=["gradcam", "guided_backprop"])
    assert explanation["gradcam"].applicable and explanation["gradcam"].layer == "2"
    assert "2 (TorchScript: every activation inside)" in explanation["guided_backprop"].meta["unguided"]
    assert count_hooks(module) == 0


def test_no_hook_is_left_behind_when_a_registration_fails(monkeypatch: pytest.MonkeyPatch):
    global_hooks = (torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks)
    before = [dict(registry) for registry in global_hooks]

    def refuse(hook: object) -> None:
        raise RuntimeError("registration refused")

    monkeypatch.setattr(hooks, "register_module_forward_pre_hook", refuse)  # after the forward wrappers are in
    net = SmallNet()
    with pytest.raises(RuntimeError, match="refused"), hooks.capture(net, count_functional=True):
        pass
    assert [dict(registry) for registry in global_hooks] == before
    assert hooks.count_hooks(net) == 0 and not any("forward" in m.__dict__ for m in net.modules())


def test_labels_with_markup_stay_plain_strings_end_to_end():
    weights = load_model("regnet_y_400mf", "random").module.state_dict()
    labels = xss_labels(1000)
    bundle = load_model_file(torch_saved(weights), "mine.pth", architecture="regnet_y_400mf", labels=labels)
    assert bundle.class_names[: len(XSS_LABELS)] == tuple(f"{name} #{i}" for i, name in enumerate(XSS_LABELS))
    explanation = Explainer(bundle).explain(GOOD, methods=("gradcam",), target=1)
    assert explanation.target.label.startswith("<script>window.__pwned=2</script> #1")
    assert all(p.name == bundle.class_names[p.index] for p in explanation.predictions)


# ----- many users --------------------------------------------------------------------------------------------
THREADS, PER_THREAD = 16, 20
THREAD_METHODS = ("gradcam", "cam", "saliency", "guided_backprop", "feature_maps")
THREAD_TARGETS = (None, 1, 281, 999, 500, 42)
THREAD_LAYERS = (None, "layer3", "layer2", "layer4.0")


def _arrays(explanation) -> dict[str, np.ndarray]:
    return {
        f"{m}.{f}": getattr(r, f)
        for m, r in explanation.items()
        for f in ("map", "raw", "rgb")
        if getattr(r, f) is not None
    }


@pytest.mark.long
def test_16_threads_x_20_explains_on_one_shared_model_equal_the_serial_results(zoo):
    resnet18 = zoo("resnet18")
    bundle = ModelBundle(name="resnet18", module=resnet18.module, class_names=resnet18.class_names, input_size=(48, 48))
    images = [decode_image(synthetic_image(seed, (36 + 7 * seed, 52))) for seed in range(10)]
    jobs = [
        [
            (((t * 3 + j) % 10), THREAD_TARGETS[(5 * t + j) % 6], THREAD_LAYERS[(t + 3 * j) % 4])
            for j in range(PER_THREAD)
        ]
        for t in range(THREADS)
    ]
    before = model_state(bundle.module)

    serial_explainer = Explainer(bundle, cache_size=10)
    unique = sorted({job for row in jobs for job in row}, key=str)
    start = time.perf_counter()
    serial = {
        job: serial_explainer.explain(images[job[0]], target=job[1], layer=job[2], methods=THREAD_METHODS)
        for job in unique
    }
    serial_seconds = time.perf_counter() - start

    shared = Explainer(bundle, cache_size=2)  # 10 images, 2 kept: passes are evicted and recorded again concurrently
    barrier = threading.Barrier(THREADS)

    def work(row):
        barrier.wait(timeout=60)
        return [
            shared.explain(images[image], target=target, layer=layer, methods=THREAD_METHODS)
            for image, target, layer in row
        ]

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        threaded = list(pool.map(work, jobs, timeout=600))
    threaded_seconds = time.perf_counter() - start

    assert_untouched(bundle.module, before)
    exact = compared = 0
    for row, results in zip(jobs, threaded):
        for job, got in zip(row, results):
            expected = serial[job]
            assert got.target == expected.target and got.layer == expected.layer
            assert [p.index for p in got.predictions] == [p.index for p in expected.predictions]
            want, have = _arrays(expected), _arrays(got)
            assert want.keys() == have.keys()
            for key in want:
                compared += 1
                exact += np.array_equal(want[key], have[key])
                atol = 1e-6 * max(1.0, float(np.abs(want[key]).max()))
                np.testing.assert_allclose(have[key], want[key], rtol=1e-6, atol=atol, err_msg=f"{job} {key}")
    record(
        "engine-threads",
        threads=THREADS,
        explains_per_thread=PER_THREAD,
        unique_jobs=len(unique),
        arrays_compared=compared,
        arrays_bit_identical=exact,
        serial_seconds=round(serial_seconds, 1),
        threaded_seconds=round(threaded_seconds, 1),
        hooks_after=count_hooks(bundle.module),
    )


# ----- long sessions -----------------------------------------------------------------------------------------
def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


SOAK_EXPLAINS, SOAK_WARMUP = 500, 60
SOAK_METHODS = ("gradcam", "saliency", "cam", "feature_maps")  # one forward pass, one shared backward pass
SOAK_GUIDED_EVERY = 5  # and a guided backward pass (tensor hooks on every ReLU) on every 5th explain
SOAK_LAYERS = (None, "layer3", "layer2", "layer4.1.conv2", "layer1")


@pytest.mark.long
def test_500_explains_keep_memory_flat_and_leave_no_hook(zoo):
    resnet18 = zoo("resnet18")  # random weights; at 112×112 (same modules, a quarter of the work) so that 500
    bundle = ModelBundle(  # explains fit in CI's minutes even on a shared 2-core machine
        name="resnet18", module=resnet18.module, class_names=resnet18.class_names, input_size=(112, 112)
    )
    explainer = Explainer(bundle, cache_size=2)
    images = [decode_image(synthetic_image(seed, (64 + 13 * seed, 48 + 11 * seed))) for seed in range(12)]
    before = model_state(bundle.module)
    samples, warm, start = [], 0, time.perf_counter()
    deadline = start + 480
    for i in range(SOAK_EXPLAINS):
        methods = SOAK_METHODS + (("guided_backprop",) if i % SOAK_GUIDED_EVERY == 0 else ())
        explanation = explainer.explain(
            images[(i * 5) % 12], target=(i * 37) % 1000, layer=SOAK_LAYERS[i % 5], methods=methods
        )
        assert np.isfinite(explanation["gradcam"].map).all()
        assert count_hooks(bundle.module) == 0, f"hooks left after explain {i}"
        if i + 1 == SOAK_WARMUP:
            gc.collect()
            warm = rss_kib()
        if (i + 1) % 50 == 0:
            gc.collect()
            samples.append((i + 1, rss_kib()))
        assert time.perf_counter() < deadline, f"only {i + 1} explains in 8 minutes; RSS {samples}"
    seconds = time.perf_counter() - start
    del explanation
    gc.collect()
    final = rss_kib()
    assert_untouched(bundle.module, before)
    growth = (final - warm) / warm
    record(
        "engine-soak",
        explains=SOAK_EXPLAINS,
        warmup=SOAK_WARMUP,
        input_size=bundle.input_size,
        rss_after_warmup_mib=round(warm / 1024, 1),
        rss_final_mib=round(final / 1024, 1),
        growth_percent=round(100 * growth, 2),
        rss_every_50=[(n, round(kib / 1024, 1)) for n, kib in samples],
        seconds=round(seconds, 1),
        ms_per_explain=round(1000 * seconds / SOAK_EXPLAINS),
    )
    assert growth <= 0.05, f"RSS grew {100 * growth:.1f}% after warm-up: {samples}"
