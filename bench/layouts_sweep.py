"""Every model a user can pick, tried with random weights: does Grad-CAM at the default layer draw the model's own
grid, refuse with a reason, or draw from a layout we misread?

One model per timm family (a family is the name before the first '_' or digit: `vit_small_patch16_224` -> `vit`,
`resnet50` -> `resnet`; 161 families in timm 1.0.31), the smallest by its name's size word and numbers (`size_rank`;
counting parameters of 1,371 models takes longer than the sweep), and every torchvision classifier. The expected grid comes from the model's own declaration, independently of the layouts module: timm's
last `feature_info` reduction (the input size divided by it, give or take a pixel of padding), a ViT's patch grid,
torchvision's stride 32 (16 for its ViTs' patches).

    python -m bench.layouts_sweep --select      # choose the models and input sizes; writes bench/layouts_selection.json
    python -m bench.layouts_sweep               # the table for the README (tests/test_layouts.py runs the same check)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

SELECTION = Path(__file__).with_name("layouts_selection.json")
SIZES = (64, 96, 128, 160, 224)  # the smallest that runs is chosen
SLOW_S = 10.0  # a model whose one check took longer (when selected) is left out of the test; the sweep runs it


def family(name: str) -> str:
    return re.split(r"[_\d]", name)[0]


@dataclass
class Row:
    source: str
    model: str
    size: int
    status: str  # "explained", "refused" (with a reason), "unrecognised" (a map of the wrong grid), "error"
    detail: str
    seconds: float


def build(source: str, model: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if source == "torchvision":
        import torchvision

        kwargs = {"image_size": size} if model.startswith("vit_") else {}
        return torchvision.models.get_model(model, weights=None, **kwargs).eval()
    import timm

    try:
        return timm.create_model(model, pretrained=False, img_size=size).eval()
    except TypeError:  # the model takes no img_size: it runs at any size (or fails at this one)
        return timm.create_model(model, pretrained=False).eval()


def expected_grid(source: str, module: torch.nn.Module, size: int) -> tuple[int, int] | None:
    if source == "torchvision":
        patch = getattr(module, "patch_size", None)
        return (size // patch,) * 2 if patch else (math.ceil(size / 32),) * 2
    info = getattr(module, "feature_info", None)
    if not info:
        return None
    reduction = info[-1]["reduction"]
    return (size // reduction,) * 2


def close(grid: tuple[int, ...], expected: tuple[int, int]) -> bool:
    return len(grid) == 2 and all(abs(g - e) <= 1 for g, e in zip(grid, expected))


def check(source: str, model: str, size: int) -> Row:
    """Grad-CAM at the default layer of one model, random weights, one random picture of `size`."""
    from cnnvis_engine import Explainer
    from cnnvis_engine.models.bundle import ModelBundle

    start = time.perf_counter()
    try:
        module = build(source, model, size)
        bundle = ModelBundle(
            name=f"{source}:{model}",
            module=module,
            class_names=tuple(str(i) for i in range(1000)),
            input_size=(size, size),
            weights_source="random",
        )
        explainer = Explainer(bundle)
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        result = explainer.explain_batch(x, methods=["gradcam"])[0]["gradcam"]
        trace = explainer._recorder.known_trace((3, size, size))
    except Exception as error:  # noqa: BLE001 - a sweep records every failure and goes on
        return Row(
            source, model, size, "error", f"{type(error).__name__}: {str(error)[:160]}", time.perf_counter() - start
        )
    seconds = time.perf_counter() - start
    expected = expected_grid(source, module, size)
    if expected is not None and expected[0] * expected[1] <= 1:
        return Row(source, model, size, "error", f"too small: its last grid is {expected} at {size} px", seconds)
    offered = [layer for layer in trace.layers if "spatial" in layer.kinds]
    wrong = [layer.name for layer in offered if layer.layout.kind not in ("map", "channels_last", "tokens")]
    if wrong:
        return Row(source, model, size, "unrecognised", f"offered without a layout: {wrong[:3]}", seconds)
    if not result.applicable:
        return Row(source, model, size, "refused", result.reason, seconds)
    grid = tuple(result.raw.shape[-2:])
    layout = trace.get(result.layer).layout.describe()
    if expected is not None and not close(grid, expected):
        detail = f"{result.layer} ({layout}) gives {grid}, expected {expected}"
        return Row(source, model, size, "unrecognised", detail, seconds)
    return Row(source, model, size, "explained", f"{result.layer} ({layout})", seconds)


def default_size(source: str, model: str) -> int:
    """The input size the model was made for (timm's pretrained config; 224 for torchvision)."""
    if source == "torchvision":
        return 224
    import timm

    return int(timm.models.get_pretrained_cfg(model).input_size[-1])


def torchvision_classifiers() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


SIZE_WORDS = [
    "zepto",
    "atto",
    "femto",
    "pico",
    "nano",
    "xxxs",
    "xxs",
    "xs",
    "xxtiny",
    "xtiny",
    "tiny",
    "ti",
    "t",
    "mini",
    "micro",
    "small",
    "s",
    "medium",
    "m",
    "base",
    "b",
    "large",
    "l",
    "big",
    "xlarge",
    "xl",
    "x",
    "xxl",
    "huge",
    "h",
    "giant",
    "g",
    "enormous",
]


def size_rank(name: str) -> tuple:
    """A model's place among its family by its name: a stated size (`412m`, `1b`), then its size word (atto < ... <
    tiny < small < base < large; `s16` reads as `s`), then its numbers (resnet10 < resnet18), then fewer parts."""
    words = re.split(r"[_\-]", name)
    stated = [
        float(m[1]) * (1000 if m[2] == "b" else 1) for w in words if (m := re.fullmatch(r"(\d+(?:\.\d+)?)([mb])", w))
    ]
    ranks = [SIZE_WORDS.index(w.rstrip("0123456789")) for w in words if w.rstrip("0123456789") in SIZE_WORDS]
    numbers = [int(n) for n in re.findall(r"\d+", "_".join(words[:2]))]
    return (min(stated, default=0.0), min(ranks, default=len(SIZE_WORDS) // 2), numbers, len(words), name)


def select(only: set[str] | None = None) -> dict:
    """The smallest model of each timm family (by its name: `size_rank`) and the smallest input size it runs at;
    every torchvision classifier at the smallest size it runs at. Where the smallest name fails at every size, the
    next one is tried. `only`: these families and torchvision names again, the rest kept from the file."""
    import timm

    members: dict[str, list[str]] = {}
    for name in timm.list_models(pretrained=False):
        members.setdefault(family(name), []).append(name)
    chosen: dict[str, dict] = json.loads(SELECTION.read_text()) if only else {"timm": {}, "torchvision": {}}
    candidates = {
        "timm": {key: sorted(names, key=size_rank)[:3] for key, names in sorted(members.items())},
        "torchvision": {name: [name] for name in torchvision_classifiers()},
    }
    for source, by_key in candidates.items():
        for key, names in by_key.items():
            if only is not None and key not in only:
                continue
            found: Row | None = None  # the first size that explains, else the first that runs at all
            for name in names:
                for size in dict.fromkeys((*SIZES, default_size(source, name))):
                    row = check(source, name, size)
                    if row.status != "error" and (found is None or found.status == "error"):
                        found = row
                    if row.status == "explained":
                        break
                if found is not None and found.status != "error":
                    break
            row = found if found is not None else row
            name, size = row.model, row.size
            chosen[source][key] = {
                "model": name,
                "size": size,
                "status": row.status,
                "seconds": round(row.seconds, 2),
                "detail": row.detail[:200],
            }
            print(source, key, name, size, row.status, round(row.seconds, 1), row.detail[:100], flush=True)
    return chosen


def load_selection() -> list[tuple[str, str, int, float]]:
    data = json.loads(SELECTION.read_text())
    return [
        (source, entry["model"], entry["size"], entry["seconds"])
        for source in ("timm", "torchvision")
        for entry in data[source].values()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", action="store_true", help="choose the models and sizes again")
    parser.add_argument("--only", help="with --select: these comma-separated families (or torchvision names) only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.select:
        only = set(args.only.split(",")) if args.only else None
        SELECTION.write_text(json.dumps(select(only), indent=1) + "\n")
    rows = [check(source, model, size) for source, model, size, _ in load_selection()]
    print("| source | model | input | result | detail |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.source} | {row.model} | {row.size} | {row.status} | {row.detail[:140]} |")
    print()
    print(summary(rows))


def summary(rows: list[Row]) -> str:
    """The README's table: per source, models explained (by the layout of their default map), refused with a
    reason, drawn from an unrecognised layout (must be 0), failed to run; and the slowest check."""
    lines = [
        (
            "| models | explained: map | channels-last | tokens | refused, with a reason | unrecognised layout | "
            "failed to run | slowest check |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for source in ("timm", "torchvision"):
        mine = [row for row in rows if row.source == source]
        explained = [row for row in mine if row.status == "explained"]
        by_kind = {
            kind: sum(f"({kind}" in row.detail for row in explained) for kind in ("map", "channels-last", "tokens")
        }
        counts = {status: sum(row.status == status for row in mine) for status in ("refused", "unrecognised", "error")}
        slowest = max(mine, key=lambda row: row.seconds)
        lines.append(
            f"| {source}: {len(mine)} {'families' if source == 'timm' else 'classifiers'} | {by_kind['map']} | "
            f"{by_kind['channels-last']} | {by_kind['tokens']} | {counts['refused']} | {counts['unrecognised']} | "
            f"{counts['error']} | {slowest.model} {slowest.seconds:.1f} s |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
