"""The layer's JPEG decoder (simplejpeg) against JPEGs written by an independent encoder (Pillow):
a written digit, photograph-like noise, progressive, CMYK and greyscale files; corrupt, truncated
and bomb-sized ones are refused, the bomb before a pixel is decoded."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from maas.core.tasks.jpeg import JpegError, decode_jpeg, is_jpeg, read_header
from maas.core.tasks.png import MAX_PIXELS


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def pillow(data: bytes, mode: str) -> np.ndarray:
    """What Pillow (its own libjpeg) decodes; greyscale as libjpeg's own luma (``draft``)."""
    image = Image.open(io.BytesIO(data))
    if mode == "L":
        image.draft("L", image.size)
    return np.asarray(image.convert(mode))


def digit() -> Image.Image:
    pixels = load_digits().images[0] * (255 / 16)
    return Image.fromarray(np.kron(pixels, np.ones((4, 4))).astype(np.uint8), mode="L")


def photo(shape: tuple[int, int] = (48, 64)) -> Image.Image:
    """A smooth scene with sensor-like noise, in colour."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    scene = np.stack([x * 3, y * 4, (x + y) * 2], axis=2) + rng.normal(0, 12, (*shape, 3))
    return Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8), mode="RGB")


def with_size(data: bytes, height: int, width: int) -> bytes:
    """The same file with its frame header (SOF0/SOF2) claiming another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at >= 0:
            return data[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[at + 9 :]
    raise AssertionError("no frame header")


@pytest.mark.parametrize("progressive", [False, True])
def test_a_written_digit_decodes_as_pillow_decodes_it(progressive: bool) -> None:
    data = jpeg(digit(), quality=95, progressive=progressive)
    assert is_jpeg(data) and read_header(data)[:2] == (32, 32)
    decoded = decode_jpeg(data, channels=1)
    assert decoded.shape == (32, 32, 1) and decoded.dtype == np.uint8
    assert np.array_equal(decoded[..., 0], pillow(data, "L"))


@pytest.mark.parametrize("progressive", [False, True])
def test_photograph_like_noise_decodes_as_pillow_decodes_it(progressive: bool) -> None:
    data = jpeg(photo(), quality=85, progressive=progressive)
    decoded = decode_jpeg(data, channels=3)
    assert decoded.shape == (48, 64, 3)
    assert np.array_equal(decoded, pillow(data, "RGB"))
    grey = decode_jpeg(data, channels=1)  # a colour photo sent to a greyscale model
    assert grey.shape == (48, 64, 1)
    assert np.array_equal(grey[..., 0], pillow(data, "L"))


def test_cmyk_and_greyscale_files_decode() -> None:
    cmyk = jpeg(photo().convert("CMYK"), quality=95)
    assert read_header(cmyk)[2] in ("CMYK", "YCCK")
    decoded = decode_jpeg(cmyk, channels=3)
    assert np.max(np.abs(decoded.astype(int) - pillow(cmyk, "RGB").astype(int))) <= 2
    grey = jpeg(photo().convert("L"), quality=90)
    assert read_header(grey)[2] == "Gray"
    assert np.array_equal(decode_jpeg(grey, channels=1)[..., 0], pillow(grey, "L"))
    assert np.array_equal(decode_jpeg(grey, channels=3), pillow(grey, "RGB"))


def test_corrupt_truncated_and_bomb_sized_files_are_refused() -> None:
    data = jpeg(photo(), quality=85)
    with pytest.raises(JpegError, match="does not decode"):
        decode_jpeg(data[: len(data) // 2], channels=3)  # truncated
    corrupt = data[:200] + bytes(np.random.default_rng(1).integers(0, 255, 300, dtype=np.uint8)) + data[500:]
    with pytest.raises(JpegError):
        decode_jpeg(corrupt, channels=3)
    with pytest.raises(JpegError, match="header"):
        read_header(b"\xff\xd8\xff" + b"\x00" * 40)
    bomb = with_size(data, 60000, 60000)  # 3.6 gigapixels claimed by a few kilobytes
    assert len(bomb) < 10_000
    with pytest.raises(JpegError, match=f"at most {MAX_PIXELS} pixels"):
        read_header(bomb)
    with pytest.raises(JpegError, match=f"at most {MAX_PIXELS} pixels"):
        decode_jpeg(bomb, channels=3)
