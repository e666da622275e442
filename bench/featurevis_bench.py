"""Feature visualisation speed, in one process, on the embedded default (efficientnet_lite0). Prints figures and ratios.

    python -m bench.featurevis_bench [--size 128] [--steps 256] [--rounds 5] [--chunk 16] [--skip-full]
                                     [--threads N] [--device cuda]

Measured (issue 7's targets):
  steps per second of `visualize` vs a bare forward + backward (to the input) of the same model at the same size,
      for a mid-network channel (blocks.4) and for a class logit (the whole network)            target >= 0.8x
  wall time of one 128 × 128 channel image with 256 steps                                       target <= 30 s
  a gallery of 8 channels at 64 px / 64 steps (what the Layers page asks for)
The bare and visualize chunks alternate, so both see the same machine load; the machine is shared and noisy,
so read the ratios, and the wall time next to the bare step time measured just before it. On a busy 2-core
machine `--threads 1` can be much faster than the default 2: each 2-thread op waits for its second thread.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from cnnvis_engine import load_model
from cnnvis_engine.featurevis import Objective, channel, class_logit, render_channels, visualize
from cnnvis_engine.models import ModelBundle


def bare_steps_per_s(bundle: ModelBundle, size: int, steps: int) -> float:
    """`steps` plain forward + backward passes to the input of a (1, 3, size, size) image, no hooks, no lock."""
    x = torch.randn(1, 3, size, size, device=bundle.device, requires_grad=True)
    start = time.perf_counter()
    for _ in range(steps):
        output = bundle.module(x)
        torch.autograd.grad(output[:, 0].sum(), x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def visualize_steps_per_s(bundle: ModelBundle, objective: Objective, size: int, steps: int) -> float:
    """Steps per second of `visualize`, from its progress callbacks (set-up and the final image excluded)."""
    stamps: list[float] = []
    visualize(bundle, objective, size=size, steps=steps + 1, progress=lambda s, t: stamps.append(time.perf_counter()))
    return steps / (stamps[-1] - stamps[0])


def alternate(rounds: int, cases: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Median of each case over `rounds`, the cases interleaved within every round."""
    for fn in cases.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(fn())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=16, help="steps per timed chunk")
    parser.add_argument("--skip-full", action="store_true", help="only the steps-per-second ratios")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    bundle = load_model("efficientnet_lite0")
    bundle.module.to(args.device)  # this process's own copy
    size, chunk = args.size, args.chunk
    print(
        f"efficientnet_lite0, {size}x{size}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {bundle.device}"
    )
    medians = alternate(
        args.rounds,
        {
            "bare forward+backward": lambda: bare_steps_per_s(bundle, size, chunk),
            "visualize channel(blocks.4, 0)": lambda: visualize_steps_per_s(
                bundle, channel("blocks.4", 0), size, chunk
            ),
            "visualize class_logit(1)": lambda: visualize_steps_per_s(bundle, class_logit(1), size, chunk),
        },
    )
    bare = medians["bare forward+backward"]
    for name, rate in medians.items():
        print(
            f"  {name:32s} {rate:7.1f} steps/s  {1000 / rate:7.1f} ms/step  {rate / bare:5.2f}x bare  (target >= 0.8x)"
        )
    if args.skip_full:
        return
    bare_now = bare_steps_per_s(bundle, size, chunk)
    start = time.perf_counter()
    visualize(bundle, channel("blocks.4", 0), size=size, steps=args.steps, seed=0)
    wall = time.perf_counter() - start
    print(
        f"  one {size}x{size} channel image, {args.steps} steps: {wall:.1f} s  (target <= 30 s); "
        f"{args.steps} bare steps measured just before would take {args.steps / bare_now:.1f} s"
    )
    start = time.perf_counter()
    render_channels(bundle, "blocks.4", 8, size=64, steps=64)
    print(f"  gallery, 8 channels of blocks.4 at 64x64, 64 steps: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
