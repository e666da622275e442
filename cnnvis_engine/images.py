"""Decoding and validating user images into RGB PIL images.

`decode_image` accepts an upload's bytes, a file path or an in-memory PIL image and returns a fully
loaded RGB image. Every failure is an `ImageError` whose message is one plain sentence; every
conversion a person would want to know about (rotation, bit depth, transparency, frames) is
described in `DecodedImage.notes`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError, features

from .errors import ImageError

MAX_PIXELS = 40_000_000
MIN_SIDE = 8
WIDE_RATIO = 4.0
MAX_FILE_BYTES = 50 * 1024 * 1024  # an image file or upload (the dashboard's image uploader offers 50 MB)
MAX_FRAMES_COUNTED = 1000  # pages of a TIFF / frames of a GIF counted for the note; PIL's count is quadratic
FRAME_COUNT_SECONDS = 0.25  # and counting stops after this long, whatever the count
BASE_FORMATS: tuple[str, ...] = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
BASE_EXTENSIONS: tuple[str, ...] = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif")


def _optional_formats() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(PIL formats, file extensions) read here beyond the base six: AVIF where this Pillow was built with libavif
    (Pillow's own wheels are, since 11.2), HEIC/HEIF where the pillow-heif plugin is installed (the optional extra
    `cnnvis[heif]`: its wheel bundles libheif and an x265 encoder under the (L)GPL, so it is not a default)."""
    formats: list[str] = []
    extensions: list[str] = []
    if features.check("avif"):
        formats.append("AVIF")
        extensions.append("avif")
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        pillow_heif.register_heif_opener()
        formats.append("HEIF")
        extensions += ["heic", "heif"]
    return tuple(formats), tuple(extensions)


_EXTRA_FORMATS, _EXTRA_EXTENSIONS = _optional_formats()
SUPPORTED_FORMATS: tuple[str, ...] = BASE_FORMATS + _EXTRA_FORMATS
UPLOAD_EXTENSIONS: tuple[str, ...] = BASE_EXTENSIONS + _EXTRA_EXTENSIONS

_NAMES = ["PNG", "JPEG", "WebP", "BMP", "TIFF", "GIF"] + [{"AVIF": "AVIF", "HEIF": "HEIC"}[f] for f in _EXTRA_FORMATS]
FORMAT_WORDS = f"{', '.join(_NAMES[:-1])} or {_NAMES[-1]}"  # "PNG, JPEG, WebP, BMP, TIFF, GIF or AVIF"
_USE = f"use {FORMAT_WORDS}"
_DAMAGED = "The image file is cut short or damaged, so it cannot be read."
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_FRAME_WORDS = {
    "GIF": ("Animated GIF", "frames"),
    "WEBP": ("Animated WebP", "frames"),
    "TIFF": ("Multi-page TIFF", "pages"),
}


@dataclass(frozen=True)
class DecodedImage:
    """An image ready for the models: mode "RGB", upright, fully loaded."""

    image: Image.Image
    sha256: str  # of the raw bytes; for a PIL input, of mode + size + pixel bytes
    notes: tuple[str, ...]  # plain sentences about the conversions done
    source_format: str  # "PNG", "JPEG", ... or "PIL" for an in-memory image
    original_size: tuple[int, int]  # (width, height) before any conversion


def decode_image(
    source: Image.Image | bytes | bytearray | str | os.PathLike[str],
    *,
    max_pixels: int = MAX_PIXELS,
    inside: str | os.PathLike[str] | None = None,
) -> DecodedImage:
    """Decode `source` into an RGB image, refusing what cannot be read or is too large or too small. A path
    is opened only if it names a regular file, and with `inside` (a folder) only if its real path lies in it.

    The pixel count is checked from the header before any pixel is decoded. Raises ImageError.
    """
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels)
        digest = hashlib.sha256(f"{source.mode}|{source.width}x{source.height}|".encode())
        with _reading(max_pixels):
            digest.update(source.tobytes())
        return _finish(source, digest.hexdigest(), "PIL", [], max_pixels)
    data = _read(source, inside)
    _refuse_unsupported(data)
    checksum = hashlib.sha256(data).hexdigest()
    with _reading(max_pixels):
        try:
            im = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
        except UnidentifiedImageError as error:
            known = data.startswith(_SIGNATURES) or (data[:4], data[8:12]) == (b"RIFF", b"WEBP") or data[4:8] == b"ftyp"
            raise ImageError(_DAMAGED if known else f"This file is not an image we can read; {_USE}.") from error
        _check_size(im.size, max_pixels)
        fmt = "JPEG" if im.format == "MPO" else str(im.format)
        notes = []
        frames, more = _gif_frames(data) if fmt == "GIF" else _count_frames(im)
        if frames > 1 and fmt in _FRAME_WORDS:
            what, unit = _FRAME_WORDS[fmt]
            count = f"more than {frames:,}" if more else f"{frames:,}"
            notes.append(f"{what}: the first of {count} {unit} is shown.")
        im.load()
    return _finish(im, checksum, fmt, notes, max_pixels)


