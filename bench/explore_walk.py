"""Which of the project's modules one Explore page run touches, from the picture into the engine and back.

    python bench/explore_walk.py [--image sample:coffee]

Runs the Explore page once through Streamlit's AppTest with a profiler on every thread, and lists the project
modules (cnnvis_engine, cnnvis_ui, pages) whose functions were called, with how many distinct functions each.
The first run loads the default model; the walk is counted on a second run with a new image, so model loading
and the sidebar's first setup are left out (a new picture: decode, trace, explain, draw). `--scope explanation`
counts only what runs inside `views.explained_views`: the picture into the engine and back as panels.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections import defaultdict
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
        help="page: the whole run; explanation: only inside views.explained_views, the picture's way "
        "into the engine and back as panels (the standing panels and each extra one)",
    )
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    from cnnvis_ui import state

    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=300).run()
    called: dict[str, set[str]] = defaultdict(set)
    roots = {str(ROOT / name) for name in ("cnnvis_engine", "cnnvis_ui", "pages")}

    from cnnvis_ui import views

    inside = threading.local()
    original = views.explained_views

    def scoped(*args, **kwargs):
        inside.on = True
        try:
            return original(*args, **kwargs)
        finally:
            inside.on = False

    if args.scope == "explanation":
        views.explained_views = scoped

    def profile(frame, event, arg):
        if event == "call" and (args.scope == "page" or getattr(inside, "on", False)):
            path = frame.f_code.co_filename
            if any(path.startswith(root) for root in roots):
                called[str(Path(path).relative_to(ROOT))].add(frame.f_code.co_name)

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


if __name__ == "__main__":
    main()
