"""The reference index's throughput vs a bare batched forward + backward loop (issue 23's goal: >= 0.8x).

    python -m bench.concepts_index_bench [--model torchvision:resnet18] [--count 64] [--batch-size 32]
        [--layers layer4] [--threads 1] [--repeats 3] [--device cpu|cuda]

Both sides take the same decoded pictures in memory (decoding the files is left out of both), resize and normalise
them with `bundle.batch` and run `--batch-size` at a time:
  bare loop        a forward hook keeps the layers' outputs; per batch one forward with gradients on, then one
                   `torch.autograd.grad` of the predicted classes' logits (summed) to those outputs
  reference index  `reference_index(...)` into an empty cache folder: the whole call, so the weights' hash (for
                   the fingerprint), the one-picture trace, the receptive fields, the top-k merges and writing the
                   Parquet file are all inside the timing
Prints pictures/s of each (median of `--repeats` runs after one warm-up) and their ratio.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
import warnings

import numpy as np
import torch
from PIL import Image

from cnnvis_engine import load_model
from cnnvis_engine.concepts import reference_index
from cnnvis_engine.images import DecodedImage, decode_image
from cnnvis_engine.models.bundle import ModelBundle

warnings.filterwarnings("ignore")


def pictures(count: int, side: int) -> list[DecodedImage]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        yy, xx = np.mgrid[0:side, 0:side]
        base = np.stack([xx * 255 / side, yy * 255 / side, np.full_like(xx, 128)], -1)
        noisy = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
        out.append(decode_image(Image.fromarray(noisy)))
    return out


def bare_loop(bundle: ModelBundle, images: list[DecodedImage], layers: list[str], batch_size: int) -> float:
    """Seconds for the bare forward + backward loop over `images`."""
    kept: dict[str, torch.Tensor] = {}
    handles = [
        bundle.module.get_submodule(name).register_forward_hook(
            lambda _m, _i, output, name=name: kept.__setitem__(name, output)
        )
        for name in layers
    ]
    try:
        start = time.perf_counter()
        for i in range(0, len(images), batch_size):
            x = bundle.batch(images[i : i + batch_size])[0]
            with torch.enable_grad():
                output = bundle.run(x)
                score = output.gather(1, output.detach().argmax(dim=1, keepdim=True)).sum()
                grads = torch.autograd.grad(score, [kept[name] for name in layers])
            assert all(g is not None for g in grads)
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()


def ours(bundle: ModelBundle, images: list[DecodedImage], layers: list[str], batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        index = reference_index(bundle, images, layers, top=16, batch_size=batch_size, cache_dir=cache)
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    assert not index.from_cache and len(index.top(layers[0], 0)) == 16
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="torchvision:resnet18")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--layers", default="layer4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_model(args.model, "random")
    bundle.module.to(args.device)
    layers = [name.strip() for name in args.layers.split(",")]
    images = pictures(args.count, max(bundle.input_size))
    bare_loop(bundle, images[: args.batch_size], layers, args.batch_size)  # warm-up
    ours(bundle, images[: args.batch_size], layers, args.batch_size)
    bare, indexed = [], []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        bare.append(bare_loop(bundle, images, layers, args.batch_size))
        indexed.append(ours(bundle, images, layers, args.batch_size))
    b, o = statistics.median(bare), statistics.median(indexed)
    print(
        f"{args.model} at {bundle.input_size[0]}×{bundle.input_size[1]}, {args.count} pictures, batch {args.batch_size}, "
        f"layers {', '.join(layers)}, {args.device}, {torch.get_num_threads()} thread(s)"
    )
    print(
        f"bare forward+backward loop: {args.count / b:8.1f} pictures/s ({b:.2f} s; runs {', '.join(f'{t:.2f}' for t in bare)})"
    )
    print(
        f"reference_index:            {args.count / o:8.1f} pictures/s ({o:.2f} s; runs {', '.join(f'{t:.2f}' for t in indexed)})"
    )
    print(f"ratio (reference_index / bare): {b / o:.2f}x   (goal >= 0.8x)")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
