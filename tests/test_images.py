"""decode_image and the bundled samples: every bad input gives a plain-sentence ImageError, every
conversion gives an RGB image of the right size and content. All images are made here, in memory."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from cnnvis_engine import images
from cnnvis_engine.errors import ImageError
from cnnvis_engine.images import SUPPORTED_FORMATS, UPLOAD_EXTENSIONS, DecodedImage, decode_image
from cnnvis_engine.samples import list_samples, sample_path


def encode(im: Image.Image, fmt: str, **params: object) -> bytes:
    """The bytes of `im` saved as `fmt`."""
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """A seeded random image (compresses badly, so cutting its file in half cuts pixel data)."""
    bands = len(mode)
    values = np.random.default_rng(0).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(values.squeeze(-1) if bands == 1 else values)


def refused(source: object, **kwargs: object) -> str:
    """decode_image's ImageError message for `source`, checked to be one plain sentence."""
    with pytest.raises(ImageError) as info:
        decode_image(source, **kwargs)
    message = str(info.value)
    assert message[0].isupper() and message.endswith("."), message
    for leak in ("Traceback", "PIL", "cannot identify", "Errno"):
        assert leak not in message, message
    return message


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR says width × height (CRC fixed), without the pixels to match."""
    data = bytearray(encode(Image.new("L", (8, 8)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def rgb(decoded: DecodedImage) -> np.ndarray:
    """The decoded pixels, after checking the result is a plain RGB image."""
    assert decoded.image.mode == "RGB"
    return np.asarray(decoded.image)


# ---------------------------------------------------------------------------------------- refusals


def test_empty_bytes_and_empty_file(tmp_path):
    assert refused(b"") == "The file is empty."
    (tmp_path / "empty.png").write_bytes(b"")
    assert refused(tmp_path / "empty.png") == "The file is empty."


@pytest.mark.parametrize(
    "data",
    [b"hello, this is a text file\n", np.random.default_rng(1).bytes(2000), b"\x00" * 100],
    ids=["text", "random", "zeros"],
)
def test_not_an_image(data, tmp_path):
    message = refused(data)
    assert "not an image we can read" in message and images.FORMAT_WORDS in message
    (tmp_path / "notes.txt").write_bytes(data)
    assert refused(tmp_path / "notes.txt") == message


@pytest.mark.parametrize(
    "data",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>',
        b'\xef\xbb\xbf<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
)
def test_svg_is_named(data):
    assert refused(data).startswith("SVG images are not supported")


HEIC_HEADER = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
AVIF_HEADER = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64


def test_heic_and_avif_are_named_where_this_pillow_cannot_read_them(monkeypatch):
    monkeypatch.setattr(images, "SUPPORTED_FORMATS", images.BASE_FORMATS)
    assert refused(HEIC_HEADER).startswith("HEIC/HEIF photos are not supported")
    assert refused(AVIF_HEADER).startswith("AVIF images are not supported")


@pytest.mark.skipif("AVIF" not in SUPPORTED_FORMATS, reason="this Pillow was built without libavif")
def test_avif_is_read_where_pillow_reads_it():
    picture = Image.new("RGB", (40, 24), (200, 100, 50))
    decoded = decode_image(encode(picture, "AVIF"))
    assert decoded.source_format == "AVIF" and decoded.image.size == (40, 24) and decoded.image.mode == "RGB"
    red, green, blue = np.asarray(decoded.image).reshape(-1, 3).mean(axis=0)
    assert abs(red - 200) < 12 and abs(green - 100) < 12 and abs(blue - 50) < 12  # lossy, but the same colour
    assert "avif" in UPLOAD_EXTENSIONS
    assert "cut short or damaged" in refused(AVIF_HEADER)  # a broken AVIF is damaged, not "not an image"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated_file_is_damaged(fmt):
    data = encode(noise((64, 64)), fmt)
    message = refused(data[: len(data) // 2])
    assert "cut short or damaged" in message
    assert "cut short or damaged" in refused(data[:20])  # header cut: still a damaged image, not "not an image"


def test_truncation_does_not_switch_pil_to_lenient_loading():
    from PIL import ImageFile

    data = encode(noise((64, 64)), "JPEG")
    refused(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_bomb_header_fails_fast_without_allocating():
    tracemalloc.start()
    start = time.perf_counter()
    message = refused(png_claiming(50_000, 50_000))
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert "too large" in message and "40 megapixels" in message
    assert elapsed < 0.5 and peak < 5_000_000


def test_over_our_limit_but_under_pils_is_refused_from_the_header():
    assert refused(png_claiming(8000, 6000)) == (
        "The image is too large (8000×6000 pixels); the limit is 40 megapixels."
    )
    assert "limit is 0.01 megapixels" in refused(encode(noise((200, 100)), "PNG"), max_pixels=10_000)


def test_pils_bomb_warning_becomes_an_error_locally(recwarn):
    # 10000×10000 = 100 MP: above PIL's warning threshold (89 MP), below its error threshold.
    assert "too large" in refused(png_claiming(10_000, 10_000), max_pixels=200_000_000)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_too_small():
    assert refused(encode(Image.new("RGB", (1, 1)), "PNG")) == (
        "The image is too small (1×1 pixels); it must be at least 8 pixels on each side."
    )
    assert "too small (100×7 pixels)" in refused(Image.new("RGB", (100, 7)))


def test_missing_path_and_folder(tmp_path):
    assert refused(tmp_path / "nope.png") == f"There is no file at {tmp_path / 'nope.png'}."
    assert refused(str(tmp_path / "nope.png")) == f"There is no file at {tmp_path / 'nope.png'}."
    assert "is a folder" in refused(tmp_path)


def test_errors_are_chained_to_their_cause():
    with pytest.raises(ImageError) as info:
        decode_image(b"plain text")
    assert info.value.__cause__ is not None


# ------------------------------------------------------------------------------------- conversions


def test_plain_rgb_png_from_bytes_and_path(tmp_path):
    im = noise((30, 20))
    data = encode(im, "PNG")
    (tmp_path / "a.png").write_bytes(data)
    from_bytes, from_path = decode_image(data), decode_image(tmp_path / "a.png")
    assert from_bytes.sha256 == from_path.sha256 == decode_image(bytearray(data)).sha256
    assert from_bytes.source_format == "PNG" and from_bytes.original_size == (30, 20)
    assert from_bytes.notes == ()
    assert np.array_equal(rgb(from_path), np.asarray(im))


def test_exif_orientation_6_is_applied():
    im = Image.new("RGB", (40, 20), (255, 0, 0))
    im.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = decode_image(encode(im, "JPEG", exif=exif, quality=95))
    pixels = rgb(decoded)
    assert decoded.image.size == (20, 40) and decoded.original_size == (40, 20)
    assert pixels[2, 10, 0] > 200 and pixels[2, 10, 2] < 50  # top is the old left: red
    assert pixels[-3, 10, 2] > 200 and pixels[-3, 10, 0] < 50  # bottom is the old right: blue
    assert any("upright" in note for note in decoded.notes)


def test_16_bit_grayscale_png_is_scaled_by_its_range():
    values = np.linspace(0, 4095, 32 * 16).reshape(16, 32).astype(np.uint16)  # 12-bit data
    data = encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    decoded = decode_image(data)
    pixels = rgb(decoded)
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 100
    assert "16-bit image scaled to 8 bits." in decoded.notes


def test_constant_16_bit_image_gives_no_nan():
    decoded = decode_image(encode(Image.fromarray(np.full((16, 16), 1000, np.uint16)), "PNG"))
    assert np.array_equal(rgb(decoded), np.zeros((16, 16, 3), np.uint8))


def test_float_image_with_nan_and_inf():
    values = np.linspace(-1, 1, 256, dtype=np.float32).reshape(16, 16)
    values[0, 0], values[0, 1] = np.nan, np.inf
    pixels = rgb(decode_image(Image.fromarray(values)))
    assert pixels.max() == 255 and pixels[0, 0, 0] == 0


def test_cmyk_jpeg():
    decoded = decode_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    red = rgb(decoded)[8, 8]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert "CMYK converted to RGB." in decoded.notes


def test_rgba_transparent_pixel_becomes_white():
    im = Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    im.putpixel((3, 3), (0, 0, 0, 0))
    decoded = decode_image(encode(im, "PNG"))
    pixels = rgb(decoded)
    assert tuple(pixels[3, 3]) == (255, 255, 255) and tuple(pixels[0, 0]) == (255, 0, 0)
    assert "Transparent areas were put on white." in decoded.notes


def test_opaque_alpha_gives_no_note():
    assert decode_image(Image.new("RGBA", (16, 16), (1, 2, 3, 255))).notes == ()


def test_palette_with_transparency():
    im = Image.new("P", (16, 16), 1)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((5, 5), 0)
    decoded = decode_image(encode(im, "PNG", transparency=0))
    pixels = rgb(decoded)
    assert tuple(pixels[5, 5]) == (255, 255, 255) and tuple(pixels[0, 0]) == (0, 255, 0)
    assert "Transparent areas were put on white." in decoded.notes


def test_grayscale_and_one_bit():
    gray = decode_image(encode(Image.new("L", (16, 16), 77), "PNG"))
    assert tuple(rgb(gray)[0, 0]) == (77, 77, 77) and "Grayscale image converted to RGB." in gray.notes
    one = Image.new("1", (16, 16), 0)
    one.putpixel((2, 2), 1)
    bw = decode_image(encode(one, "PNG"))
    assert tuple(rgb(bw)[2, 2]) == (255, 255, 255) and tuple(rgb(bw)[0, 0]) == (0, 0, 0)
    assert any("1-bit" in note for note in bw.notes)


@pytest.mark.parametrize("fmt, word", [("GIF", "Animated GIF"), ("WEBP", "Animated WebP"), ("TIFF", "Multi-page TIFF")])
def test_animated_or_multipage_shows_first_frame(fmt, word):
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    decoded = decode_image(data)
    first = rgb(decoded)[8, 8]
    assert first[0] > 200 and first[1] < 50 and first[2] < 50
    assert any(note.startswith(word) and "first of 3" in note for note in decoded.notes), decoded.notes
    assert decoded.source_format == fmt


def test_extreme_aspect_ratio_is_accepted_with_a_note():
    decoded = decode_image(encode(Image.new("RGB", (10000, 10), (9, 9, 9)), "PNG"))
    assert decoded.image.size == (10000, 10)
    assert any("stretched" in note and "10000×10" in note for note in decoded.notes)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"])
def test_every_supported_format(fmt):
    decoded = decode_image(encode(Image.new("RGB", (24, 16), (200, 100, 50)), fmt))
    assert decoded.source_format == fmt and decoded.image.size == (24, 16) and decoded.image.mode == "RGB"


def test_public_constants():
    assert SUPPORTED_FORMATS[:6] == ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
    assert UPLOAD_EXTENSIONS[:8] == ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff", "gif")
    assert set(SUPPORTED_FORMATS[6:]) <= {"AVIF", "HEIF"} and set(UPLOAD_EXTENSIONS[8:]) <= {"avif", "heic", "heif"}


# --------------------------------------------------------------------------------------- PIL input


@pytest.mark.parametrize(
    "mode", ["1", "L", "P", "RGB", "RGBA", "LA", "La", "PA", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "I;16", "I", "F"]
)
def test_pil_input_of_each_mode(mode):
    im = Image.new(mode, (12, 9))
    decoded = decode_image(im)
    assert decoded.image.mode == "RGB" and decoded.image.size == (12, 9) and decoded.image is not im
    assert decoded.source_format == "PIL" and decoded.original_size == (12, 9)
    assert not np.isnan(np.asarray(decoded.image, dtype=np.float64)).any()
    assert im.mode == mode  # the caller's image is left alone


def test_pil_input_hash_covers_mode_size_and_pixels():
    im = noise((16, 16))
    assert decode_image(im).sha256 == decode_image(im.copy()).sha256
    assert decode_image(im).sha256 != decode_image(im.convert("L")).sha256
    assert decode_image(im).sha256 != decode_image(im.transpose(Image.Transpose.ROTATE_90)).sha256


def test_pil_input_too_large_is_refused_before_reading_pixels():
    assert "too large" in refused(Image.new("L", (200, 100)), max_pixels=10_000)


# ----------------------------------------------------------------------------------------- samples


def test_samples_are_four_photos_that_decode_to_rgb():
    samples = list_samples()
    assert [s.key for s in samples] == ["cat", "coffee", "astronaut", "rocket"]
    for sample in samples:
        assert sample.path.is_file() and sample.title and sample.credit
        assert sample_path(sample.key) == sample.path
        decoded = decode_image(sample.path)
        assert decoded.image.mode == "RGB" and decoded.source_format == "JPEG"
        assert min(decoded.image.size) >= 256
    assert sum(s.path.stat().st_size for s in samples) < 1_000_000


def test_unknown_sample_names_the_known_ones():
    with pytest.raises(ImageError) as info:
        sample_path("dog")
    assert str(info.value) == "There is no sample photo called 'dog'; choose one of cat, coffee, astronaut, rocket."
