"""Shared fixtures for the engine tests: a tiny seeded model small enough to check by hand, the zoo models
(loaded once per session, random weights for torchvision, the embedded weights for the offline default),
the bundled sample photos and a few synthetic images, and the hook/state checks every method must pass."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnvis_engine.hooks import count_hooks, model_state
from cnnvis_engine.images import DecodedImage, decode_image
from cnnvis_engine.models import ModelBundle, load_model
from cnnvis_engine.samples import list_samples, sample_path

SAMPLE_KEYS = ("cat", "coffee", "astronaut", "rocket")
TINY_CLASSES = ("zero", "one", "two")
TINY_SIZE = (4, 4)  # the model sees 4×4; images must be at least 8 px a side, prepare() resizes them


def make_tiny_module(seed: int = 0) -> nn.Sequential:
    """Conv2d(3, 2, 3, padding=1) → ReLU(inplace=True) → avg pool → Flatten → Linear(2, 3), seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(3, 2, 3, padding=1),
                relu=nn.ReLU(inplace=True),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(2, 3),
            )
        )
    return module.eval()


def make_tiny_bundle(module: nn.Module | None = None, name: str = "tiny") -> ModelBundle:
    return ModelBundle(
        name=name,
        module=make_tiny_module() if module is None else module,
        class_names=TINY_CLASSES,
        input_size=TINY_SIZE,
        weights_source="random",
    )


def synthetic_image(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A seeded RGB picture (width, height): smooth colour ramps plus noise, so every method has something to see."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            255 * xx / max(width - 1, 1),
            255 * yy / max(height - 1, 1),
            127 + 127 * np.sin((xx + yy) / (3 + seed)),
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0, 40, base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def tiny_bundle() -> ModelBundle:
    return make_tiny_bundle()


@pytest.fixture
def tiny_image() -> DecodedImage:
    return decode_image(synthetic_image(7, (8, 8)))


@pytest.fixture(scope="session")
def zoo() -> Callable[..., ModelBundle]:
    """`zoo(name)` loads a registered model once per session: torchvision ones with random (seeded) weights,
    efficientnet_lite0 with its default (embedded ImageNet) weights. Tests must leave the modules as they
    found them; peers get `copy.deepcopy(bundle.module)`."""
    cache: dict[tuple[str, str | None], ModelBundle] = {}

    def get(name: str, weights: str | None = None) -> ModelBundle:
        choice = weights if weights is not None else (None if name == "efficientnet_lite0" else "random")
        key = (name, choice)
        if key not in cache:
            cache[key] = load_model(name, choice)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def samples() -> dict[str, DecodedImage]:
    assert tuple(s.key for s in list_samples()) == SAMPLE_KEYS
    return {key: decode_image(sample_path(key)) for key in SAMPLE_KEYS}


@pytest.fixture(scope="session")
def cat(samples: dict[str, DecodedImage]) -> DecodedImage:
    return samples["cat"]


def assert_untouched(module: nn.Module, before: tuple) -> None:
    """No hook left anywhere, training flags / requires_grad / .grad as they were, and no parameter gradient."""
    assert count_hooks(module) == 0
    assert model_state(module) == before
    assert all(p.grad is None for p in module.parameters())


@contextmanager
def leaves_model_untouched(module: nn.Module) -> Iterator[None]:
    """Check `assert_untouched` after the block, also when the block raises (the error still propagates), and
    that the thread's gradient mode is as it was (a one-off pass switches it on halfway)."""
    before, grad_mode = model_state(module), torch.is_grad_enabled()
    try:
        yield
    finally:
        assert_untouched(module, before)
        assert torch.is_grad_enabled() == grad_mode


# ----- the real dashboard and Chromium, for browser tests -------------------------------------------------------
ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CNNVIS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def dashboard_server(
    log_path: Path, *extra_args: str, start_timeout: float = 90
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run dashboard.py` on a free port with the project's own config (so on 127.0.0.1), healthy
    before the block runs and stopped after it; stdout and stderr go to `log_path`. Yields (url, process)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "dashboard.py",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
                *extra_args,
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"streamlit did not start; see {log_path}")
                time.sleep(0.3)
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def chromium_browser() -> Iterator[object]:
    """Debian's Chromium through Playwright (skips the test when it is not installed)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a test module (`chromium_browser`); a module's own `server` fixture starts the
    dashboard it talks to."""
    with chromium_browser() as chromium:
        yield chromium


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for the test, restored afterwards. Optimisations and batched audits run thousands of
    small ops; on the shared 2-core machine, with other processes busy, each 2-thread op waits for its second
    thread to be scheduled: tests/test_featurevis.py took 215 s with 2 threads and 7 s with 1 under the same load
    (6 s on an idle machine with 2). Results are the same bit for bit with 1 or 2 threads (checked)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_caches() -> Iterator[None]:
    """Empty Streamlit caches before and after the test: they survive between AppTest instances in one process."""
    from cnnvis_ui import result_cache

    result_cache.clear_all()
    yield
    result_cache.clear_all()
