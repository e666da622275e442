"""The audit's verdict on planted shortcuts: precision and recall of the flagged pictures per mark kind and share,
and how much is flagged without the mark. Prints a Markdown table; not a timed test.

    python -m bench.audit_verdict_bench [--seeds 0 1 2] [--train-share 0.9] [--count 200] [--size 16]

Per mark kind ("corner": a magenta patch in the bottom-right corner; "cast": a magenta colour cast over the whole
picture) and seed, one small net is trained on 600 disc/square pictures with the mark on `--train-share` of the
training squares (`marked_shapes.train_shape_model`, seconds on one core), then audited on fresh sets of `--count`
pictures with the mark on exactly 10, 30, 50 and 80 % of the squares. "Clean": a net trained without the mark,
audited on pictures without it; "shortcut net, clean set": the marked net on pictures without the mark. Flagged
pictures are the members of flagged "square" groups (a flagged "disc" group counts against precision too).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cnnvis_engine.audit import Audit, audit
from cnnvis_engine.demos.marked_shapes import shape_set, train_shape_model, write_shape_folder

SHARES = (0.1, 0.3, 0.5, 0.8)
KINDS = ("corner", "cast")


def audit_case(model, count: int, seed: int, share: float, mark: str, size: int) -> tuple[Audit, np.ndarray]:
    """The audit of a fresh set and, per audited picture, whether it carries the mark."""
    shapes = shape_set(count, 50 + seed, marked_share=share, mark=mark, corner="bottom-right", exact=True)
    with tempfile.TemporaryDirectory() as folder:
        write_shape_folder(Path(folder), shapes)
        result = audit(model, folder, size=size)
    marked = np.array([shapes.marked[int(Path(name).stem)] for name in result.names])
    return result, marked


def flagged_pictures(result: Audit) -> set[int]:
    return {m for c in result.flagged() for m in c.members}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-share", type=float, default=0.9)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows: dict[tuple[str, float], list[tuple[int, int, int]]] = {}
    clean: dict[str, list[int]] = {}
    for seed in args.seeds:
        fair = train_shape_model(marked_share=0.0, seed=seed)
        result, _ = audit_case(fair, args.count, seed, 0.0, "corner", args.size)
        clean.setdefault("clean net, clean set", []).append(len(flagged_pictures(result)))
        for mark in KINDS:
            model = train_shape_model(marked_share=args.train_share, mark=mark, corner="bottom-right", seed=seed)
            for share in SHARES:
                result, marked = audit_case(model, args.count, seed, share, mark, args.size)
                got = flagged_pictures(result)
                hits = len(got & set(np.flatnonzero(marked).tolist()))
                rows.setdefault((mark, share), []).append((hits, len(got), int(marked.sum())))
            result, _ = audit_case(model, args.count, seed, 0.0, mark, args.size)
            clean.setdefault(f"{mark} net, clean set", []).append(len(flagged_pictures(result)))
    print(f"Training share {args.train_share:.0%}, seeds {args.seeds}, {args.count} pictures a set, maps {args.size}²")
    print()
    print("| mark | share of squares | marked | flagged (per seed) | precision | recall | flagged at all |")
    print("|---|---|---|---|---|---|---|")
    for (mark, share), found in rows.items():
        hits = sum(h for h, _, _ in found)
        flagged = sum(f for _, f, _ in found)
        marked = sum(m for _, _, m in found)
        precision = f"{hits / flagged:.2f}" if flagged else "–"
        per_seed = ", ".join(str(f) for _, f, _ in found)
        every = sum(f > 0 for _, f, _ in found)
        print(
            f"| {mark} | {share:.0%} | {marked // len(found)} | {per_seed} | {precision} | {hits / marked:.2f} | "
            f"{every} of {len(found)} |"
        )
    for name, counts in clean.items():
        print(
            f"| {name} | 0% | 0 | {', '.join(map(str, counts))} | – | – | {sum(c > 0 for c in counts)} of {len(counts)} |"
        )
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
