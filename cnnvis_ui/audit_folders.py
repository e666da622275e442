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


def audit_root() -> Path:
    root = Path(os.environ.get("CNNVIS_AUDIT_ROOT") or Path(tempfile.gettempdir()) / "cnnvis-audit")
    root.mkdir(parents=True, exist_ok=True)
    return Path(os.path.realpath(root))


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
