"""Train the demo models that retell the article's stories, and write their weights, model cards and the
Stories page's pictures.

    python scripts/train_demos.py                      # all four, into assets/models/ and assets/stories/
    python scripts/train_demos.py --only salt_unet     # one of them
    python scripts/train_demos.py --steps 3 --out /tmp/demos   # a quick smoke run

Seeded and repeatable: the data come from fixed seeds and torch.manual_seed fixes the initialisation and the
batch order (the same machine and thread count give the same weights). Each model takes one to three minutes
on two CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cnnvis_engine.demos.catalog import DEMOS, STORIES_DIR, WEIGHTS_DIR
from cnnvis_engine.demos.recipes import RECIPES, TRAIN_SEEDS, train_demo
from cnnvis_engine.demos.story_pictures import story_pictures
from cnnvis_engine.demos.training import TrainLog
from cnnvis_engine.models.demos import demo_bundle
from cnnvis_engine.stories import evaluation

ARCHITECTURES = {
    "tanks_shortcut": "TankNet: four 3×3 conv–BatchNorm–ReLU blocks (16, 32, 64, 64 channels; max-pooling halves the size "
    "before blocks 2–4, 64→8 px), a squeeze-and-excitation block (`se`), global average pooling and one Linear "
    "(`fc`, 64→2). CAM applies at `se`.",
    "salt_unet": "SaltUNet: a three-level U-Net — two 3×3 conv–BatchNorm–ReLU layers per level (16, 32, 64 channels), "
    "transposed-convolution upsampling, skip connections by concatenation, and a 1×1 `head` giving 2 logits per "
    "pixel at 64×64.",
    "robot_perception": "RobotNet: four 3×3 conv–BatchNorm–ReLU blocks in `features` (16, 32, 48, 64 channels; 96→12 px), "
    "then max-pooling to 6×6, dropout and one Linear (2304→25): one logit per cell, read through a sigmoid.",
}
ARCHITECTURES["tanks_clean"] = ARCHITECTURES["tanks_shortcut"]


def measure(name: str, module: torch.nn.Module) -> dict[str, float]:
    """Held-out numbers for the card, on scenes from seeds the training never used."""
    if name.startswith("tanks"):
        bundle = demo_bundle(name, module)
        gradcam = evaluation.tank_cam_share(bundle)
        cam = evaluation.tank_cam_share(bundle, method="cam")
        return {
            "accuracy, light as in its training photos": evaluation.tank_accuracy(module, name.removeprefix("tanks_")),
            "accuracy, light independent of tanks": evaluation.tank_accuracy(module, "clean"),
            "accuracy, tanks only under clouds": evaluation.tank_accuracy(module, "reversed"),
            "Grad-CAM share inside the tank's box": gradcam.mean,
            "CAM share inside the tank's box": cam.mean,
            "tank images with a flat Grad-CAM": gradcam.flat,
        }
    if name == "salt_unet":
        share = evaluation.salt_cam_share(demo_bundle(name, module))
        return {"salt IoU": evaluation.salt_iou(module), "salt Grad-CAM share inside the predicted mask": share.mean}
    scores = evaluation.robot_scores(module)
    failures = evaluation.robot_failures(module)
    return {
        "per-output accuracy": scores["per_output_accuracy"],
        "worst single output's accuracy": scores["worst_output_accuracy"],
        "precision (obstacle outputs)": scores["precision"],
        "recall (obstacle outputs)": scores["recall"],
        "views with all 25 outputs right": scores["all_outputs_right"],
        "per-output accuracy of always saying 'no obstacle'": scores["all_zero_baseline"],
        "lone obstacle found, ordinary colour": failures["found_ordinary"],
        "lone obstacle found, coloured like the floor": failures["found_floor_coloured"],
        "false obstacles per empty view": failures["false_obstacles_per_empty_view"],
        "false obstacles per view with a strong shadow": failures["false_obstacles_per_shadow_view"],
    }


def model_card(name: str, log: TrainLog, metrics: dict[str, float], weights: Path) -> str:
    spec, recipe = DEMOS[name], RECIPES[name]
    params = sum(p.numel() for p in spec.make_module().parameters())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    labels = spec.output_names or spec.class_names
    rows = "\n".join(f"| {k} | {_fmt(v)} |" for k, v in metrics.items())
    return f"""# {name} — {spec.title}

