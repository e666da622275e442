"""Grad-CAM on a vision transformer: ours vs pytorch-grad-cam with its `vit_reshape_transform`, same process, same
model (timm:vit_small_patch16_224, random weights, seeded), same input, the same layer (blocks[-1].norm1, our default
and pytorch-grad-cam's documented choice), CPU.

    python -m bench.vit_bench [--repeats 7] [--threads 1]

Ours is timed through `explain_batch`, which runs its own recorded forward pass every call (no cache), so both sides
do one forward and one backward pass. Calls alternate ours/peer (who goes first alternating); medians of wall and
process CPU time are reported, and the verdict (goal: ours / peer <= 1.0) uses CPU time, which a shared machine
disturbs less. Compare ratios, not milliseconds.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import warnings
from collections.abc import Callable

import timm
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from pytorch_grad_cam.utils.reshape_transforms import vit_reshape_transform

from cnnvis_engine import Explainer
from cnnvis_engine.models import ModelBundle

MODEL, LAYER, SIZE = "vit_small_patch16_224", "blocks.11.norm1", 224


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    module = timm.create_model(MODEL, pretrained=False).eval()
    explainer = Explainer(
        ModelBundle(name=MODEL, module=module, class_names=(), input_size=(SIZE, SIZE), weights_source="random")
    )
    peer_model = copy.deepcopy(module)
    peer = GradCAM(
        model=peer_model, target_layers=[peer_model.get_submodule(LAYER)], reshape_transform=vit_reshape_transform
    )
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    target = 1

    def ours() -> None:
        explainer.explain_batch(x, layer=LAYER, targets=[target], methods=["gradcam"])

    def theirs() -> None:
        peer(input_tensor=x.clone(), targets=[ClassifierOutputTarget(target)])

    ours(), theirs()  # warm up: the first call traces the layers, the peer registers its hooks
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "pytorch-grad-cam": []}
    for i in range(args.repeats):
        pair = [("ours", ours), ("pytorch-grad-cam", theirs)]
        for name, fn in pair if i % 2 == 0 else reversed(pair):
            times[name].append(timed(fn))
    peer.activations_and_grads.release()
    medians = {
        name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for name, t in times.items()
    }
    for name, (wall, cpu) in medians.items():
        print(f"{name:>17}: wall {wall * 1000:7.0f} ms, CPU {cpu * 1000:7.0f} ms (median of {args.repeats})")
    ratio = medians["ours"][1] / medians["pytorch-grad-cam"][1]
    wall_ratio = medians["ours"][0] / medians["pytorch-grad-cam"][0]
    print(
        f"ours / pytorch-grad-cam: CPU {ratio:.2f}x, wall {wall_ratio:.2f}x (goal <= 1.0) on {torch.get_num_threads()} thread(s)"
    )


if __name__ == "__main__":
    main()
