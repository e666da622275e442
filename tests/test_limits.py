"""Bounded work per call: each request that once asked the engine for hours or gigabytes (issue 12) is refused
fast with a sentence that names the limit and what was asked, and the bounds still serve real use (the
dashboard's IG 20 / SmoothGrad 15, a batch larger than one chunk gives the unchunked results).

Each case records its time and the process's peak RSS growth while it ran to test-artifacts/limits/*.json
(see docs/RELIABILITY.md, "Limits").
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, TINY_SIZE, make_tiny_bundle, make_tiny_module, synthetic_image
from PIL import Image

from cnnvis_engine import explainer as explainer_module
from cnnvis_engine import images
from cnnvis_engine.errors import ImageError, MethodError, TargetError
from cnnvis_engine.explainer import BATCH_CHUNK, MAX_BATCH, Explainer
from cnnvis_engine.images import MAX_FILE_BYTES, MAX_FRAMES_COUNTED, decode_image
from cnnvis_engine.methods.attributions import MAX_SAMPLES, MAX_STEPS
from cnnvis_engine.methods.perturbation import MAX_POSITIONS

FIGURES = ROOT / "test-artifacts" / "limits"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@contextmanager
def measured(name: str, **facts: object):
    """Time the block and sample the process's RSS every 2 ms; write both (and `facts`) to FIGURES/name.json."""
    start_rss, peak, done = rss(), [rss()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    try:
        yield facts
    finally:
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
        facts.update(seconds=round(seconds, 4), peak_rss_growth_mb=round((max(peak[0], rss()) - start_rss) / 2**20, 1))
        FIGURES.mkdir(parents=True, exist_ok=True)
        (FIGURES / f"{name}.json").write_text(json.dumps(facts, indent=1, default=str))


def sentence(error: BaseException, *words: str) -> str:
    message = str(error)
    assert message[:1].isupper() and message.endswith("."), message
    assert "Traceback" not in message and "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


@pytest.fixture
def explainer() -> Explainer:
    torch.set_num_threads(1)
    return Explainer(make_tiny_bundle())


@pytest.fixture
def image():
    return decode_image(synthetic_image(3, (16, 16)))


# ----- settings that ask for hours -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "setting", "value", "limit"),
    [
        ("integrated_gradients", "steps", 20_000, MAX_STEPS),
        ("integrated_gradients", "steps", 10**7, MAX_STEPS),
        ("smoothgrad", "samples", 12_000, MAX_SAMPLES),
        ("smoothgrad_cam", "samples", 12_000, MAX_SAMPLES),
        ("smoothgrad", "internal_batch_size", 10**6, 1024),
    ],
)
def test_a_setting_over_its_bound_is_refused_at_once(explainer, image, method, setting, value, limit):
    with measured(f"{method}-{setting}-{value}", asked=value, limit=limit) as facts:
        with pytest.raises(MethodError) as caught:
            explainer.explain(image, methods=[method], options={method: {setting: value}})
        facts["message"] = sentence(caught.value, setting, f"{limit:,}", f"{value:,}")
    assert facts["seconds"] < 1.0


def test_the_bounds_still_serve_real_use(explainer, image):
    """The dashboard asks IG for 20 steps and SmoothGrad for 15 samples; the bounds themselves are accepted."""
    options = {"integrated_gradients": {"steps": MAX_STEPS}, "smoothgrad": {"samples": MAX_SAMPLES}}
    with measured("bounds-accepted", options=options):
        result = explainer.explain(image, methods=["integrated_gradients", "smoothgrad"], options=options)
    assert result["integrated_gradients"].meta["steps"] == MAX_STEPS and result["smoothgrad"].applicable
    for steps, samples in ((20, 15), (50, 25)):
        result = explainer.explain(
            image,
            methods=["integrated_gradients", "smoothgrad"],
            options={"integrated_gradients": {"steps": steps}, "smoothgrad": {"samples": samples}},
        )
        assert result["integrated_gradients"].applicable and result["smoothgrad"].meta["samples"] == samples


