"""One job per module (issue #25): no module of the engine, the dashboard's helpers, the app package or the pages is
over 450 lines. A module that grows past it is split by job, not trimmed; the failure names it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cnnvis_engine", "cnnvis_ui", "cnnvis", "pages")
MAX_LINES = 450


def long_modules(root: Path, packages: Sequence[str] = PACKAGES, limit: int = MAX_LINES) -> dict[str, int]:
    """{module path relative to `root`: its line count} for every .py file under `packages` over `limit` lines."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            count = len(path.read_text(encoding="utf-8").splitlines())
            if count > limit:
                found[path.relative_to(root).as_posix()] = count
    return found


def test_no_module_is_over_450_lines():
    over = long_modules(ROOT)
    assert not over, "Over 450 lines, split by job: " + ", ".join(f"{m} ({n} lines)" for m, n in over.items())


def test_a_long_module_is_named(tmp_path: Path):
    (tmp_path / "pages" / "sub").mkdir(parents=True)
    (tmp_path / "pages" / "short.py").write_text("x = 1\n" * 450)
    (tmp_path / "pages" / "sub" / "long.py").write_text("x = 1\n" * 451)
    (tmp_path / "pages" / "notes.txt").write_text("x\n" * 1000)  # not a module
    assert long_modules(tmp_path, ("pages",)) == {"pages/sub/long.py": 451}
