"""Which pictures an audit reads, with their labels: a folder with one subfolder per class (torchvision's
ImageFolder layout), a flat folder, a list of paths, or a CSV file of `path,label` rows.

Files that are not pictures (by extension) are skipped and listed with the reason, never silently dropped;
pictures that fail to decode are skipped and listed later, by `maps.stream_maps`.

A folder is its own fence: every file and subfolder listed is checked on its real path, one by one, so a link
(to a file or to a folder) that leads out of the folder is skipped and listed, never followed; pipes, devices
and sockets are listed as skipped and never opened. The set remembers the folder (`bound`) and the pictures are
opened through `decode_image(..., inside=bound)`, which checks the real path again on the file it opened. A CSV
or a list names its files itself and is read as named.
"""

from __future__ import annotations

import csv
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError
from ..images import UPLOAD_EXTENSIONS, within


class AuditError(EngineError):
    """The audit's input cannot be used (missing, empty, wrongly labelled); the message says why."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class ImageSet:
    """The pictures to audit, in input order, and their labels (None where none is known)."""

    paths: tuple[Path, ...]
    labels: tuple[str | None, ...]
    skipped: tuple[Skipped, ...] = ()
    root: Path | None = None  # the folder the paths are relative to in reports, if any
    bound: Path | None = None  # the real folder every picture must lie in when opened (a folder read); None: any

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, index: int) -> str:
        """The picture's path relative to the set's folder (its file name otherwise), for reports."""
        path = self.paths[index]
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return path.name


ImageSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | ImageSet


def read_image_set(images: ImageSource, labels: Sequence[str | int | None] | None = None) -> ImageSet:
    """The pictures named by `images`: a folder (with class subfolders, or flat), a `.csv` of `path,label`
    (a header row is allowed; relative paths are taken from the CSV's folder) or a list of paths, with
    `labels` one per path; an ImageSet is taken as it is. Raises AuditError for a missing path, an empty set or
    mismatched labels."""
    if isinstance(images, ImageSet):
        found = images
    elif isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if not path.exists():
            raise AuditError(f"There is no file or folder at {path}.")
        if path.is_dir():
            found = _read_folder(path)
        elif path.suffix.lower() == ".csv":
            found = _read_csv(path)
        else:
            found = _read_list([path], None, None)
        if labels is not None:
            raise AuditError("Labels come from the folder names or the CSV; do not pass `labels` as well.")
    else:
        listed = [Path(p) for p in images]
        if labels is not None and len(labels) != len(listed):
            raise AuditError(f"There are {len(listed)} pictures but {len(labels)} labels; give one label per picture.")
        found = _read_list(listed, labels, None)
    if not found.paths:
        what = f"; skipped {len(found.skipped)} files that are not pictures" if found.skipped else ""
        raise AuditError(f"There are no pictures ({', '.join(UPLOAD_EXTENSIONS)}) to audit{what}.")
    return found


def is_picture(path: Path) -> bool:
    return path.suffix.lower().lstrip(".") in UPLOAD_EXTENSIONS


LEAVES = "a link that leads outside the folder, so it is not followed"
SPECIAL = "not a regular file (a pipe, a device or a socket), so it is not opened"
LOOP = "a link to a folder already read, so it is not read again"


def _read_folder(folder: Path) -> ImageSet:
    bound = Path(os.path.realpath(folder))
    skipped: list[Skipped] = []
    entries = _entries(folder, folder, bound, skipped)
    classes = [path for path, is_dir in entries if is_dir and not path.name.startswith(".")]
    paths: list[Path] = []
    labels: list[str | None] = []
    if classes:  # ImageFolder: one subfolder per class; loose files beside them are not labelled
        for path, is_dir in entries:
            if not is_dir:
                skipped.append(Skipped(path.relative_to(folder).as_posix(), "outside the class folders"))
        seen = {bound}
        for cls in classes:
            for file in _files_under(cls, folder, bound, skipped, seen):
                if is_picture(file):
                    paths.append(file)
                    labels.append(cls.name)
                else:
                    skipped.append(Skipped(file.relative_to(folder).as_posix(), "not a picture (by its extension)"))
    else:
        for file, is_dir in entries:
            if is_dir:
                continue
            if is_picture(file):
                paths.append(file)
                labels.append(None)
            else:
                skipped.append(Skipped(file.name, "not a picture (by its extension)"))
    return ImageSet(tuple(paths), tuple(labels), tuple(skipped), folder, bound)


def _entries(directory: Path, folder: Path, bound: Path, skipped: list[Skipped]) -> list[tuple[Path, bool]]:
    """The folders and regular files directly in `directory`, by name, as (path, is a folder); each checked on its
    own real path. Links leading outside `bound`, links to nothing and special files are listed in `skipped`."""
    out: list[tuple[Path, bool]] = []
    for path in sorted(directory.iterdir()):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink() and not within(os.path.realpath(path), str(bound)):
            skipped.append(Skipped(name, LEAVES))
            continue
        try:
            mode = path.stat().st_mode  # the link's target, now known to lie inside
        except OSError:
            skipped.append(Skipped(name, "a link to nothing, or a file that cannot be looked at"))
            continue
        if stat.S_ISDIR(mode):
            out.append((path, True))
        elif stat.S_ISREG(mode):
            out.append((path, False))
        else:
            skipped.append(Skipped(name, SPECIAL))
    return out


def _files_under(directory: Path, folder: Path, bound: Path, skipped: list[Skipped], seen: set[Path]) -> list[Path]:
    """Every regular file under `directory`, depth first by name; a folder reached twice (a link loop) once."""
    files: list[Path] = []
    stack: list[tuple[Path, bool]] = [(directory, True)]
    while stack:
        path, is_dir = stack.pop()
        if not is_dir:
            files.append(path)
            continue
        real = Path(os.path.realpath(path))
        if real in seen or not within(str(real), str(bound)):
            skipped.append(Skipped(path.relative_to(folder).as_posix(), LOOP if real in seen else LEAVES))
            continue
        seen.add(real)
        stack += reversed(_entries(path, folder, bound, skipped))
    return files


def _read_csv(path: Path) -> ImageSet:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() in ("path", "file", "image", "filename"):
        rows = rows[1:]
    listed, labels = [], []
    for row in rows:
        file = Path(row[0].strip())
        listed.append(file if file.is_absolute() else path.parent / file)
        labels.append(row[1].strip() if len(row) > 1 and row[1].strip() else None)
    return _read_list(listed, labels, path.parent)


def _read_list(listed: list[Path], labels: Sequence[str | int | None] | None, root: Path | None) -> ImageSet:
    paths, kept, skipped = [], [], []
    for i, file in enumerate(listed):
        label = None if labels is None or labels[i] is None else str(labels[i])
        try:
            mode = file.stat().st_mode
        except OSError:
            mode = None
        if mode is None:
            skipped.append(Skipped(str(file), "no such file"))
        elif not stat.S_ISREG(mode):
            skipped.append(Skipped(str(file), "a folder, not a picture" if stat.S_ISDIR(mode) else SPECIAL))
        elif not is_picture(file):
            skipped.append(Skipped(str(file), "not a picture (by its extension)"))
        else:
            paths.append(file)
            kept.append(label)
    return ImageSet(tuple(paths), tuple(kept), tuple(skipped), root)
