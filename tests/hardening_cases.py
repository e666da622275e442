"""The hostile inputs of the hardening tests, built in memory and shared by the engine and the browser tests:
bad and odd images (each with the outcome a person must get), hostile model files and labels with markup.

Nothing here touches the network or the disk except `write_case`, which writes one case into a folder.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, PngImagePlugin
from torch import nn

from cnnvis_engine.images import SUPPORTED_FORMATS


# ----- images --------------------------------------------------------------------------------------------------
def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (96, 64), seed: int = 0) -> Image.Image:
    """A seeded RGB picture (width, height) with smooth ramps and noise: compresses badly, so halving the file
    cuts pixel data."""
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([255 * xx / (width - 1), 255 * yy / (height - 1), 127 + 127 * np.sin((xx + yy) / 5)], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8), "RGB")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header (CRC fixed) claims width × height pixels: a decompression bomb's calling card."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _truncated(fmt: str) -> bytes:
    data = encode(photo(), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return data[: len(data) // 2]


def _exif_rotated() -> bytes:
    im = Image.new("RGB", (64, 32), (255, 0, 0))
    im.paste((0, 0, 255), (32, 0, 64, 32))  # left red, right blue; orientation 6 turns it 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(im, "JPEG", exif=exif, quality=95)


def _png_16bit_rgb() -> bytes:
    values = np.random.default_rng(2).integers(0, 65535, (48, 64, 3)).astype(np.uint16)
    ok, data = cv2.imencode(".png", values)
    assert ok
    return data.tobytes()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (48, 48), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


def _palette_png() -> bytes:
    im = photo().quantize(16)
    assert im.mode == "P"
    return encode(im, "PNG")


def _rgba_png() -> bytes:
    im = photo().convert("RGBA")
    im.putalpha(Image.linear_gradient("L").resize(im.size))
    return encode(im, "PNG")


def _ztxt_bomb() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "A" * 20_000_000, zip=True)  # 20 MB of text in a few KB
    return encode(photo((16, 16)), "PNG", pnginfo=info)


def _multipage_tiff() -> bytes:
    pages = [Image.new("RGB", (32, 32), colour) for colour in ((200, 30, 30), (30, 200, 30))]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>'
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
# A header only: where the pillow-heif plugin is installed (the optional extra) it is a damaged HEIC.
HEIC_REFUSAL = "cut short or damaged" if "HEIF" in SUPPORTED_FORMATS else "HEIC/HEIF photos are not supported"
AVIF = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n(/tmp/cnnvis-eps-ran) (w) file closefile\nshowpage\n"

NOT_AN_IMAGE = "not an image we can read"
DAMAGED = "cut short or damaged"


@dataclass(frozen=True)
class ImageCase:
    """One upload: its file name and bytes, and what a person must get. `refused`: words of the message; else
    the upload is used and `note` (if any) is among the conversion notes shown with the picture."""

    key: str
    filename: str
    make: Callable[[], bytes]
    refused: str = ""
    note: str = ""
    what: str = ""  # the case in words, for docs/RELIABILITY.md


IMAGE_CASES: tuple[ImageCase, ...] = (
    ImageCase("zero_byte", "empty.png", lambda: b"", refused="The file is empty.", what="zero-byte file"),
    ImageCase("truncated_jpeg", "cut.jpg", lambda: _truncated("JPEG"), refused=DAMAGED, what="JPEG cut in half"),
    ImageCase("truncated_png", "cut.png", lambda: _truncated("PNG"), refused=DAMAGED, what="PNG cut in half"),
    ImageCase(
        "text_named_png",
        "notes.png",
        lambda: b"just some notes, not a picture\n" * 4,
        refused=NOT_AN_IMAGE,
        what="a text file named .png",
    ),
    ImageCase(
        "random_bytes",
        "noise.jpg",
        lambda: np.random.default_rng(1).bytes(3000),
        refused=NOT_AN_IMAGE,
        what="random bytes named .jpg",
    ),
    ImageCase(
        "html_named_png",
        "page.png",
        lambda: b"<html><body><script>window.__pwned=1</script></body></html>",
        refused=NOT_AN_IMAGE,
        what="an HTML page named .png",
    ),
    ImageCase(
        "eps_named_png",
        "vector.png",
        lambda: EPS,
        refused=NOT_AN_IMAGE,
        what="PostScript named .png (Ghostscript must never run)",
    ),
    ImageCase("png_named_jpg", "really-a-png.jpg", lambda: encode(photo(seed=3), "PNG"), what="a PNG named .jpg"),
    ImageCase(
        "bomb_50k",
        "bomb.png",
        lambda: png_claiming(50_000, 50_000),
        refused="too large",
        what="decompression bomb: header claims 50000×50000",
    ),
    ImageCase(
        "bomb_48mp",
        "big.png",
        lambda: png_claiming(8000, 6000),
        refused="too large",
        what="header claims 8000×6000 (over our 40 MP, under PIL's own limit)",
    ),
    ImageCase("ztxt_bomb", "text-bomb.png", _ztxt_bomb, refused=DAMAGED, what="PNG with a 20 MB compressed text chunk"),
    ImageCase(
        "one_pixel",
        "dot.png",
        lambda: encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"),
        refused="too small (1×1 pixels)",
        what="1×1",
    ),
    ImageCase(
        "wide_10000x10",
        "strip.png",
        lambda: encode(Image.new("RGB", (10000, 10), (40, 160, 90)), "PNG"),
        note="very wide (10000×10)",
        what="10000×10",
    ),
    ImageCase(
        "gray16",
        "depth.png",
        lambda: encode(Image.fromarray(np.linspace(0, 4095, 64 * 48).reshape(48, 64).astype(np.uint16)), "PNG"),
        note="16-bit image scaled to 8 bits.",
        what="16-bit grayscale PNG",
    ),
    ImageCase("rgb16", "rgb48.png", _png_16bit_rgb, what="16-bit-per-channel RGB PNG"),
    ImageCase(
        "cmyk",
        "print.jpg",
        lambda: encode(photo(seed=4).convert("CMYK"), "JPEG", quality=95),
        note="CMYK converted to RGB.",
        what="CMYK JPEG",
    ),
    ImageCase(
        "rgba", "alpha.png", _rgba_png, note="Transparent areas were put on white.", what="RGBA PNG, graded alpha"
    ),
    ImageCase("palette", "palette.png", _palette_png, what="palette PNG (16 colours)"),
    ImageCase(
        "animated_gif",
        "anim.gif",
        _animated_gif,
        note="Animated GIF: the first of 3 frames is shown.",
        what="animated GIF, 3 frames",
    ),
    ImageCase(
        "multipage_tiff",
        "scan.tiff",
        _multipage_tiff,
        note="Multi-page TIFF: the first of 2 pages is shown.",
        what="multi-page TIFF",
    ),
    ImageCase("exif_rotated", "phone.jpg", _exif_rotated, note="turned upright", what="JPEG with EXIF orientation 6"),
    ImageCase(
        "grayscale",
        "gray.jpg",
        lambda: encode(photo(seed=5).convert("L"), "JPEG"),
        note="Grayscale image converted to RGB.",
        what="grayscale JPEG",
    ),
    ImageCase(
        "constant",
        "grey.png",
        lambda: encode(Image.new("RGB", (64, 64), (128, 128, 128)), "PNG"),
        what="constant grey image",
    ),
    ImageCase("svg", "drawing.svg", lambda: SVG, refused="SVG images are not supported", what="SVG (.svg)"),
    ImageCase(
        "svg_named_png", "drawing.png", lambda: SVG, refused="SVG images are not supported", what="SVG named .png"
    ),
    ImageCase("heic", "iphone.heic", lambda: HEIC, refused=HEIC_REFUSAL, what="HEIC (.heic)"),
    ImageCase(
        "heic_named_jpg",
        "iphone.jpg",
        lambda: HEIC,
        refused=HEIC_REFUSAL,
        what="HEIC named .jpg",
    ),
    ImageCase(
        "avif_named_png",
        "photo.png",
        lambda: AVIF,  # a header only: where Pillow reads AVIF it is a damaged AVIF, else a format we name
        refused="cut short or damaged" if "AVIF" in SUPPORTED_FORMATS else "AVIF images are not supported",
        what="AVIF header named .png",
    ),
)


def write_case(case: ImageCase, folder: Path) -> Path:
    path = folder / case.key / case.filename  # one folder per case: several cases share a file name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(case.make())
    return path


# ----- model files -------------------------------------------------------------------------------------------
class MakesAFile:
    """Unpickling this creates `path`: the side effect a malicious checkpoint would have."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.path, "w")