{spec.description}

- **Task**: {spec.task}; input {spec.input_size[1]}×{spec.input_size[0]} RGB, normalised as (rgb / 255 − 0.5) / 0.5.
- **Outputs**: {len(labels)} — {", ".join(labels[:6])}{" …" if len(labels) > 6 else ""}
- **Weights**: `{weights.name}`, a state_dict ({weights.stat().st_size / 1e6:.2f} MB, sha256 {digest}…), loaded with
  `torch.load(..., weights_only=True)` by `cnnvis_engine/models/demos.py`.

## Architecture
{ARCHITECTURES[name]} {params:,} parameters.

## Data
Synthetic, drawn with numpy/OpenCV by `cnnvis_engine/demos/` from seed {TRAIN_SEEDS[name]}. {recipe.data_note}

## Training
Adam with a one-cycle learning rate (peak {recipe.lr}), weight decay 1e-4, batch {log.batch_size}, {log.steps} steps,
torch.manual_seed(0). Loss {log.first_loss:.3f} at the first step, {log.last_loss:.4f} over the last 20.
Took {log.seconds:.0f} s wall clock and {log.cpu_seconds:.0f} s of CPU time on {torch.get_num_threads()} threads
({platform.processor() or platform.machine()}, torch {torch.__version__}; on a shared machine the wall clock grows with the load).

## Held-out results
Measured on freshly generated scenes (seeds {min(set(evaluation.HELD_OUT_SEEDS.values()))}+, never used in training):

| measure | value |
|---|---|
{rows}

## Retrain
    python scripts/train_demos.py --only {name}
"""


def _fmt(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def save_pictures(directory: Path, robot: torch.nn.Module) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    index = []
    for picture in story_pictures(robot):
        Image.fromarray(picture.image).save(directory / f"{picture.key}.png")
        entry = {
            "story": picture.story,
            "key": picture.key,
            "file": f"{picture.key}.png",
            "title": picture.title,
            "truth": picture.truth,
        }
        if picture.mask is not None:
            Image.fromarray(picture.mask * 255).save(directory / f"{picture.key}_mask.png")
            entry["mask_file"] = f"{picture.key}_mask.png"
        index.append(entry)
    (directory / "stories.json").write_text(json.dumps(index, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=list(DEMOS), help="train only this model (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: each recipe's own)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR, help="where weights and model cards go")
    parser.add_argument(
        "--stories",
        type=Path,
        default=None,
        help="where story pictures go (default: assets/stories with the default --out, else OUT/stories)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures-only", action="store_true", help="only redraw the story pictures (shipped models)")
    args = parser.parse_args(argv)
    stories = args.stories or (STORIES_DIR if args.out == WEIGHTS_DIR else args.out / "stories")
    args.out.mkdir(parents=True, exist_ok=True)
    robot = None
    for name in [] if args.pictures_only else args.only or list(DEMOS):
        start = time.perf_counter()
        module, log = train_demo(name, steps=args.steps, seed=args.seed)
        robot = module if name == "robot_perception" else robot
        weights = args.out / f"{name}.pt"
        torch.save(module.state_dict(), weights)
        metrics = measure(name, module)
        (args.out / f"{name}.md").write_text(model_card(name, log, metrics, weights))
        summary = ", ".join(f"{k} {_fmt(v)}" for k, v in list(metrics.items())[:3])
        print(
            f"{name}: trained in {log.seconds:.0f} s, {log.cpu_seconds:.0f} s CPU ({time.perf_counter() - start:.0f} s with data and evaluation); {summary}"
        )
    if robot is None:  # the robot's failure pictures are picked with the model that ships
        robot = demo_bundle("robot_perception").module
    save_pictures(stories, robot)
    print(f"story pictures in {stories}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