def _count_frames(im: Image.Image) -> tuple[int, bool]:
    """(frames counted, whether there are more): PIL's `n_frames` walks a TIFF's page chain with a linear search
    per page (80,000 tiny pages took 26 s), so count by seeking, at most MAX_FRAMES_COUNTED frames and
    FRAME_COUNT_SECONDS, then go back to the first frame. Formats that know their count (WebP) say it."""
    if im.format != "TIFF":
        return getattr(im, "n_frames", 1), False
    deadline = time.monotonic() + FRAME_COUNT_SECONDS
    count, more = 1, False
    try:
        while True:
            try:
                im.seek(count)
            except EOFError:
                break
            count += 1
            if count >= MAX_FRAMES_COUNTED or time.monotonic() > deadline:
                try:
                    im.seek(count)
                    more = True
                except EOFError:
                    pass
                break
    finally:
        im.seek(0)
    return count, more


def _gif_frames(data: bytes) -> tuple[int, bool]:
    """(frames counted, whether there are more) from a GIF's block structure, without decoding any frame (PIL's
    seek decodes each one): image descriptors (0x2C) are counted, extensions (0x21) and data sub-blocks skipped,
    at most MAX_FRAMES_COUNTED. A damaged tail ends the count; decoding the first frame judges the file."""
    pos, count = 13, 0
    if len(data) >= 13 and data[10] & 0x80:  # global colour table
        pos += 3 << ((data[10] & 7) + 1)
    while pos < len(data) and count <= MAX_FRAMES_COUNTED:
        block = data[pos]
        if block == 0x2C:  # image descriptor, local colour table, LZW code size, then sub-blocks
            count += 1
            flags = data[pos + 9] if pos + 9 < len(data) else 0
            pos += 10 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0) + 1
        elif block == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:  # 0x3B trailer, or damage
            break
        while pos < len(data) and data[pos]:
            pos += data[pos] + 1
        pos += 1
    return min(max(count, 1), MAX_FRAMES_COUNTED), count > MAX_FRAMES_COUNTED


def _read(source: bytes | bytearray | str | os.PathLike[str], inside: str | os.PathLike[str] | None = None) -> bytes:
    """The raw bytes of an upload or a file. A path must name a regular file of at most MAX_FILE_BYTES: a
    device (/dev/zero), a FIFO or a folder is refused before anything is opened, and so is a file that grows.
    With `inside` (a folder), the file's real path must lie inside that folder's real path: checked before
    opening (a link leading out is not opened), and again on the file actually opened, in case a folder on the
    way was swapped for a link in between."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > MAX_FILE_BYTES:
            raise ImageError(_too_big(len(source)))
        return bytes(source)
    path = Path(source)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    target = str(path)
    bound = None if inside is None else os.path.realpath(inside)
    if bound is not None:
        target = os.path.realpath(path)
        if not within(target, bound):
            raise ImageError(_leaves(path, inside))
        flags |= getattr(os, "O_NOFOLLOW", 0)  # the real path has no link left in it: one appearing now is refused
    try:
        _check_regular(path, os.stat(target))
        descriptor = os.open(target, flags)
        with os.fdopen(descriptor, "rb") as handle:
            _check_regular(path, os.fstat(descriptor))  # the file opened is the one checked, still a regular file
            if bound is not None and not within(_opened_path(descriptor) or target, bound):
                raise ImageError(_leaves(path, inside))
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as error:
        raise ImageError(f"There is no file at {path}.") from error
    except IsADirectoryError as error:
        raise ImageError(f"The path {path} is a folder, not an image file.") from error
    except OSError as error:
        if error.errno == errno.ELOOP and bound is not None:  # O_NOFOLLOW met a link put there after the check
            raise ImageError(_leaves(path, inside)) from error
        raise ImageError(f"The file {path} could not be read.") from error
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(_too_big(len(data)))
    return data


def within(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether the real path `path` lies inside (or is) the real path `folder`; both must already be resolved."""
    path, folder = os.fspath(path), os.fspath(folder)
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives, or one relative
        return False


