"""Quick work beside nine sessions' slow work, with the queue of slow jobs off ("before") and on ("after").

    python -m bench.sessions_bench [--rounds 2] [--samples 3] [--window 30] [--limits off,1,2]

Each round of each setting runs in a child process (a fresh torch, `CNNVIS_SLOW_JOBS` set, glibc's malloc tuned as
in the dashboard's process) that loads the embedded default model (efficientnet_lite0) through the dashboard's
cached calls (cnnvis_ui/model_cache.py and result_cache.py, the same code the pages call, outside Streamlit: each
thread stands for a browser session, as Streamlit runs each session's script on a thread of its own), then:
  1. idle: times `--samples` quick explains, each Grad-CAM on a picture not seen before (the cat with a little
     fresh noise: a new sha256, so no cache hit), and one model load (resnet50, random weights, as a model switch
     does; not from the cache);
  2. loaded: starts 9 sessions, each asking for slow work again and again with new keys: 3 run the Sanity test
     (Grad-CAM, cascading), 3 the Layers page's channel gallery (8 channels, 64 px, 64 steps), 3 an extra method
     (SmoothGrad with the dashboard's settings); once all nine have asked, the same quick work is timed again, as
     the 10th session;
  3. keeps the nine going for at least `--window` seconds and prints the medians, their ratios, and the slow jobs
     the nine finished per minute under load (what the queue costs them).
The table gives, per setting, the median over rounds of each round's values. Target (issue 21): the quick explain
under load within 3x of idle. Not a test: timings depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time

SESSIONS = 9
KINDS = ("sanity", "gallery", "smoothgrad")


def child(samples: int, window: float) -> None:
    """Run in a child process (its `CNNVIS_SLOW_JOBS` already set): print one round's figures as JSON."""
    logging.disable(logging.WARNING)  # no "missing ScriptRunContext" line per drawing call outside a script run
    import numpy as np
    from PIL import Image

    from cnnvis_engine import Explainer, decode_image, load_model, sample_path
    from cnnvis_engine.methods import default_layer
    from cnnvis_ui import jobs, model_cache, result_cache, threads

    threads.tune_malloc()  # as the dashboard's process does
    model, key = "efficientnet_lite0", "efficientnet_lite0:embedded"
    explainer = model_cache.registry_explainer(model, "embedded")
    cat = np.asarray(decode_image(sample_path("cat")).image)
    fresh = np.random.default_rng(os.getpid())

    def new_picture():
        noisy = np.clip(cat.astype(np.int16) + fresh.integers(-3, 4, cat.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "PNG")
        return decode_image(buffer.getvalue())

    def quick_explain() -> float:
        image = new_picture()  # made before the clock starts: an upload is decoded before it is explained
        start = time.perf_counter()
        result_cache.explain(image.sha256, key, None, None, ("gradcam",), (), lambda: explainer, image)
        return time.perf_counter() - start

    def model_load() -> float:
        start = time.perf_counter()
        with threads.policy().computing():  # what model_cache.registry_explainer runs on a cache miss
            Explainer(load_model("resnet50", "random"), cache_size=model_cache.FORWARD_PASSES)
        return time.perf_counter() - start

    layer = default_layer(explainer.trace(new_picture()), "feature_maps")
    smooth = result_cache.freeze_options(result_cache.method_options("smoothgrad"))

    def slow_job(kind: str, session: int, turn: int, image) -> None:
        if kind == "sanity":
            target = (37 * session + turn) % 1000  # a new key each time: no cache hit
            result_cache.randomisation(image.sha256, key, None, target, "gradcam", "cascading", explainer, image)
        elif kind == "gallery":
            result_cache.channel_gallery(key, layer, tuple(range(8)), 64, 64, 1000 * session + turn, explainer)
        else:
            target = (37 * session + turn) % 1000
            result_cache.explain(image.sha256, key, None, target, ("smoothgrad",), smooth, lambda: explainer, image)

    quick_explain()  # first-call costs (allocations, kernels) are not what the bench is about
    idle = [quick_explain() for _ in range(samples)]
    idle_load = model_load()

    asked, done, all_asked, stop, count = [0], [0], threading.Event(), threading.Event(), threading.Lock()

    def session(number: int) -> None:
        kind, image, turn = KINDS[number % len(KINDS)], new_picture(), 0
        with count:
            asked[0] += 1
            if asked[0] == SESSIONS:
                all_asked.set()  # a moment early: the ninth is about to ask
        while not stop.is_set():
            slow_job(kind, number, turn, image)
            turn += 1
            with count:
                done[0] += 1

    for number in range(SESSIONS):
        threading.Thread(target=session, args=(number,), daemon=True).start()
    all_asked.wait()
    time.sleep(1.0)  # the first jobs under way (a bench may wait; nothing is asserted on it)
    started, done_before = time.perf_counter(), done[0]
    loaded = [quick_explain() for _ in range(samples)]
    loaded_load = model_load()
    time.sleep(max(0.0, window - (time.perf_counter() - started)))  # long enough to count finished slow jobs
    minutes = (time.perf_counter() - started) / 60
    stop.set()
    print(
        json.dumps(
            {
                "idle": statistics.median(idle),
                "loaded": statistics.median(loaded),
                "idle_load": idle_load,
                "loaded_load": loaded_load,
                "slow_per_minute": (done[0] - done_before) / minutes,
                "limit": jobs.gate().limit,
            }
        ),
        flush=True,
    )
    os._exit(0)  # the nine sessions are daemons mid-job: no need to drain the queue


def run_round(limit: str, samples: int, window: float, timeout: float) -> dict | str:
    env = {**os.environ, "CNNVIS_SLOW_JOBS": limit}
    command = [sys.executable, "-m", "bench.sessions_bench", "--child", "--samples", str(samples)]
    command += ["--window", str(window)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return f"> {timeout:.0f} s"
    if done.returncode != 0:
        return "failed: " + done.stderr.strip().splitlines()[-1]
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=int, default=3, help="quick explains timed idle and under load, each round")
    parser.add_argument("--limits", default="off,1,2", help="CNNVIS_SLOW_JOBS values to compare (off: no queue)")
    parser.add_argument("--window", type=float, default=30, help="seconds at least under load (to count slow jobs)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a round may take")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.samples, args.window)
        return
    print(f"{len(os.sched_getaffinity(0))} cores; load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(
        "| slow jobs at once | quick explain idle | under load | ratio | model load idle | under load | ratio "
        "| slow jobs done / min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for limit in args.limits.split(","):
        rounds = [run_round(limit, args.samples, args.window, args.timeout) for _ in range(args.rounds)]
        good = [r for r in rounds if isinstance(r, dict)]
        if not good:
            print(f"| {limit} | {rounds[0]} |")
            continue

        def median(name: str, good: list[dict] = good) -> float:
            return statistics.median(r[name] for r in good)

        explain_ratio = statistics.median(r["loaded"] / r["idle"] for r in good)
        load_ratio = statistics.median(r["loaded_load"] / r["idle_load"] for r in good)
        label = "no queue (off)" if limit in ("off", "0") else limit
        print(
            f"| {label} | {median('idle'):.2f} s | {median('loaded'):.2f} s | **{explain_ratio:.1f}×** "
            f"| {median('idle_load'):.1f} s | {median('loaded_load'):.1f} s | {load_ratio:.1f}× "
            f"| {median('slow_per_minute'):.0f} |",
            flush=True,
        )
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
