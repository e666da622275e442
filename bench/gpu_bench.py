"""Batch throughput on a GPU: our Grad-CAM through `explain_batch` vs the peers, and Integrated Gradients vs
the passes it cannot avoid. Everything in one process, on the same model, batch and device.

    python -m bench.gpu_bench [--model resnet50] [--batch 64] [--device cuda] [--repeats 10]
    python -m bench.gpu_bench --device cpu --batch 4          # a smoke check without a GPU

Compared (issue #5's GPU targets, H100/H200 class):
  Grad-CAM, whole batch: ours (explain_batch given the same ready batch tensor on the device as the peers;
      also from decoded 224×224 pictures, preprocessing and the copy to the device included) vs
      pytorch-grad-cam GradCAM and torchcam GradCAM                            throughput target >= 2x each
  Integrated Gradients, 50 steps, whole batch, through explain_batch vs 50 bare forward+backward passes of the
      batch (gradient to the input only)                                                   time target <= 1.3x
Also printed for orientation: the bare forward, and our preprocessing alone (PIL arrays -> device tensor).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from cnnvis_engine import Explainer, decode_image, load_model
from cnnvis_engine.methods import default_layer

warnings.filterwarnings("ignore")


def median_ms(fn: Callable[[], object], repeats: int, device: torch.device, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def batch_pictures(count: int, size: int = 224, seed: int = 0) -> list:
    """Distinct decoded pictures at the model's input size (decoding is not what is measured)."""
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open("assets/samples/cat.jpg").convert("RGB").resize((size, size)), dtype=np.int16)
    return [
        decode_image(Image.fromarray(np.clip(base + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8)))
        for _ in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="default 10 on a GPU, 1 on the CPU")
    parser.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps")
    parser.add_argument("--ig-batch", type=int, default=None, help="IG internal batch size (default: the engine's)")
    args = parser.parse_args()

    from pytorch_grad_cam import GradCAM as PgcGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAM as TcGradCAM

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    repeats = args.repeats or (10 if gpu else 1)
    warmup = 2 if gpu else 0
    bundle = load_model(args.model, weights="random")
    bundle.module.to(device)
    pictures = batch_pictures(args.batch)
    ex = Explainer(bundle, cache_size=0)
    layer = default_layer(ex.trace(pictures[0]), "gradcam")
    target = 281
    x = torch.stack([bundle.prepare(p.image)[1] for p in pictures]).to(device)
    peer = copy.deepcopy(bundle.module)  # pytorch-grad-cam and torchcam call .backward(): parameter .grad
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(
        f"model {args.model} (random weights), layer {layer}, batch {args.batch}×3×224×224, device {name}, "
        f"torch {torch.__version__}, {repeats} repeats"
    )

    def bare_forward():
        with torch.no_grad():
            bundle.module(x)

    def bare_forward_backward():
        xi = x.detach().requires_grad_(True)
        out = bundle.module(xi)
        torch.autograd.grad(out[:, target].sum(), xi)

    def preprocess():
        torch.stack([bundle.prepare(p.image)[1] for p in pictures]).to(device)

    def ours_gradcam():
        ex.explain_batch(pictures, targets=target, methods=["gradcam"], top_k=1)

    def ours_gradcam_tensor():  # the same ready batch tensor the peers get
        ex.explain_batch(x, targets=target, methods=["gradcam"], top_k=1)

    pgc = PgcGradCAM(model=peer, target_layers=[peer.get_submodule(layer)])
    pgc_targets = [ClassifierOutputTarget(target)] * args.batch

    def pgc_gradcam():
        pgc(input_tensor=x, targets=pgc_targets)

    def torchcam_gradcam():
        with TcGradCAM(peer, target_layer=layer) as extractor:
            scores = peer(x)
            extractor(class_idx=[target] * args.batch, scores=scores)

    ig_options = {"steps": args.steps, **({"internal_batch_size": args.ig_batch} if args.ig_batch else {})}

    def ours_ig():
        ex.explain_batch(
            pictures,
            targets=target,
            methods=["integrated_gradients"],
            options={"integrated_gradients": ig_options},
            top_k=1,
        )

    def timed(fn: Callable[[], object], times: int = repeats) -> float:
        return median_ms(fn, times, device, warmup)

    forward_ms = timed(bare_forward)
    fb_ms = timed(bare_forward_backward)
    prep_ms = timed(preprocess)
    ours_ms = timed(ours_gradcam)
    ours_tensor_ms = timed(ours_gradcam_tensor)
    pgc_ms = timed(pgc_gradcam)
    tc_ms = timed(torchcam_gradcam)
    ig_repeats = max(1, repeats // 3)
    ig_ms = timed(ours_ig, ig_repeats)
    fb50_ms = args.steps * fb_ms
    pgc.activations_and_grads.release()

    per_second = 1000 * args.batch
    print(f"  bare forward                  {forward_ms:9.1f} ms")
    print(f"  bare forward+backward         {fb_ms:9.1f} ms")
    print(f"  our preprocessing alone       {prep_ms:9.1f} ms  (inside explain_batch's time below)")
    print(
        "\ncase                                  ours ms  img/s   vs                          peer ms  img/s   "
        "ratio   target"
    )
    rows = [
        ("Grad-CAM, batch tensor", ours_tensor_ms, "pytorch-grad-cam GradCAM", pgc_ms, "throughput", 2.0),
        ("Grad-CAM, batch tensor", ours_tensor_ms, "torchcam GradCAM", tc_ms, "throughput", 2.0),
        ("Grad-CAM, from pictures", ours_ms, "pytorch-grad-cam GradCAM", pgc_ms, "throughput", 2.0),
        ("Grad-CAM, from pictures", ours_ms, "torchcam GradCAM", tc_ms, "throughput", 2.0),
        (f"IG ({args.steps} steps), batch", ig_ms, f"{args.steps} × bare fwd+bwd", fb50_ms, "time", 1.3),
    ]
    for case, ours, peer_name, peer_ms, kind, goal in rows:
        if kind == "throughput":
            ratio = peer_ms / ours
            verdict = "ok" if ratio >= goal else "MISSED"
            target_text = f">= {goal}x faster"
        else:
            ratio = ours / peer_ms
            verdict = "ok" if ratio <= goal else "MISSED"
            target_text = f"<= {goal}x the time"
        print(
            f"{case:34s} {ours:9.1f} {per_second / ours:6.0f}   {peer_name:26s} {peer_ms:9.1f} "
            f"{per_second / peer_ms:6.0f}   {ratio:5.2f}   {target_text} {verdict}"
        )


if __name__ == "__main__":
    main()
