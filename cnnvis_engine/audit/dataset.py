"""Which pictures an audit reads, with their labels: a folder with one subfolder per class (torchvision's
ImageFolder layout), a flat folder, a list of paths, or a CSV file of `path,label` rows.

Files that are not pictures (by extension) are skipped and listed with the reason, never silently dropped;
pictures that fail to decode are skipped and listed later, by `maps.stream_maps`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError
from ..images import UPLOAD_EXTENSIONS


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


ImageSource = "str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | ImageSet"


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


def _read_folder(folder: Path) -> ImageSet:
    entries = sorted(folder.iterdir())
    classes = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    paths: list[Path] = []
    labels: list[str | None] = []
    skipped: list[Skipped] = []
    if classes:  # ImageFolder: one subfolder per class; loose files beside them are not labelled
        for entry in entries:
            if entry.is_file():
                skipped.append(Skipped(entry.relative_to(folder).as_posix(), "outside the class folders"))
        for cls in classes:
            for file in sorted(p for p in cls.rglob("*") if p.is_file()):
                if is_picture(file):
                    paths.append(file)
                    labels.append(cls.name)
                else:
                    skipped.append(Skipped(file.relative_to(folder).as_posix(), "not a picture (by its extension)"))
    else:
        for file in entries:
            if not file.is_file():
                continue
            if is_picture(file):
                paths.append(file)
                labels.append(None)
            else:
                skipped.append(Skipped(file.name, "not a picture (by its extension)"))
    return ImageSet(tuple(paths), tuple(labels), tuple(skipped), folder)


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
        if not file.is_file():
            skipped.append(Skipped(str(file), "no such file"))
        elif not is_picture(file):
            skipped.append(Skipped(str(file), "not a picture (by its extension)"))
        else:
            paths.append(file)
            kept.append(label)
    return ImageSet(tuple(paths), tuple(kept), tuple(skipped), root)
