"""A PNG decoder on the standard library (zlib) and numpy: no imaging library in the layer.

It reads what image requests carry: non-interlaced greyscale, greyscale+alpha, RGB, RGBA and
palette images, 8 or 16 bits per sample (palette and greyscale also 1, 2 and 4). The header is
read first, so an image of the wrong size is refused before anything is decompressed, and the
decompressed size is bounded, so a small body cannot expand into gigabytes.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 4096 * 4096
# colour type -> samples per pixel
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


class PngError(ValueError):
    """The bytes are not a PNG image this decoder reads; the message says why."""


@dataclass(frozen=True, slots=True)
class PngHeader:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlaced: bool

    @property
    def channels(self) -> int:
        """Channels of the decoded image: a palette expands to RGB(A), alpha is kept."""
        return 3 if self.colour_type == 3 else _CHANNELS[self.colour_type]


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(SIGNATURE):
        raise PngError("it does not start with the PNG signature")
    chunks: list[tuple[bytes, bytes]] = []
    offset = len(SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        crc = data[offset + 8 + length : offset + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise PngError(f"chunk {kind!r} is truncated")
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            raise PngError(f"chunk {kind!r} fails its CRC check")
        chunks.append((kind, body))
        offset += 12 + length
        if kind == b"IEND":
            return chunks
    raise PngError("it ends before the IEND chunk")


def read_header(data: bytes) -> PngHeader:
    """The IHDR facts, checked: what the image is, before any pixel is decompressed."""
    if not data.startswith(SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        raise PngError("it does not start with the PNG signature and an IHDR chunk")
    width, height, depth, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if colour not in _CHANNELS or depth not in _DEPTHS[colour]:
        raise PngError(f"bit depth {depth} with colour type {colour} is not a valid PNG combination")
    if compression != 0 or filtering != 0:
        raise PngError("it uses an unknown compression or filter method")
    if not 0 < width * height <= MAX_PIXELS:
        raise PngError(f"it is {width}x{height} pixels; at most {MAX_PIXELS} pixels are read")
    return PngHeader(width, height, depth, colour, interlace != 0)


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the per-row filters (None, Sub, Up, Average, Paeth) of the PNG specification."""
    rows = np.zeros((height, stride), dtype=np.uint8)
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((np.frombuffer(line, np.uint8) + np.frombuffer(previous, np.uint8)).tobytes())
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                corner = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, previous[i], corner)) & 0xFF
        elif kind != 0:
            raise PngError(f"row {y} has an unknown filter type {kind}")
        rows[y] = np.frombuffer(line, np.uint8)
        previous = line
    return rows


def decode_png(data: bytes) -> tuple[np.ndarray, int]:
    """Pixels as an array (height, width, channels) and the largest sample value (255, 65535 …)."""
    header = read_header(data)
    if header.interlaced:
        raise PngError("interlaced (Adam7) images are not read; save it without interlacing")
    chunks = _chunks(data)
    palette = next((body for kind, body in chunks if kind == b"PLTE"), None)
    samples = _CHANNELS[header.colour_type]
    bits_per_pixel = samples * header.bit_depth
    stride = (header.width * bits_per_pixel + 7) // 8
    expected = header.height * (stride + 1)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"), expected)
    except zlib.error as error:
        raise PngError(f"its image data does not decompress ({error})") from None
    if len(raw) != expected:
        raise PngError(f"its image data holds {len(raw)} bytes, {expected} were expected")
    rows = _unfilter(raw, header.height, stride, max(1, bits_per_pixel // 8))
    pixels: np.ndarray
    if header.bit_depth == 16:
        pixels = rows.view(">u2").astype(np.uint16).reshape(header.height, header.width, samples)
    elif header.bit_depth == 8:
        pixels = rows.reshape(header.height, header.width, samples)
    else:
        bits = np.unpackbits(rows, axis=1).reshape(header.height, -1, header.bit_depth)
        weights = (1 << np.arange(header.bit_depth - 1, -1, -1)).astype(np.uint8)
        pixels = (bits * weights).sum(axis=2).astype(np.uint8)[:, : header.width, None]
    maximum = (1 << header.bit_depth) - 1
    if header.colour_type == 3:
        if palette is None or len(palette) % 3:
            raise PngError("a palette image without a valid PLTE chunk")
        colours = np.frombuffer(palette, np.uint8).reshape(-1, 3)
        if int(pixels.max()) >= len(colours):
            raise PngError("a pixel refers to a colour the palette does not have")
        return colours[pixels[..., 0]], 255
    return pixels, maximum
