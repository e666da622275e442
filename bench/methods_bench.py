"""The extra-pass methods vs the fastest peer call for each, in one process, on the same model and input.

    python -m bench.methods_bench [--model resnet50] [--size 224] [--repeats 3] [--scorecam-layer layer4]
    python -m bench.methods_bench --model efficientnet_lite0 --weights embedded --skip ig,smoothgrad

Score-CAM skips the passes of all-zero feature maps (their mask is exactly zero, so their score is that of a
zero input: the same numbers). Random weights have few of them (4% of resnet50's layer4); trained ones many
(59% of efficientnet_lite0's bn2 on the cat photo), hence the second line.

Compared (issue #5's CPU targets, one image, random weights; each ratio ours / peer, target <= 1.0x):
  Score-CAM at the default layer (one forward pass per channel) vs pytorch-grad-cam's ScoreCAM
  Integrated Gradients, 50 steps                                vs captum's IntegratedGradients
  SmoothGrad, 25 samples                                        vs captum's NoiseTunnel(Saliency)
Peers get the same internal batch size as ours (pytorch-grad-cam's ScoreCAM.batch_size, captum's
internal_batch_size / nt_samples_batch_size), so the ratio measures the implementations, not the batching.
Ours is timed through `explain_batch`, which always runs its own recorded forward pass (no cache). Calls
alternate ours/peer (who goes first alternating) and medians of wall and process CPU time are reported; the
verdict uses CPU time, which a shared, oversubscribed machine disturbs less. Compare ratios, not milliseconds.
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
from cnnvis_engine.methods import default_layer

from .engine_bench import fresh_images

warnings.filterwarnings("ignore")


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall ms, this process's CPU ms) of one call. CPU time is less disturbed by other processes on a shared
    machine than wall time (it still feels their cache and memory traffic)."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def alternate(ours: Callable[[], object], peer: Callable[[], object], repeats: int) -> tuple[tuple[float, float], ...]:
    """Medians ((wall, cpu) ours, (wall, cpu) peer) in ms; calls interleaved, who goes first alternating."""
    mine, theirs = [], []
    for i in range(repeats):
        if i % 2:
            theirs.append(timed(peer))
            mine.append(timed(ours))
        else:
            mine.append(timed(ours))
            theirs.append(timed(peer))
    return tuple(tuple(statistics.median(t[k] for t in runs) for k in (0, 1)) for runs in (mine, theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--weights", default="random", help="random, or e.g. embedded for efficientnet_lite0")
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

    bundle = dataclasses.replace(load_model(args.model, weights=args.weights), input_size=(args.size, args.size))
    image = fresh_images(1)[0]
    ex = Explainer(bundle, cache_size=0)
    layer = args.scorecam_layer or default_layer(ex.trace(image), "gradcam")
    x = bundle.prepare(image.image)[1][None]
    target = 281
    peer = copy.deepcopy(bundle.module)  # peers call .backward() and model.eval()
    grad_batch = args.batch or 16
    nograd_batch = args.batch or 64
    channels = ex.trace(image).get(layer).shape[0]
    print(
        f"model {args.model} ({args.weights} weights), input 1×3×{args.size}×{args.size}, Score-CAM layer {layer} "
        f"({channels} channels), internal batches {nograd_batch} (no grad) / {grad_batch} (grad), CPU threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}"
    )

    def ours(method: str, **options) -> Callable[[], object]:
        settings = {method: options}
        return lambda: ex.explain_batch([image], layer=layer, targets=target, methods=[method], options=settings)

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
            x.clone(),
            nt_type="smoothgrad",
            nt_samples=25,
            nt_samples_batch_size=grad_batch,
            stdevs=sigma,
            target=target,
        )

    cases = {
        "scorecam": (
            "Score-CAM",
            ours("scorecam", internal_batch_size=nograd_batch),
            "pytorch-grad-cam ScoreCAM",
            pgc_scorecam,
            args.scorecam_repeats,
        ),
        "ig": (
            "Integrated Gradients (50)",
            ours("integrated_gradients", steps=50, internal_batch_size=grad_batch),
            "captum IntegratedGradients",
            captum_ig,
            args.repeats,
        ),
        "smoothgrad": (
            "SmoothGrad (25)",
            ours("smoothgrad", samples=25, internal_batch_size=grad_batch),
            "captum NoiseTunnel(Saliency)",
            captum_smoothgrad,
            args.repeats,
        ),
    }
    skip = {name.strip() for name in args.skip.split(",") if name.strip()}
    import tqdm  # pytorch-grad-cam's ScoreCAM draws a progress bar per batch; keep the table readable

    tqdm.tqdm.__init__ = _quiet(tqdm.tqdm.__init__)
    print("\nmedian ms (wall / CPU)                                                           ratio (wall / CPU)")
    print("case                        ours             vs                              peer             target 1.0")
    for key, (case, mine, peer_name, theirs, repeats) in cases.items():
        if key in skip:
            continue
        (ours_wall, ours_cpu), (peer_wall, peer_cpu) = alternate(mine, theirs, repeats)
        wall, cpu = ours_wall / peer_wall, ours_cpu / peer_cpu
        verdict = "ok" if cpu <= 1.0 else "MISSED"
        print(
            f"{case:26s} {ours_wall:7.0f} /{ours_cpu:7.0f}   {peer_name:28s} {peer_wall:7.0f} /{peer_cpu:7.0f}   "
            f"{wall:4.2f} / {cpu:4.2f} {verdict} (x{repeats})",
            flush=True,
        )


def _quiet(init: Callable) -> Callable:
    def quiet(self, *args, **kwargs):
        kwargs["disable"] = True
        init(self, *args, **kwargs)

    return quiet


if __name__ == "__main__":
    main()