def test_occlusion_counts_its_windows_before_running_any():
    bundle = dataclasses.replace(make_tiny_bundle(), input_size=(224, 224))
    explainer = Explainer(bundle)
    image = decode_image(synthetic_image(1, (224, 224)))
    with measured("occlusion-window-1", window=1, stride=1, windows=224 * 224, limit=MAX_POSITIONS) as facts:
        with pytest.raises(MethodError) as caught:
            explainer.explain(image, methods=["occlusion"], options={"occlusion": {"window": 1, "stride": 1}})
        facts["message"] = sentence(caught.value, "50,176", f"{MAX_POSITIONS:,}")
    assert facts["seconds"] < 2.0
    default = explainer.explain(image, methods=["occlusion"])["occlusion"]  # 32 px, stride 16: 13 × 13 windows
    assert default.applicable and default.meta["window"] == 32


# ----- call arguments ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("top_k", [-1, 0, 1.5, True, "5", None])
def test_top_k_must_be_a_whole_number_of_at_least_one(explainer, image, top_k):
    for call in (
        lambda: explainer.predict(image, top_k=top_k),
        lambda: explainer.explain(image, top_k=top_k),
        lambda: explainer.explain_batch([image], top_k=top_k),
    ):
        with pytest.raises(TargetError) as caught:
            call()
        sentence(caught.value, "top_k", repr(top_k))


def test_a_top_k_above_the_number_of_classes_lists_them_all(explainer, image):
    assert len(explainer.predict(image, top_k=10**12)) == 3
    assert len(explainer.predict(image, top_k=np.int64(2))) == 2


@pytest.mark.parametrize("methods", ["gradcam", b"gradcam", ["gradcam", 3], [["gradcam"]]])
def test_methods_must_be_a_collection_of_names(explainer, image, methods):
    for call in (
        lambda: explainer.explain(image, methods=methods),
        lambda: explainer.explain_batch([image], methods=methods),
    ):
        with pytest.raises(MethodError) as caught:
            call()
        sentence(caught.value)
    with pytest.raises(MethodError, match="letter by letter"):
        explainer.explain(image, methods="gradcam")


def test_methods_may_be_any_collection_or_generator(explainer, image):
    for methods in (["gradcam"], ("gradcam",), {"gradcam"}, (m for m in ["gradcam", "cam"])):
        assert explainer.explain(image, methods=methods)["gradcam"].applicable
    with pytest.raises(MethodError, match="More than 1000"):
        explainer.explain(image, methods=("gradcam" for _ in iter(int, 1)))  # endless


# ----- batches -----------------------------------------------------------------------------------------------------
def test_a_batch_of_ten_thousand_images_is_refused_before_decoding(explainer, image):
    with measured("batch-10000", images=10_000, limit=MAX_BATCH) as facts:
        with pytest.raises(ImageError) as caught:
            explainer.explain_batch([b"not decoded"] * 10_000)
        facts["message"] = sentence(caught.value, "10,000", f"{MAX_BATCH:,}")
    assert facts["seconds"] < 0.5


