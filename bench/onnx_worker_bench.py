"""What running an uploaded ONNX model in its worker costs, against converting and explaining it in-process.

    python -m bench.onnx_worker_bench [--repeats 5] [--models small,resnet18]

For each model: the upload's load (`load_model_file`: the server's checks, the worker's start, the conversion and
the probe) and the worker's start alone; then one explanation with the article's seven methods on a fresh image
(no cached pass) through the worker (`Explainer(uploaded)`, a ContainedExplainer) and in-process (the same file
through `onnx_files.load_onnx`, as before), alternating, median of `repeats`; one thread on each side. Finally
the worker's resident memory (its peak, and its own anonymous memory without torch's shared library pages).
"small" is tests/onnx_cases.py's network at 40×48; "resnet18" torchvision's with random weights at 224×224.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time

import numpy as np
import torch
from PIL import Image

from cnnvis_engine import ARTICLE_METHODS, Explainer, decode_image
from cnnvis_engine.models import load_model_file, onnx_files
from cnnvis_engine.models.contained import Worker
from tests.onnx_cases import export, small_cnn


def model(name: str) -> tuple[bytes, tuple[int, int]]:
    if name == "small":
        return export(small_cnn(), (1, 3, 40, 48)), (40, 48)
    import torchvision

    torch.manual_seed(0)
    return export(torchvision.models.resnet18().eval(), (1, 3, 224, 224)), (224, 224)


def picture(seed: int) -> object:
    rng = np.random.default_rng(seed)
    return decode_image(Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)))


def explain_once(explainer: Explainer, seed: int) -> float:
    image = picture(seed)  # decoded before the clock starts, on both sides
    start = time.perf_counter()
    explainer.explain(image, methods=ARTICLE_METHODS)
    return time.perf_counter() - start


def bench(name: str, repeats: int) -> dict[str, float]:
    data, _ = model(name)
    start = time.perf_counter()
    uploaded = load_model_file(data, f"{name}.onnx")
    load_s = time.perf_counter() - start
    worker = Worker(data, mode="onnx", load={"filename": f"{name}.onnx", "channels_last": False})
    start = time.perf_counter()
    worker.request({"op": "forget"})  # start, lock in, convert
    start_s = time.perf_counter() - start
    worker.close()
    start = time.perf_counter()
    module, _ = onnx_files.load_onnx(data, f"{name}.onnx", max_bytes=2**29)
    convert_in_process_s = time.perf_counter() - start
    local = Explainer(dataclasses.replace(uploaded, module=module, lock=threading.RLock()))
    remote = Explainer(uploaded)
    explain_once(remote, 0), explain_once(local, 0)  # first passes: lazy set-up on each side
    times: dict[str, list[float]] = {"worker": [], "in_process": []}
    for i in range(repeats):
        order = [("worker", remote), ("in_process", local)]
        for side, explainer in order if i % 2 == 0 else order[::-1]:
            times[side].append(explain_once(explainer, 100 + i))
    worker_ms, local_ms = (1000 * statistics.median(times[side]) for side in ("worker", "in_process"))
    figures = {
        "load_model_file_s": load_s,
        "worker_start_and_convert_s": start_s,
        "convert_in_process_s": convert_in_process_s,
        "explain_worker_ms": worker_ms,
        "explain_in_process_ms": local_ms,
        "overhead_ms": worker_ms - local_ms,
        "worker_peak_mib": uploaded.module.worker.peak_mib,
        "worker_anon_mib": uploaded.module.worker.anon_mib,
    }
    uploaded.module.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", default="small,resnet18")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the worker runs
    for name in args.models.split(","):
        figures = bench(name, args.repeats)
        print(name, " ".join(f"{key}={value:.3g}" for key, value in figures.items()), flush=True)


if __name__ == "__main__":
    main()
