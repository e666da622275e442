"""The Audit page's zip uploads: bounded (size, number of files, uncompressed total), every member checked before
anything is written (no path climbing out, no links, devices, overlaps or forged sizes), unpacked into a hidden
folder and renamed into place, private to the browser session that uploaded it."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import re
import shutil
import stat
import tempfile
import unicodedata
import zipfile
import zlib
from pathlib import Path

from cnnvis_engine.audit.dataset import AuditError

from .audit_folders import audit_root

MAX_ZIP_BYTES = 20 * 1024 * 1024
MAX_ZIP_FILES = 2000
MAX_UNZIPPED_BYTES = 200 * 1024 * 1024
MAX_NAME_CHARS = 1024  # a member's whole path; each folder level at most 255 bytes, as on most file systems
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


def unpack_zip(data: bytes, root: Path | None = None, *, owner: str) -> str:
    """Unpack an uploaded zip under root/uploads/<owner>/zip-<its sha256>, private to `owner` (the uploading
    browser session, whose uploads are deleted once it has gone); returns that folder relative to the root.

    Every member is checked before anything is written (`zip_plan`), then the zip is unpacked into a fresh hidden
    folder beside and renamed into place in one step: the folder exists only complete, so no marker file (which
    a member could forge) says whether it is, and a refusal or crash half-way leaves nothing behind."""
    root = root or audit_root()
    if len(data) > MAX_ZIP_BYTES:
        raise AuditError(f"The zip is {len(data) / 2**20:.1f} MB; the limit is {MAX_ZIP_BYTES // 2**20} MB.")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError) as error:
        raise AuditError("This file is not a zip archive that can be read.") from error
    with archive:
        plan = zip_plan(archive, len(data))
        if not re.fullmatch(r"[A-Za-z0-9_ -]{1,64}", owner) or owner.strip() != owner:
            raise AuditError("This upload does not belong to a browser session, so it is not kept.")
        name = f"{owner}/zip-{hashlib.sha256(data).hexdigest()[:16]}"
        uploads = root / "uploads" / owner
        uploads.mkdir(parents=True, exist_ok=True)
        target = root / "uploads" / name
        if target.is_dir() and not target.is_symlink():  # the same zip, unpacked before: it is complete
            return f"uploads/{name}"
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=uploads))
        try:
            _unpack(archive, plan, partial)
            try:
                os.rename(partial, target)
            except OSError:  # another session unpacked the same zip meanwhile: keep theirs
                if not target.is_dir():
                    raise
                shutil.rmtree(partial)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return f"uploads/{name}"


def zip_plan(archive: zipfile.ZipFile, size: int) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The members to unpack with their path parts, or an AuditError with one sentence for the first member that
    cannot be unpacked as a plain file or folder under the upload's own folder."""
    entries = archive.infolist()
    if len(entries) > MAX_ZIP_FILES:
        raise AuditError(f"The zip holds {len(entries):,} files and folders; the limit is {MAX_ZIP_FILES:,}.")
    files = [m for m in entries if not m.filename.endswith("/")]
    if not files:
        raise AuditError("The zip is empty: it holds no files to audit.")
    if sum(m.file_size for m in files) > MAX_UNZIPPED_BYTES:
        raise AuditError(f"The zip unpacks to more than {MAX_UNZIPPED_BYTES // 2**20} MB.")
    _refuse_overlaps(entries, size)
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
    seen: dict[tuple[str, bool], str] = {}  # (the name as a case-blind file system sees it, a folder?) -> name
    folders: set[str] = set()
    for m in entries:
        parts = _member_parts(m)
        key = "/".join(unicodedata.normalize("NFC", part).casefold() for part in parts)
        is_dir = m.filename.endswith("/")
        earlier = seen.get((key, is_dir))
        if earlier is not None:
            what = (
                "twice"
                if earlier == m.filename
                else f"and '{_shown(earlier)}', which some file systems take for one name"
            )
            raise AuditError(f"The zip holds '{_shown(m.filename)}' {what}; it is refused.")
        seen[(key, is_dir)] = m.filename
        folders.update("/".join(key.split("/")[:depth]) for depth in range(1, len(parts) + is_dir))
        plan.append((m, parts))
    for (key, is_dir), name in seen.items():
        if not is_dir and key in folders:
            raise AuditError(
                f"The zip holds both a file and a folder named '{_shown(name)}'; one name cannot be both, so it "
                "is refused."
            )
    return plan


