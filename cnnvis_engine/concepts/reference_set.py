"""Which pictures a reference index reads: a list of pictures, an image folder, a zip of pictures, or the bundled
sample photos ("samples").

Folders and lists go through the audit's readers (`audit.dataset.read_image_set`: the folder is its own fence,
links out of it and special files are skipped and listed). A zip is read from its central directory alone until a
member is opened: members that are not pictures by extension, that name a path outside the archive ("../x",
"/x"), that are encrypted, or whose declared size exceeds the image size limit (`images.MAX_FILE_BYTES`) are
skipped and listed; a member is inflated at most to that limit, then decoded by `decode_image` with its own
checks. Pictures given in memory (PIL images, decoded images) are taken as they are.

A `ReferenceSet` is a plain frozen value (paths, member names, in-memory pictures), so Ray workers can be handed
it and open the same pictures. Its `fingerprint` changes whenever a picture may have: file names, sizes and
modification times (a zip: the archive's, and its members' names, sizes and CRCs), or the pictures' own hashes.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from ..audit.dataset import AuditError, Skipped, is_picture, read_image_set
from ..errors import EngineError, ImageError
from ..images import MAX_FILE_BYTES, DecodedImage, decode_image
from ..samples import list_samples

SAMPLES = "samples"  # `images="samples"`: the bundled sample photos
MAX_ZIP_MEMBERS = 100_000

Picture = Image.Image | DecodedImage
ReferenceSource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Sequence[Picture]


class ReferenceSetError(EngineError):
    """The reference pictures cannot be used (missing, empty, an unreadable zip); the message says why."""


@dataclass(frozen=True)
class ReferenceSet:
    """The reference pictures in order: files (`paths`), members of the zip `archive`, or pictures in memory."""

    names: tuple[str, ...]  # shown in the atlas: the path in the folder or zip, the sample's key, "picture 3"
    paths: tuple[Path, ...] = ()  # the files, or the zip members' names as PurePosixPath-like Paths
    archive: Path | None = None  # the zip the members lie in
    bound: Path | None = None  # a folder every file must lie in when opened
    pictures: tuple[Picture, ...] = ()  # pictures given in memory
    skipped: tuple[Skipped, ...] = ()
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> DecodedImage:
        """Picture `index`, decoded with `decode_image`'s checks; raises ImageError if it cannot be read."""
        if self.pictures:
            picture = self.pictures[index]
            return picture if isinstance(picture, DecodedImage) else decode_image(picture)
        if self.archive is not None:
            return decode_image(_read_member(self.archive, self.paths[index].as_posix()))
        return decode_image(self.paths[index], inside=self.bound)


def read_reference_set(images: ReferenceSource) -> ReferenceSet:
    """The pictures named by `images` (see the module's docstring); ReferenceSetError for a missing path, a bad zip
    or a set without pictures."""
    if isinstance(images, str) and images == SAMPLES:
        paths = tuple(s.path for s in list_samples())
        return ReferenceSet(tuple(s.key for s in list_samples()), paths, fingerprint=_files_fingerprint(paths))
    if isinstance(images, (str, os.PathLike)) and Path(images).suffix.lower() == ".zip" and Path(images).is_file():
        return _read_zip(Path(images))
    if not isinstance(images, (str, os.PathLike)):
        listed = list(images)
        if listed and all(isinstance(p, (Image.Image, DecodedImage)) for p in listed):
            pictures: tuple[Picture, ...] = tuple(listed)  # type: ignore[arg-type]
            digest = hashlib.sha256("|".join(_picture_hash(p) for p in pictures).encode()).hexdigest()
            return ReferenceSet(
                tuple(f"picture {i}" for i in range(len(pictures))), pictures=pictures, fingerprint=digest
            )
        if any(isinstance(p, (Image.Image, DecodedImage)) for p in listed):
            raise ReferenceSetError("Give the reference pictures either all as files or all as pictures, not mixed.")
        images = [Path(p) for p in listed]  # type: ignore[arg-type]
    try:
        found = read_image_set(images)  # type: ignore[arg-type]
    except AuditError as error:
        raise ReferenceSetError(str(error).replace(" to audit", " in the reference set")) from error
    names = tuple(found.name(i) for i in range(len(found)))
    return ReferenceSet(
        names, found.paths, bound=found.bound, skipped=found.skipped, fingerprint=_files_fingerprint(found.paths)
    )


def _files_fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        info = path.stat()
        digest.update(f"{os.path.realpath(path)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _picture_hash(picture: Picture) -> str:
    return picture.sha256 if isinstance(picture, DecodedImage) else decode_image(picture).sha256


def _read_zip(archive: Path) -> ReferenceSet:
    try:
        with zipfile.ZipFile(archive) as opened:
            members = opened.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ReferenceSetError(f"{archive.name} is not a zip file that can be read.") from error
    if len(members) > MAX_ZIP_MEMBERS:
        raise ReferenceSetError(
            f"{archive.name} holds {len(members):,} files; a reference zip may hold {MAX_ZIP_MEMBERS:,}."
        )
    names: list[str] = []
    skipped: list[Skipped] = []
    info = archive.stat()
    digest = hashlib.sha256(f"{os.path.realpath(archive)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    for member in sorted(members, key=lambda m: m.filename):
        name = member.filename
        if member.is_dir() or PurePosixPath(name).name.startswith("."):
            continue
        reason = _member_refusal(member)
        if reason:
            skipped.append(Skipped(name, reason))
            continue
        names.append(name)
        digest.update(f"{name}|{member.file_size}|{member.CRC}\n".encode())
    if not names:
        raise ReferenceSetError(f"{archive.name} holds no pictures to use as references.")
    return ReferenceSet(
        tuple(names),
        tuple(Path(n) for n in names),
        archive=archive,
        skipped=tuple(skipped),
        fingerprint=digest.hexdigest(),
    )


def _member_refusal(member: zipfile.ZipInfo) -> str:
    """Why a zip member is not read (empty when it is read)."""
    path = PurePosixPath(member.filename.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        return "a path that leads outside the zip, so it is not read"
    if member.flag_bits & 0x1:
        return "encrypted, so it is not read"
    if not is_picture(Path(path.name)):
        return "not a picture (by its extension)"
    if member.file_size > MAX_FILE_BYTES:
        return f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB when unpacked, so it is not read"
    return ""


def _read_member(archive: Path, name: str) -> bytes:
    """The member's bytes, inflated at most to MAX_FILE_BYTES (ImageError beyond: its declared size lied)."""
    try:
        with zipfile.ZipFile(archive) as opened, opened.open(name) as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError) as error:
        raise ImageError(f"{name} in {archive.name} cannot be read from the zip.") from error
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name} in {archive.name} unpacks to more than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
    return data