def torch_saved(obj: object, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def torchscript(module: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(module.eval()), buffer)
    return buffer.getvalue()


def fake_torchscript(payload: object) -> bytes:
    """A zip laid out like a TorchScript archive whose pickles hold `payload`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/code/__torch__.py", "")
        archive.writestr("archive/data.pkl", pickle.dumps(payload, protocol=2))
        archive.writestr("archive/constants.pkl", pickle.dumps(payload, protocol=2))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def malicious_files(marker: Path) -> dict[str, bytes]:
    """Every way we know to smuggle code into a model upload; loading any of them would create `marker`."""
    evil = MakesAFile(marker)
    return {
        "pickle protocol 0": pickle.dumps(evil, protocol=0),
        "pickle protocol 4": pickle.dumps(evil, protocol=4),
        "torch.save (zip)": torch_saved(evil),
        "torch.save (legacy)": torch_saved(evil, _use_new_zipfile_serialization=False),
        "state_dict with an object inside": torch_saved({"fc.weight": torch.zeros(2), "fc.bias": evil}),
        "fake TorchScript archive": fake_torchscript(evil),
    }


class FixedInput(nn.Module):
    """Expects 32×32 images: reshapes to a fixed size."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.reshape(1, 3 * 32 * 32))


class ReturnsDict(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.conv(x).mean((2, 3))}


class ReturnsTuple(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.conv(x).mean((2, 3))
        return logits, logits


class ReturnsNaN(nn.Module):
    """A classifier whose weights are corrupt: every output is NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 5)
        nn.init.constant_(self.fc.weight, float("nan"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))


class SmallNet(nn.Module):
    """A valid TorchScript classifier: conv → ReLU → mean → Linear(4, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


# ----- labels ---------------------------------------------------------------------------------------------------
XSS_LABELS = (
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=2</script>",
    '<a href="javascript:window.__pwned=3">click</a>',
    '"><svg onload="window.__pwned=4">',
    "**bold** _it_ `code` [link](javascript:window.__pwned=5)",
)


def xss_labels(count: int) -> bytes:
    """`count` class names, every one carrying markup (numbered so each is distinct)."""
    return "".join(f"{XSS_LABELS[i % len(XSS_LABELS)]} #{i}\n" for i in range(count)).encode()
