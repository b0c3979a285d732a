"""Image classifiers: each instance a nested array of the model's input shape, or a base64 PNG
or JPEG (``{"b64": ...}``; the format is told by the file's signature).

Both forms are checked against the signature before onnxruntime sees them: the shape (height,
width, channels), that every value is a finite number, and that it lies in the value range the
model was trained on (the manifest's ``io.value_range``). PNG and JPEG pixels are scaled into that
range; both decoders read the header first and refuse an image of the wrong size or of too many
pixels before decoding it.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import RequestError
from maas.core.predictor import Predictor
from maas.core.tasks.base import Classifier, Feeds
from maas.core.tasks.jpeg import JpegError, decode_jpeg, is_jpeg
from maas.core.tasks.jpeg import read_header as read_jpeg_header
from maas.core.tasks.png import PngError, decode_png, read_header

# ITU-R BT.601 luma: an RGB PNG sent to a greyscale model.
_LUMA = np.array([0.299, 0.587, 0.114])


class ImageClassifier(Classifier):
    name = "image-classification"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.input_spec = predictor.inputs[0]
        height, width, channels = self.input_spec.shape[1:]
        self.shape = (int(height or 0), int(width or 0), int(channels or 0))
        low, high = self.io.get("value_range", [0.0, 1.0])
        self.low, self.high = float(low), float(high)
        self.probability_output = str(self.io.get("probability_output", "probabilities"))

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        images = [self._image(value, f"{field}[{index}]") for index, value in enumerate(instances)]
        return {self.input_spec.name: np.stack(images).astype(np.float32)}

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        probabilities = self.predictor.run(feeds, [self.probability_output])[self.probability_output]
        return self.classified(probabilities)

    def _image(self, value: Any, field: str) -> np.ndarray:
        if isinstance(value, dict):
            if set(value) != {"b64"} or not isinstance(value["b64"], str):
                raise RequestError(
                    f'{field} must be a nested array or {{"b64": "<base64 PNG or JPEG>"}}',
                    code="invalid_type",
                    field=field,
                )
            return self._png(value["b64"], f"{field}.b64")
        if not isinstance(value, list):
            raise RequestError(
                f"{field} must be a nested array of shape {list(self.shape)} or a base64 PNG/JPEG object, "
                f"got {type(value).__name__}",
                code="invalid_type",
                field=field,
            )
        try:
            array: np.ndarray = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise RequestError(
                f"{field} must be a nested array of numbers of shape {list(self.shape)}",
                code="invalid_type",
                field=field,
            ) from None
        height, width, channels = self.shape
        if channels == 1 and array.shape == (height, width):
            array = array[..., None]
        if array.shape != self.shape:
            accepted = f"{list(self.shape)}" + (f" or {[height, width]}" if channels == 1 else "")
            raise RequestError(
                f"{field} has shape {list(array.shape)}, the model takes {accepted}",
                code="invalid_shape",
                field=field,
            )
        if not np.all(np.isfinite(array)):
            raise RequestError(f"{field} holds NaN or infinite values", code="invalid_value", field=field)
        low, high = float(array.min()), float(array.max())
        if low < self.low or high > self.high:
            raise RequestError(
                f"{field} has pixel values from {low:g} to {high:g}; the model takes values in "
                f"[{self.low:g}, {self.high:g}]",
                code="out_of_range",
                field=field,
            )
        return array

    def _png(self, encoded: str, field: str) -> np.ndarray:
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{field} is not valid base64", code="invalid_base64", field=field) from None
        if is_jpeg(data):
            return self._jpeg(data, field)
        height, width, _ = self.shape
        try:
            header = read_header(data)
            if (header.height, header.width) != (height, width):
                raise RequestError(
                    f"{field} is a {header.width}x{header.height} PNG; the model takes {width}x{height} images",
                    code="invalid_shape",
                    field=field,
                )
            pixels, maximum = decode_png(data)
        except PngError as error:
            raise RequestError(
                f"{field} is not a PNG image this model can read: {error}", code="invalid_png", field=field
            ) from None
        return self._scaled(pixels.astype(np.float64) / maximum, field)

    def _jpeg(self, data: bytes, field: str) -> np.ndarray:
        height, width, channels = self.shape
        try:
            found_height, found_width, _ = read_jpeg_header(data)
            if (found_height, found_width) != (height, width):
                raise RequestError(
                    f"{field} is a {found_width}x{found_height} JPEG; the model takes {width}x{height} images",
                    code="invalid_shape",
                    field=field,
                )
            pixels = decode_jpeg(data, channels)
        except JpegError as error:
            raise RequestError(
                f"{field} is not a JPEG image this model can read: {error}", code="invalid_jpeg", field=field
            ) from None
        return self._scaled(pixels.astype(np.float64) / 255.0, field)

    def _scaled(self, image: np.ndarray, field: str) -> np.ndarray:
        """Decoded pixels in [0, 1] as the model's channels and value range."""
        channels = self.shape[2]
        if image.shape[2] in (2, 4):
            image = image[..., :-1]  # alpha is not part of what the model saw in training
        if channels == 1 and image.shape[2] == 3:
            image = (image @ _LUMA)[..., None]
        elif channels == 3 and image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        if image.shape[2] != channels:
            raise RequestError(
                f"{field} has {image.shape[2]} colour channels, the model takes {channels}",
                code="invalid_shape",
                field=field,
            )
        return self.low + image * (self.high - self.low)
