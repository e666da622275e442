"""torch's CPU threads in a server: the channel gallery and the Sanity test quiet, beside a competing CPU-bound
process, and as 4 concurrent sessions, with torch's default threads ("before") and the dashboard's sizing
(cnnvis_ui/threads.py, "after"). Prints a Markdown table.

    python -m bench.threads_bench [--timeout 120] [--tasks gallery,sanity] [--policies default,sized]

Each case runs in a child process (a fresh torch, its own thread setting, glibc's malloc tuned as in the
dashboard's process) that loads the embedded default model (efficientnet_lite0), runs the task once to warm up,
then times it; a case over `--timeout` seconds is stopped and reported as "> timeout". The competitor is one
`while True: pass` process. The 4 sessions are 4 threads of one process, as Streamlit runs 4 browser sessions,
started together; the table gives the slowest.
  gallery: what the Layers page's "Show what these channels look for" computes (8 channels, 64 px, 64 steps)
  sanity:  the Sanity page's cascading randomisation test of Grad-CAM on the cat
Acceptance (issue 15): under the competitor, within 2x of quiet; 4 sessions each within 3x of one alone.
"""

from __future__ import annotations

import argparse
import json
import os
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
    from cnnvis_engine.samples import sample_path
    from cnnvis_engine.sanity import randomisation_test

    bundle = load_model("efficientnet_lite0")
    cat = decode_image(sample_path("cat"))
    if name == "gallery":
        layer = Explainer(bundle).trace(cat).default_layer("feature_maps")
        return (
            lambda: render_channels(bundle, layer, list(range(8)), size=64, steps=2, seed=0),
            lambda: render_channels(bundle, layer, list(range(8)), size=64, steps=64, seed=0),
        )
    return (
        lambda: randomisation_test(bundle, cat, "gradcam", mode="cascading", layers=[]),
        lambda: randomisation_test(bundle, cat, "gradcam", mode="cascading"),
    )


def child(task: str, policy: str, sessions: int) -> None:
    """Run in a child process: print {"times": [...], "threads": n} as JSON."""
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

    once(warm)  # a short warm-up: first-call costs (allocations, kernels) are not what the bench is about
    times: list[float] = []
    runners = [threading.Thread(target=lambda: times.append(once())) for _ in range(sessions)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    import torch

    print(json.dumps({"times": times, "threads": torch.get_num_threads()}))


def run_case(task: str, policy: str, condition: str, timeout: float) -> str:
    command = [
        sys.executable,
        "-m",
        "bench.threads_bench",
        "--child",
        task,
        "--policy",
        policy,
        "--sessions",
        "4" if condition == "4 sessions" else "1",
    ]
    competitor = None
    if condition == "competitor":
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 30, check=False)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s"
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    if done.returncode != 0:
        return "failed: " + done.stderr.strip().splitlines()[-1]
    times = json.loads(done.stdout.strip().splitlines()[-1])["times"]
    return f"{max(times):.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a case is stopped")
    parser.add_argument("--tasks", default="gallery,sanity")
    parser.add_argument("--policies", default="default,sized")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--policy", default="sized", help=argparse.SUPPRESS)
    parser.add_argument("--sessions", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.policy, args.sessions)
        return
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("| task | threads | " + " | ".join(CONDITIONS) + " |")
    print("|---|---|" + "---|" * len(CONDITIONS))
    for task in args.tasks.split(","):
        for policy in args.policies.split(","):
            cells = [run_case(task, policy, condition, args.timeout) for condition in CONDITIONS]
            print(f"| {task} | {POLICIES[policy]} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