def test_a_batch_runs_in_chunks_with_the_unchunked_results(monkeypatch, image):
    torch.set_num_threads(1)
    images = [decode_image(synthetic_image(seed, (12, 10))) for seed in range(2 * BATCH_CHUNK + 5)]
    targets = [seed % 3 for seed in range(len(images))]
    methods = ["gradcam", "saliency", "cam", "feature_maps"]
    chunks = []
    original = Explainer._explain_chunk

    def spy(self, batch, *args, **kwargs):
        chunks.append(len(batch))
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(Explainer, "_explain_chunk", spy)
    with measured("batch-chunked", images=len(images), chunk=BATCH_CHUNK):
        chunked = Explainer(make_tiny_bundle()).explain_batch(images, targets=targets, methods=methods, layer="conv")
    assert chunks == [BATCH_CHUNK, BATCH_CHUNK, 5]
    monkeypatch.setattr(explainer_module, "BATCH_CHUNK", 10_000)
    whole = Explainer(make_tiny_bundle()).explain_batch(images, targets=targets, methods=methods, layer="conv")
    assert chunks[-1] == len(images)
    assert len(chunked) == len(whole) == len(images)
    for a, b in zip(chunked, whole):
        assert a.predictions == b.predictions and a.target == b.target and a.layer == b.layer
        np.testing.assert_array_equal(a.image, b.image)
        for method in methods:
            np.testing.assert_allclose(a[method].raw, b[method].raw, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(a[method].map, b[method].map, atol=1e-6)
    ready = torch.randn(BATCH_CHUNK + 3, 3, *TINY_SIZE)
    tensor_chunked = Explainer(make_tiny_bundle()).explain_batch(ready, methods=["gradcam"])
    monkeypatch.setattr(explainer_module, "BATCH_CHUNK", 4)
    tensor_small = Explainer(make_tiny_bundle()).explain_batch(ready, methods=["gradcam"])
    for a, b in zip(tensor_chunked, tensor_small):
        np.testing.assert_allclose(a["gradcam"].raw, b["gradcam"].raw, rtol=1e-6, atol=1e-7)


# ----- non-finite inputs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_input_is_refused_before_anything_is_traced_or_cached(bad):
    """Before: one NaN tensor was traced, its trace (judged from NaN outputs: 'the output does not come straight
    from a Linear') cached, and CAM said "not applicable" for every later image of that shape."""
    explainer = Explainer(make_tiny_bundle())
    x = torch.randn(3, 3, *TINY_SIZE)
    x[1, 0, 2, 2] = bad
    with pytest.raises(ImageError) as caught:
        explainer.explain_batch(x, methods=["cam", "gradcam"])
    sentence(caught.value, "image 1", "NaN or infinite")
    assert not explainer._recorder._traces and not explainer._passes
    good = explainer.explain(decode_image(synthetic_image(2, (8, 8))), methods=["cam", "gradcam"])
    assert good["cam"].applicable and good["gradcam"].applicable, good["cam"].reason
    again = explainer.explain_batch(torch.randn(2, 3, *TINY_SIZE), methods=["cam"])
    assert all(e["cam"].applicable for e in again)


def test_a_model_with_non_finite_output_does_not_poison_the_trace_cache():
    class NaNOnDemand(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = make_tiny_module()
            self.poison = False

        def forward(self, x):
            out = self.inner(x)
            return out * float("nan") if self.poison else out

    module = NaNOnDemand().eval()
    explainer = Explainer(make_tiny_bundle(module))
    module.poison = True
    explainer.explain(decode_image(synthetic_image(4, (8, 8))), methods=["cam"])
    assert not explainer._recorder._traces
    module.poison = False
    assert explainer.explain(decode_image(synthetic_image(5, (8, 8))), methods=["cam"])["cam"].applicable


# ----- image paths and files -----------------------------------------------------------------------------------------
def test_dev_zero_a_fifo_and_a_folder_are_refused_without_reading(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it for reading would block until a writer came
    for path, words in (
        ("/dev/zero", ("not a regular file",)),
        (fifo, ("not a regular file",)),
        (tmp_path, ("folder",)),
        (tmp_path / "missing.png", ("no file",)),
    ):
        with measured(f"path-{Path(path).name or 'root'}", path=str(path)) as facts:
            with pytest.raises(ImageError) as caught:
                decode_image(path)
            facts["message"] = sentence(caught.value, *words)
        assert facts["seconds"] < 0.5 and facts["peak_rss_growth_mb"] < 20


def test_a_file_or_upload_over_the_size_limit_is_refused_before_reading(tmp_path):
    big = tmp_path / "huge.png"
    with big.open("wb") as handle:  # sparse: 120 MB on paper, nothing on disk
        handle.truncate(120 * 2**20)
    with measured("path-120mb", size_mb=120, limit_mb=MAX_FILE_BYTES // 2**20) as facts:
        with pytest.raises(ImageError) as caught:
            decode_image(big)
        facts["message"] = sentence(caught.value, "120.0 MB", "50 MB")
    assert facts["peak_rss_growth_mb"] < 20
    with pytest.raises(ImageError, match="the limit is 50 MB"):
        decode_image(bytes(MAX_FILE_BYTES + 1))


def test_the_report_command_lists_a_fifo_among_the_failed_pictures(tmp_path, capsys):
    from cnnvis.cli import main

    images = tmp_path / "images"
    images.mkdir()
    os.mkfifo(images / "pipe.png")
    code = main(
        [
            "report",
            "--model",
            "efficientnet_lite0",
            "--images",
            str(images),
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ]
    )
    assert code == 1  # every picture failed; nothing hung
    index = (tmp_path / "o" / "index.csv").read_text()
    assert "pipe.png" in index and "not a regular file" in index


# ----- many frames -------------------------------------------------------------------------------------------------
def many_page_tiff(pages: int, side: int = 8) -> bytes:
    """A little-endian baseline TIFF of `pages` 8-bit grayscale side×side pages sharing one strip: 102 bytes a page,
    so 80,000 pages are 8.2 MB (PIL's own writer takes minutes for that many)."""
    strip = bytes(range(side * side))
    first_ifd = 8 + len(strip)
    tags = [
        (256, 3, side),
        (257, 3, side),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8),
        (278, 3, side),
        (279, 4, len(strip)),
    ]
    size = 2 + 12 * len(tags) + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd) + strip)
    for page in range(pages):
        out += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            out += (
                struct.pack("<HHII", tag, kind, 1, value)
                if kind == 4
                else struct.pack("<HHIHH", tag, kind, 1, value, 0)
            )
        out += struct.pack("<I", first_ifd + (page + 1) * size if page + 1 < pages else 0)
    return bytes(out)


def test_a_tiff_of_80000_pages_answers_in_well_under_a_second(monkeypatch):
    """PIL's `n_frames` searches its list of page offsets once per page: 80,000 tiny pages took 26 s (88 s on the
    loaded CI box), 20,000 pages 9.6 s, 5,000 0.5 s. Counting stops at 1,000 pages or after 0.25 s."""
    data = many_page_tiff(80_000)
    with measured("tiff-80000-pages", pages=80_000, file_mb=round(len(data) / 1e6, 1)) as facts:
        decoded = decode_image(data)
    facts["note"] = decoded.notes[0]
    counted = re.fullmatch(r"Multi-page TIFF: the first of more than ([\d,]+) pages is shown\.", decoded.notes[0])
    assert counted and int(counted.group(1).replace(",", "")) <= MAX_FRAMES_COUNTED  # fewer when the time ran out
    assert decoded.image.size == (8, 8) and np.asarray(decoded.image)[0, :4, 0].tolist() == [0, 1, 2, 3]
    assert facts["seconds"] < 1.0
    monkeypatch.setattr(images, "FRAME_COUNT_SECONDS", 60.0)  # exact counts, however loaded the machine
    assert (
        decode_image(data).notes[0] == f"Multi-page TIFF: the first of more than {MAX_FRAMES_COUNTED:,} pages is shown."
    )
    assert decode_image(many_page_tiff(3)).notes[0] == "Multi-page TIFF: the first of 3 pages is shown."
    assert (
        decode_image(many_page_tiff(MAX_FRAMES_COUNTED)).notes[0]
        == "Multi-page TIFF: the first of 1,000 pages is shown."
    )


def test_a_gif_of_many_frames_is_counted_without_decoding_them():
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)) for _ in range(1200)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with measured("gif-1200-frames", frames=1200) as facts:
        decoded = decode_image(buffer.getvalue())
    assert decoded.notes[0] == "Animated GIF: the first of more than 1,000 frames is shown."
    assert facts["seconds"] < 1.0
    for count in (2, 999):
        buffer = io.BytesIO()
        frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:count])
        assert decode_image(buffer.getvalue()).notes[0] == f"Animated GIF: the first of {count:,} frames is shown."
