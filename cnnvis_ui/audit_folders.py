"""Where the Audit page's folders live, and freeing the zips of sessions that have gone. Kept apart from
`cnnvis_ui.audit` (which imports the audit engine, scikit-learn and plotly: seconds) because the server's upload
Reaper calls `remove_uploads_of_gone_sessions` from the entry script's start, before anyone opens the Audit page.

Layout: CNNVIS_AUDIT_ROOT (default <tmp>/cnnvis-audit) holds the demo set and the operator's folders; an uploaded
zip is unpacked under uploads/<browser session id>/, private to that session and deleted once it has gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from cnnvis_engine.images import within

DEMO_FOLDER = "tank-photos"  # the bundled demo set, drawn on first use (`cnnvis_ui.audit.demo_folder`)


def audit_root() -> Path:
    root = Path(os.environ.get("CNNVIS_AUDIT_ROOT") or Path(tempfile.gettempdir()) / "cnnvis-audit")
    root.mkdir(parents=True, exist_ok=True)
    return Path(os.path.realpath(root))


def inside_root(path: Path, root: Path) -> bool:
    """Whether `path`'s real path (every link followed) lies under `root` (itself a real path)."""
    return within(os.path.realpath(path), str(root))


def subfolders(folder: Path, root: Path) -> list[Path]:
    """`folder`'s subfolders that are not hidden and whose real paths stay under `root`."""
    return [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir() and inside_root(p, root)]


def offered_folders(root: Path | None = None, *, owner: str | None = None) -> list[str]:
    """The folders a visitor can pick, relative to the root: the demo set (drawn when first audited), every folder
    under the root, then the zips `owner` (this browser session) uploaded, under `uploads/<owner>/`. Another
    session's uploads are never offered. Light: a link's folder is checked against it before the page imports the
    audit engine."""
    root = root or audit_root()
    found = sorted({DEMO_FOLDER, *(p.name for p in subfolders(root, root) if p.name != "uploads")})
    mine = root / "uploads" / owner if owner else None
    if mine is not None and mine.is_dir() and not mine.is_symlink() and inside_root(mine, root):
        found += sorted(f"uploads/{owner}/{p.name}" for p in subfolders(mine, root))
    return found


def class_folders(folder_name: str, root: Path | None = None, *, owner: str | None = None) -> list[str]:
    """The class folders' names of the offered folder `folder_name` ([] if it is not offered or not there yet)."""
    root = root or audit_root()
    if folder_name not in offered_folders(root, owner=owner) or not (root / folder_name).is_dir():
        return []
    return sorted(p.name for p in subfolders(root / folder_name, root))


def remove_uploads_of_gone_sessions(still_there: Callable[[str], bool], root: Path | None = None) -> list[str]:
    """Delete `uploads/<session>/` of every session `still_there` says is no longer there (the uploads Reaper calls
    this once the session has been gone its grace time); the owners whose uploads were removed."""
    uploads = (root or audit_root()) / "uploads"
    if not uploads.is_dir() or uploads.is_symlink():
        return []
    removed = []
    for folder in uploads.iterdir():
        if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir() or still_there(folder.name):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed
