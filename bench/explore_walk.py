"""Which of the project's modules one Explore page run touches, from the picture into the engine and back.

    python bench/explore_walk.py [--image sample:coffee]

Runs the Explore page once through Streamlit's AppTest with a profiler on every thread, and lists the project
modules (cnnvis_engine, cnnvis_ui, pages) whose functions were called, with how many distinct functions each.
The first run loads the default model; the walk is counted on a second run with a new image, so model loading
and the sidebar's first setup are left out (a new picture: decode, trace, explain, draw).
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
    args = parser.parse_args()
    from streamlit.testing.v1 import AppTest

    from cnnvis_ui import state

    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=300).run()
    called: dict[str, set[str]] = defaultdict(set)
    roots = {str(ROOT / name) for name in ("cnnvis_engine", "cnnvis_ui", "pages")}

    def profile(frame, event, arg):
        if event == "call":
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
        print(f"{len(functions):4d}  {module}")
    print(f"{len(called)} modules, {sum(map(len, called.values()))} functions")


if __name__ == "__main__":
    main()
