"""The layer's stdlib PNG decoder against PNGs written by an independent encoder (Pillow)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from maas.core.tasks.png import PngError, decode_png, read_header


def encode(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def noise(shape: tuple[int, ...], seed: int = 3) -> np.ndarray:
    """Random pixels with smooth parts, so the encoder picks every filter type somewhere."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * 3
    if len(shape) == 3:
        ramp = ramp[..., None]
    return ((ramp + rng.integers(0, 40, shape)) % 256).astype(np.uint8)


@pytest.mark.parametrize(
    ("mode", "shape"), [("L", (23, 17)), ("RGB", (9, 31, 3)), ("RGBA", (16, 16, 4)), ("LA", (5, 7, 2))]
)
def test_decodes_8_bit_images_exactly(mode: str, shape: tuple[int, ...]) -> None:
    pixels = noise(shape)
    image = Image.fromarray(pixels, mode=mode)
    for level in (0, 9):
        decoded, maximum = decode_png(encode(image, compress_level=level, optimize=level == 9))
        assert maximum == 255
        assert decoded.shape == (shape[0], shape[1], 1 if len(shape) == 2 else shape[2])
        assert np.array_equal(decoded.reshape(shape), pixels)


def test_decodes_palette_and_one_bit_images() -> None:
    rgb = noise((12, 10, 3))
    palette = Image.fromarray(rgb, mode="RGB").quantize(colors=16)
    decoded, maximum = decode_png(encode(palette))
    assert maximum == 255 and np.array_equal(decoded, np.asarray(palette.convert("RGB")))
    bits = Image.fromarray(noise((11, 13)) > 128).convert("1")
    decoded, maximum = decode_png(encode(bits))
    assert maximum == 1 and np.array_equal(decoded[..., 0], np.asarray(bits).astype(np.uint8))


def test_decodes_16_bit_greyscale() -> None:
    values = (noise((6, 9)).astype(np.uint16) * 257).astype(np.uint16)
    decoded, maximum = decode_png(encode(Image.fromarray(values)))
    assert maximum == 65535 and np.array_equal(decoded[..., 0], values)


def test_reads_the_header_without_decoding() -> None:
    header = read_header(encode(Image.new("RGB", (32, 24))))
    assert (header.width, header.height, header.channels, header.bit_depth) == (32, 24, 3, 8)


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_refuses_what_is_not_a_readable_png() -> None:
    good = encode(Image.fromarray(noise((8, 8)), mode="L"))
    with pytest.raises(PngError, match="signature"):
        decode_png(b"GIF89a" + good[6:])
    with pytest.raises(PngError, match="CRC"):
        decode_png(good[:40] + bytes([good[40] ^ 0xFF]) + good[41:])
    with pytest.raises(PngError, match=r"ends before|truncated"):
        decode_png(good[: len(good) // 2])
    header = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    short = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 20))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(PngError, match="72 were expected"):
        decode_png(short)
    interlaced = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header[:-1] + b"\x01") + chunk(b"IEND", b"")
    with pytest.raises(PngError, match="interlaced"):
        decode_png(interlaced)
    huge = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
    with pytest.raises(PngError, match="at most"):
        read_header(huge)
