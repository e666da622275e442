"""torch's CPU threads in a server: the channel gallery and the Sanity test quiet, beside a competing CPU-bound
process, and as 4 concurrent sessions, with torch's default threads ("before") and the dashboard's sizing
(cnnvis_ui/threads.py, "after"). Prints a Markdown table.

    python -m bench.threads_bench [--timeout 120] [--rounds 3] [--tasks gallery,sanity] [--policies default,sized]

Each task and policy runs in a child process (a fresh torch, its own thread setting, glibc's malloc tuned as in
the dashboard's process) that loads the embedded default model (efficientnet_lite0), runs the task once to warm
up, then times `--rounds` rounds; a child whose rounds take over `--timeout` seconds each is stopped. Each round
times the task quiet, beside a competitor (one `while True: pass` process) and as 4 sessions (4 threads of one
process, as Streamlit runs 4 browser sessions, started together; the slowest counts), back to back, so that the
three see the machine in the same state: on this shared 2-core machine one run varies by ±30% from minute to
minute. The table gives each condition's median and the median of its per-round ratio to the quiet time.
  gallery: what the Layers page's "Show what these channels look for" computes (8 channels, 64 px, 64 steps)
  sanity:  the Sanity page's cascading randomisation test of Grad-CAM on the cat
Acceptance (issue 15): under the competitor, within 2x of quiet; 4 sessions each within 3x of one alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

POLICIES = {"default": "torch's default threads", "sized": "sized (cnnvis_ui/threads.py)"}
CONDITIONS = ("quiet", "competitor", "4 sessions")


def _task(name: str):
    """(warm-up, task) for `name`, as functions of no arguments, the model and image loaded (not timed)."""
    from cnnvis_engine import Explainer, load_model
    from cnnvis_engine.featurevis import render_channels
    from cnnvis_engine.images import decode_image
    from cnnvis_engine.methods import default_layer
    from cnnvis_engine.samples import sample_path
    from cnnvis_engine.sanity import randomisation_test

    bundle = load_model("efficientnet_lite0")
    cat = decode_image(sample_path("cat"))
    if name == "gallery":
        layer = default_layer(Explainer(bundle).trace(cat), "feature_maps")
        return (
            lambda: render_channels(bundle, layer, list(range(8)), size=64, steps=2, seed=0),
            lambda: render_channels(bundle, layer, list(range(8)), size=64, steps=64, seed=0),
        )
    test = lambda: randomisation_test(bundle, cat, "gradcam", mode="cascading")
    return test, test  # warmed up by a whole test (about a second): its first run randomises every layer once


def child(task: str, policy: str, rounds: int) -> None:
    """Run in a child process: `rounds` rounds, each timing the task quiet, beside a competitor and as 4 sessions
    started together (the slowest of them), back to back, so the three see the machine in the same state; print
    {"rounds": [[quiet, beside, four], ...], "threads": n} as JSON."""
    from cnnvis_ui import threads

    threads.tune_malloc()  # as the dashboard's process does
    warm, work = _task(task)
    sizing = threads.ThreadPolicy(threads.budget()) if policy == "sized" else None

    def once(fn=work) -> float:
        start = time.perf_counter()
        if sizing is None:
            fn()
        else:
            with sizing.computing():
                fn()
        return time.perf_counter() - start

    def slowest(sessions: int) -> float:
        """Streamlit runs each browser session's script on a thread of its own: so do these."""
        times: list[float] = []
        runners = [threading.Thread(target=lambda: times.append(once())) for _ in range(sessions)]
        for runner in runners:
            runner.start()
        for runner in runners:
            runner.join()
        return max(times)

    def beside_competitor() -> float:
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.3)  # running before the task starts
            return slowest(1)
        finally:
            competitor.kill()
            competitor.wait()

    once(warm)  # first-call costs (allocations, kernels) are not what the bench is about
    measured = [[slowest(1), beside_competitor(), slowest(4)] for _ in range(rounds)]
    import torch

    print(json.dumps({"rounds": measured, "threads": torch.get_num_threads()}))


def run_case(task: str, policy: str, timeout: float, rounds: int) -> list[str]:
    """The table's cells for one task and policy: each condition's median over the rounds, and for the other two
    the median of their per-round ratios to the quiet time."""
    command = [sys.executable, "-m", "bench.threads_bench", "--child", task, "--policy", policy]
    try:
        done = subprocess.run(
            [*command, "--rounds", str(rounds)], capture_output=True, text=True, timeout=timeout * rounds, check=False
        )
    except subprocess.TimeoutExpired:
        return [f"> {timeout:.0f} s a round"] * len(CONDITIONS)
    if done.returncode != 0:
        return ["failed: " + done.stderr.strip().splitlines()[-1]] * len(CONDITIONS)
    measured = json.loads(done.stdout.strip().splitlines()[-1])["rounds"]
    quiet, *others = zip(*measured)
    cells = [f"{statistics.median(quiet):.1f} s"]
    for times in others:
        ratio = statistics.median(t / q for t, q in zip(times, quiet))
        cells.append(f"{statistics.median(times):.1f} s (**{ratio:.1f}×**)")
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=120, help="seconds a round may take before a case is stopped")
    parser.add_argument("--tasks", default="gallery,sanity")
    parser.add_argument("--policies", default="default,sized")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="sized", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per case; the table gives the median")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.policy, args.rounds)
        return
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| task | threads | " + " | ".join(CONDITIONS) + " |")
    print("|---|---|" + "---|" * len(CONDITIONS))
    for task in args.tasks.split(","):
        for policy in args.policies.split(","):
            cells = run_case(task, policy, args.timeout, args.rounds)
            print(f"| {task} | {POLICIES[policy]} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
