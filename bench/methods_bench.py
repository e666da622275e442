"""The extra-pass methods vs the fastest peer call for each, in one process, on the same model and input.

    python -m bench.methods_bench [--model resnet50] [--size 224] [--repeats 3] [--scorecam-layer layer4]

Compared (issue #5's CPU targets, one image, random weights; each ratio ours / peer, target <= 1.0x):
  Score-CAM at the default layer (one forward pass per channel) vs pytorch-grad-cam's ScoreCAM
  Integrated Gradients, 50 steps                                vs captum's IntegratedGradients
  SmoothGrad, 25 samples                                        vs captum's NoiseTunnel(Saliency)
Peers get the same internal batch size as ours (pytorch-grad-cam's ScoreCAM.batch_size, captum's
internal_batch_size / nt_samples_batch_size), so the ratio measures the implementations, not the batching.
Ours is timed through `explain_batch`, which always runs its own recorded forward pass (no cache). Calls
alternate ours/peer and medians are reported: a shared machine is noisy, compare ratios, not milliseconds.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from cnnvis_engine import Explainer, load_model

from .engine_bench import fresh_images

warnings.filterwarnings("ignore")


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def alternate(ours: Callable[[], object], peer: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median ms of each, calls interleaved so both see the same machine load."""
    mine, theirs = [], []
    for _ in range(repeats):
        mine.append(timed(ours))
        theirs.append(timed(peer))
    return statistics.median(mine), statistics.median(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scorecam-repeats", type=int, default=1, help="Score-CAM runs 2048 passes on resnet50")
    parser.add_argument("--scorecam-layer", default=None, help="default: the engine's Grad-CAM layer")
    parser.add_argument("--batch", type=int, default=None, help="internal batch size (default: the engine's)")
    parser.add_argument("--skip", default="", help="comma-separated cases to skip: scorecam, ig, smoothgrad")
    args = parser.parse_args()

    from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    bundle = dataclasses.replace(load_model(args.model, weights="random"), input_size=(args.size, args.size))
    image = fresh_images(1)[0]
    ex = Explainer(bundle, cache_size=0)
    layer = args.scorecam_layer or ex.trace(image).default_layer("gradcam")
    x = bundle.prepare(image.image)[1][None]
    target = 281
    peer = copy.deepcopy(bundle.module)  # peers call .backward() and model.eval()
    grad_batch = args.batch or 16
    nograd_batch = args.batch or 64
    channels = ex.trace(image).get(layer).shape[0]
    print(
        f"model {args.model} (random weights), input 1×3×{args.size}×{args.size}, Score-CAM layer {layer} "
        f"({channels} channels), internal batches {nograd_batch} (no grad) / {grad_batch} (grad), CPU threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}"
    )

    def ours(method: str, **options) -> Callable[[], object]:
        return lambda: ex.explain_batch([image], layer=layer, targets=target, methods=[method], options={method: options})

    def pgc_scorecam():
        with ScoreCAM(model=peer, target_layers=[peer.get_submodule(layer)]) as cam:
            cam.batch_size = nograd_batch
            return cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(target)])

    def captum_ig():
        return IntegratedGradients(peer).attribute(
            x.clone(), baselines=0.0, target=target, n_steps=50, internal_batch_size=grad_batch
        )

    def captum_smoothgrad():
        torch.manual_seed(0)
        sigma = 0.15 * float(x.max() - x.min())
        return NoiseTunnel(Saliency(peer)).attribute(
            x.clone(), nt_type="smoothgrad", nt_samples=25, nt_samples_batch_size=grad_batch, stdevs=sigma,
            target=target,
        )

    cases = {
        "scorecam": ("Score-CAM", ours("scorecam", internal_batch_size=nograd_batch), "pytorch-grad-cam ScoreCAM",
                     pgc_scorecam, args.scorecam_repeats),
        "ig": ("Integrated Gradients (50)", ours("integrated_gradients", steps=50, internal_batch_size=grad_batch),
               "captum IntegratedGradients", captum_ig, args.repeats),
        "smoothgrad": ("SmoothGrad (25)", ours("smoothgrad", samples=25, internal_batch_size=grad_batch),
                       "captum NoiseTunnel(Saliency)", captum_smoothgrad, args.repeats),
    }
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    import tqdm  # pytorch-grad-cam's ScoreCAM draws a progress bar per batch; keep the table readable

    tqdm.tqdm.__init__ = _quiet(tqdm.tqdm.__init__)
    print("\ncase                        ours ms   vs                              peer ms   ratio  target")
    for key, (case, mine, peer_name, theirs, repeats) in cases.items():
        if key in skip:
            continue
        ours_ms, peer_ms = alternate(mine, theirs, repeats)
        ratio = ours_ms / peer_ms
        verdict = "ok" if ratio <= 1.0 else "MISSED"
        print(f"{case:26s} {ours_ms:9.0f}   {peer_name:28s} {peer_ms:9.0f}   {ratio:5.2f}  <= 1.0 {verdict}", flush=True)


def _quiet(init: Callable) -> Callable:
    def quiet(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    return quiet


if __name__ == "__main__":
    main()