def _check_regular(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(f"The path {path} is a folder, not an image file.")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"The path {path} is not a regular file (a device, a pipe or a socket), so it is not read.")
    if info.st_size > MAX_FILE_BYTES:
        raise ImageError(_too_big(info.st_size))


def _opened_path(descriptor: int) -> str | None:
    """The real path of an open file, from the kernel (Linux's /proc), or None where it cannot say."""
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return None


def _leaves(path: Path, inside: str | os.PathLike[str] | None) -> str:
    return f"The file {path.name} is a link that leads outside the folder {inside}, so it is not read."


def _too_big(size: int) -> str:
    return f"The image file is {size / 2**20:,.1f} MB; the limit is {MAX_FILE_BYTES / 2**20:g} MB."


def _refuse_unsupported(data: bytes) -> None:
    """Name the formats people commonly try that we cannot read: empty files, SVG, HEIC and AVIF."""
    if not data:
        raise ImageError("The file is empty.")
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<") and b"<svg" in head:
        raise ImageError("SVG images are not supported; please export the picture as PNG or JPEG.")
    if data[4:8] == b"ftyp":
        brands = data[8 : max(16, min(int.from_bytes(data[:4], "big"), 64))]
        if b"avif" in brands or b"avis" in brands:
            if "AVIF" not in SUPPORTED_FORMATS:
                raise ImageError("AVIF images are not supported; please convert the picture to PNG or JPEG.")
        elif any(brand in brands for brand in _HEIF_BRANDS) and "HEIF" not in SUPPORTED_FORMATS:
            raise ImageError("HEIC/HEIF photos are not supported; please convert the photo to JPEG or PNG.")


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    """Refuse decompression bombs and images too small to explain, from the header's size alone."""
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"The image is too large ({width}×{height} pixels); the limit is {max_pixels / 1e6:g} megapixels."
        )
    if min(width, height) < MIN_SIDE:
        raise ImageError(
            f"The image is too small ({width}×{height} pixels); it must be at least {MIN_SIDE} pixels on each side."
        )


@contextmanager
def _reading(max_pixels: int) -> Iterator[None]:
    """Turn PIL's decoding failures, and its decompression-bomb warning (here only), into ImageError."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageError(f"The image is too large; the limit is {max_pixels / 1e6:g} megapixels.") from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageError(_DAMAGED) from error


def _finish(im: Image.Image, digest: str, fmt: str, notes: list[str], max_pixels: int) -> DecodedImage:
    """Turn a loaded image upright and into RGB, noting each conversion."""
    original_size = im.size
    with _reading(max_pixels):
        if im.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9):
            im = ImageOps.exif_transpose(im)
            notes.append("The photo was turned upright using its orientation tag.")
        rgb = _to_rgb(im, notes)
    width, height = rgb.size
    if max(width, height) > WIDE_RATIO * min(width, height):
        shape = "wide" if width > height else "tall"
        notes.append(f"The image is very {shape} ({width}×{height}); it will be stretched to the model's square input.")
    return DecodedImage(rgb, digest, tuple(notes), fmt, original_size)


def _to_rgb(im: Image.Image, notes: list[str]) -> Image.Image:
    """A new RGB image from any PIL mode; transparency goes on white."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "1":
        notes.append("Black-and-white (1-bit) image converted to RGB.")
    elif mode == "L":
        notes.append("Grayscale image converted to RGB.")
    elif mode == "CMYK":
        notes.append("CMYK converted to RGB.")
    elif mode.startswith("I") or mode == "F":
        bits = "16-bit" if mode.startswith("I;16") else "32-bit"
        notes.append(f"{bits} image scaled to 8 bits.")
        im = _scale_to_8bit(im)
    if im.mode in _ALPHA_MODES:
        rgba = im.convert("RGBA") if im.mode != "La" else im.convert("LA").convert("RGBA")
        low, _ = cast(tuple[int, int], rgba.getchannel("A").getextrema())  # one channel: (min, max)
        if low < 255:
            notes.append("Transparent areas were put on white.")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    try:
        return im.convert("RGB")
    except ValueError as error:
        raise ImageError(f"The image's colour format ({mode}) cannot be converted to RGB; {_USE}.") from error


def _scale_to_8bit(im: Image.Image) -> Image.Image:
    """Stretch a high-bit-depth single-channel image's actual value range onto 0–255 (a constant image → 0)."""
    values = np.asarray(im).astype(np.float64)
    finite = np.isfinite(values)
    low, high = (values[finite].min(), values[finite].max()) if finite.any() else (0.0, 0.0)
    values = np.where(finite, values, low)
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.rint(scaled).astype(np.uint8))
