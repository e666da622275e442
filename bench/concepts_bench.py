"""Concepts (ranking + conditional maps) vs one vanilla saliency call, through the same Explainer, in one process.

    python -m bench.concepts_bench [--model resnet50] [--top 8] [--repeats 5] [--threads 1]

Issue #23's CPU target: ranking + 8 conditional maps on resnet50 <= 2x one saliency call (the anchor, zennit-crp
with LRP, takes 1.2-1.6 s to rank and 0.6-0.8 s per concept on this class of machine). Both start from a picture
the explainer has not seen (its own recorded forward pass: "cold"); "warm" times concepts on a picture whose pass
is already cached (the page has explained it), where the ranking costs no pass at all. Calls alternate and the
medians of wall and process CPU time are printed; compare ratios, not milliseconds.

The floor: each conditional map is its own vector-Jacobian product from the layer to the input, so ranking + k maps
costs about one forward and (1 + k) input-gradient backward passes, saliency one forward and one backward. The last
lines time the k maps' backward as one batched call (`is_grads_batched`: what `concepts` does on a GPU) and as k
calls (what it does on a CPU, where that measured faster).
"""

from __future__ import annotations

import argparse
import resource
import warnings

import torch

from cnnvis_engine import Explainer, load_model

from .engine_bench import fresh_images
from .methods_bench import alternate, timed

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--weights", default="random")
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundle = load_model(args.model, args.weights)
    explainer = Explainer(bundle, cache_size=2)
    images = iter(fresh_images(4 * args.repeats + 4))
    explainer.concepts(next(images), top=args.top)  # warm-up: imports, first trace
    explainer.explain(next(images), methods=["saliency"])
    (ours, ours_cpu), (sal, sal_cpu) = alternate(
        lambda: explainer.concepts(next(images), top=args.top),
        lambda: explainer.explain(next(images), methods=["saliency"]),
        args.repeats,
    )
    warm_times = []
    for _ in range(args.repeats):
        image = next(images)
        explainer.predict(image)  # records and caches the pass
        warm_times.append(timed(lambda image=image: explainer.concepts(image, top=args.top)))
    warm, warm_cpu = (sorted(t[k] for t in warm_times)[len(warm_times) // 2] for k in (0, 1))
    result = explainer.concepts(next(images), top=args.top)
    print(f"{args.model} ({args.weights} weights), layer {result.layer}, top {args.top}, {args.threads} thread(s)")
    print(f"saliency (cold)            {sal:8.0f} ms wall {sal_cpu:8.0f} ms cpu")
    print(f"concepts + {args.top} maps (cold)   {ours:8.0f} ms wall {ours_cpu:8.0f} ms cpu")
    print(f"concepts + {args.top} maps (warm)   {warm:8.0f} ms wall {warm_cpu:8.0f} ms cpu")
    print(f"ratio cold / saliency: {ours / sal:.2f}x wall, {ours_cpu / sal_cpu:.2f}x cpu (target <= 2.0x)")
    print(f"ratio warm / saliency: {warm / sal:.2f}x wall, {warm_cpu / sal_cpu:.2f}x cpu")
    print(f"notes: {result.notes or 'none'}")
    batched, looped = _backward_ways(explainer, next(images), args.top)
    print(
        f"{args.top} maps' backward: one batched call {batched:.0f} ms cpu, {args.top} single calls {looped:.0f} ms cpu"
    )
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def _backward_ways(explainer: Explainer, image: object, top: int) -> tuple[float, float]:
    """CPU ms of the `top` maps' backward pass from the default layer, batched and one row at a time (median of 3)."""
    from cnnvis_engine.concepts.graph import attached

    explainer.predict(image)
    fp = explainer._cached_pass(image)
    layer = fp.trace.default_of_kind("cam_site") or fp.trace.default_of_kind("spatial")
    assert layer is not None
    values = attached(fp, layer)
    rows = torch.randn((top, *values.shape), generator=torch.Generator().manual_seed(0))
    ways = (
        lambda: torch.autograd.grad(values, fp.x, rows, retain_graph=True, is_grads_batched=True),
        lambda: [torch.autograd.grad(values, fp.x, row, retain_graph=True) for row in rows],
    )
    times = [sorted(timed(way)[1] for _ in range(3))[1] for way in ways]
    return times[0], times[1]


if __name__ == "__main__":
    main()
