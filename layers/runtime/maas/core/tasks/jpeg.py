"""JPEG images through simplejpeg (libjpeg-turbo): what phones and cameras send.

Why simplejpeg and not Pillow, measured on this layer (docs/how-to/images.md): 1.2 MB unpacked
against Pillow's 22 MB (the layer is 138 MB and must leave room under 180 MB), and about 1 ms to
import and decode a 64x64 JPEG in a fresh process against ~60 ms for Pillow.

The header is read first, so an image of the wrong size or of more than ``MAX_PIXELS`` pixels (a
decompression bomb: a few kilobytes that claim 65,000 x 65,000 pixels) is refused before a single
pixel is decoded. Decoding is strict: a truncated or corrupt file is an error, not a grey image.
"""

from __future__ import annotations

import numpy as np

from maas.core.tasks.png import MAX_PIXELS

SIGNATURE = b"\xff\xd8\xff"


class JpegError(ValueError):
    """The bytes are not a JPEG image this decoder reads; the message says why."""


def is_jpeg(data: bytes) -> bool:
    return data.startswith(SIGNATURE)


def read_header(data: bytes) -> tuple[int, int, str]:
    """Height, width and colour space, checked against ``MAX_PIXELS`` before any decoding."""
    import simplejpeg

    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as error:
        raise JpegError(f"its header cannot be read ({error})") from None
    if not 0 < width * height <= MAX_PIXELS:
        raise JpegError(f"it is {width}x{height} pixels; at most {MAX_PIXELS} pixels are read")
    return int(height), int(width), str(colourspace)


def decode_jpeg(data: bytes, channels: int) -> np.ndarray:
    """Pixels (height, width, channels) as uint8: grey for one channel, RGB for three. A CMYK file
    (Adobe's inverted CMYK, as Photoshop writes it) is converted to RGB here."""
    import simplejpeg

    _, _, colourspace = read_header(data)
    try:
        if colourspace in ("CMYK", "YCCK"):
            cmyk = np.asarray(simplejpeg.decode_jpeg(data, colorspace="CMYK"), dtype=np.float64) / 255.0
            rgb = cmyk[..., :3] * cmyk[..., 3:]  # inverted CMYK: each channel times K
            pixels = np.rint(rgb * 255.0).astype(np.uint8)
            if channels == 1:
                luma: np.ndarray = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
                grey: np.ndarray = np.rint(luma).astype(np.uint8)
                return grey[..., None]
            return pixels
        decoded = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if channels == 1 else "RGB", fastdct=False, fastupsample=False
        )
    except ValueError as error:
        raise JpegError(f"it does not decode ({error})") from None
    image = np.asarray(decoded, dtype=np.uint8)
    return image if image.ndim == 3 else image[..., None]