def _member_parts(m: zipfile.ZipInfo) -> tuple[str, ...]:
    """The parts of a member's path, or an AuditError saying in a sentence why the member is refused."""
    raw = m.orig_filename  # before zipfile cut it at a NUL byte
    shown = _shown(raw)
    if any(ord(c) < 32 or ord(c) == 127 for c in raw):
        raise AuditError(f"The zip's member name '{shown}' holds control characters (a NUL, say); it is refused.")
    name = raw.replace("\\", "/")
    parts = name.rstrip("/").split("/")
    if name.startswith("/") or ".." in parts or re.match(r"[A-Za-z]:", name):
        raise AuditError(f"The zip's member name '{shown}' points outside its folder; it is refused.")
    if "\\" in raw:
        raise AuditError(
            f"The zip's member name '{shown}' separates folders with backslashes (a Windows path); zip the folder "
            "again with a standard tool."
        )
    if ":" in raw:
        raise AuditError(
            f"The zip's member name '{shown}' holds a colon (a drive or hidden stream on Windows); it is refused."
        )
    if len(raw) > MAX_NAME_CHARS or any(len(part.encode()) > 255 for part in parts):
        raise AuditError(
            f"The zip's member name '{shown}' is too long ({len(raw):,} characters; at most 255 bytes a folder level "
            f"and {MAX_NAME_CHARS:,} in all); it is refused."
        )
    if any(part in ("", ".") for part in parts):
        raise AuditError(f"The zip's member name '{shown}' holds an empty or '.' folder level; it is refused.")
    mode = m.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise AuditError(f"The zip's member '{shown}' is a link; links are refused.")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise AuditError(f"The zip's member '{shown}' is a device, pipe or socket, not a file; it is refused.")
    if m.filename.endswith("/") and (m.file_size or m.compress_size):
        raise AuditError(f"The zip's member '{shown}' is a folder entry that holds data; it is refused.")
    if m.flag_bits & 0x1:
        raise AuditError(f"The zip's member '{shown}' is encrypted (password-protected); unpack it and zip it again.")
    if m.compress_type not in ZIP_METHODS:
        raise AuditError(
            f"The zip's member '{shown}' is compressed in a way this server cannot unpack (method "
            f"{m.compress_type}); zip it again with the usual (deflate) compression."
        )
    return tuple(parts)


def _refuse_overlaps(entries: list[zipfile.ZipInfo], size: int) -> None:
    """Entries whose data overlap (one local header quoted inside another's data: the zip bomb of
    CVE-2024-0450, which Python 3.11.7's zipfile does not catch) or reach past the central directory."""
    spans = sorted((m.header_offset, m.header_offset + 30 + _name_bytes(m) + m.compress_size) for m in entries)
    for (_, end), (start, _) in itertools.pairwise(spans):
        if start < end:
            raise AuditError("The zip's entries overlap each other (a zip bomb's trick); it is refused.")
    if spans and spans[-1][1] > size:
        raise AuditError("The zip's entries reach past its end; it is damaged, so it is refused.")


def _name_bytes(m: zipfile.ZipInfo) -> int:
    """The length of a member's name as stored (UTF-8 when flagged, else code page 437); 0 if it cannot be told."""
    try:
        return len(m.orig_filename.encode("utf-8" if m.flag_bits & 0x800 else "cp437"))
    except UnicodeEncodeError:
        return 0


def _unpack(archive: zipfile.ZipFile, plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]], folder: Path) -> None:
    """Write the planned members under `folder` (fresh and empty): new files only, never through a link."""
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for m, parts in plan:
        path = folder.joinpath(*parts)
        if m.filename.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(m) as source:
                content = source.read(m.file_size + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, RuntimeError, NotImplementedError, OSError) as e:
            raise AuditError(f"The zip's member '{_shown(m.filename)}' is damaged and cannot be unpacked.") from e
        written += len(content)
        if len(content) != m.file_size or written > MAX_UNZIPPED_BYTES:
            raise AuditError("The zip's sizes do not match its contents; it is refused.")
        with os.fdopen(os.open(path, flags, 0o644), "wb") as handle:
            handle.write(content)


def _shown(name: str) -> str:
    """A member name fit for a sentence: control characters escaped, at most 80 characters."""
    text = "".join(c if 32 <= ord(c) != 127 else f"\\x{ord(c):02x}" for c in name)
    return text if len(text) <= 80 else text[:77] + "..."
