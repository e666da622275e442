"""Which of the project's modules one Explore page run touches, from the picture into the engine and back.

    python bench/explore_walk.py [--image sample:coffee]

Runs the Explore page once through Streamlit's AppTest with a profiler on every thread, and lists the project
modules (cnnvis_engine, cnnvis_ui, pages) whose functions were called, with how many distinct functions each.
The first run loads the default model; the walk is counted on a second run with a new image, so model loading
and the sidebar's first setup are left out (a new picture: decode, trace, explain, draw). `--scope explanation`
counts only what runs inside `Context.explained_views`: the picture into the engine and back as panels.

It also counts module re-entries: in the order the calls happen, each time the run goes back into a dashboard module
(cnnvis_ui, pages) it had already left for another dashboard module (views -> panels -> views is one). A layer that
hands its work one way (pages -> context -> views -> panels) re-enters few; one that calls back and forth, many.
A loop (the sidebar naming each layer through text.py) repeats its hops: the distinct ways back count each once.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--image", default="sample:coffee")
    parser.add_argument("--functions", action="store_true", help="name the functions called in each module")
    parser.add_argument(
        "--scope",
        choices=("page", "explanation"),
        default="page",
        help="page: the whole run; explanation: only inside Context.explained_views, the picture's way "
        "into the engine and back as panels (the standing panels and each extra one)",
    )
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    from cnnvis_ui import state

    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=300).run()
    called: dict[str, set[str]] = defaultdict(set)
    roots = {str(ROOT / name) for name in ("cnnvis_engine", "cnnvis_ui", "pages")}
    dashboard = tuple(str(ROOT / name) for name in ("cnnvis_ui", "pages"))
    walk: list[str] = []  # the dashboard modules entered, in call order, repeats in a row merged

    from cnnvis_ui.context import Context

    inside = threading.local()
    original = Context.explained_views

    def scoped(*args, **kwargs):
        inside.on = True
        try:
            return original(*args, **kwargs)
        finally:
            inside.on = False

    if args.scope == "explanation":
        Context.explained_views = scoped

    def profile(frame, event, arg):
        if event == "call" and (args.scope == "page" or getattr(inside, "on", False)):
            path = frame.f_code.co_filename
            if any(path.startswith(root) for root in roots):
                called[str(Path(path).relative_to(ROOT))].add(frame.f_code.co_name)
            if path.startswith(dashboard):
                module = str(Path(path).relative_to(ROOT))
                if not walk or walk[-1] != module:
                    walk.append(module)

    threading.setprofile(profile)
    sys.setprofile(profile)
    at.session_state[state.IMAGE] = args.image
    at.switch_page("pages/explore.py").run()
    sys.setprofile(None)
    threading.setprofile(None)
    assert not at.exception, at.exception
    for module, functions in sorted(called.items()):
        print(f"{len(functions):4d}  {module}" + (f"  ({', '.join(sorted(functions))})" if args.functions else ""))
    print(f"{len(called)} modules, {sum(map(len, called.values()))} functions")
    reentries = Counter(module for index, module in enumerate(walk) if module in walk[:index])
    detail = ", ".join(f"{module} {count}" for module, count in reentries.most_common())
    print(f"{sum(reentries.values())} module re-entries" + (f" ({detail})" if detail else ""))
    hops = {(walk[i - 1], module) for i, module in enumerate(walk) if module in walk[:i]}
    print(f"{len(hops)} distinct ways back (from -> re-entered module), a loop's repeats counted once")
    if args.functions:
        print("\n".join(f"      {a} -> {b}" for a, b in sorted(hops)))


if __name__ == "__main__":
    main()
