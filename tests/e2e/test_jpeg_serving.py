"""JPEG images through `maas serve`: the digits model answers a JPEG as it answers the pixels an
independent decoder (Pillow) reads from it; corrupt, truncated, bomb-sized and wrong-sized files
are each a 400 naming the instance."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tests.e2e.conftest import Served
from tests.unit.test_jpeg import jpeg, photo, with_size


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def pixels_of(data: bytes) -> list[Any]:
    """The [0, 1] greyscale pixels Pillow reads (libjpeg's luma), as the array instance."""
    image = Image.open(io.BytesIO(data))
    image.draft("L", image.size)
    return (np.asarray(image.convert("L"), dtype=np.float64) / 255.0)[..., None].tolist()


def digit_jpegs() -> dict[str, bytes]:
    digits = load_digits().images
    scene = photo((8, 8))
    return {
        "digit": jpeg(Image.fromarray((digits[3] * 255 / 16).astype(np.uint8), mode="L"), quality=95),
        "progressive": jpeg(
            Image.fromarray((digits[7] * 255 / 16).astype(np.uint8), mode="L"), quality=90, progressive=True
        ),
        "photo": jpeg(scene, quality=85),
        "cmyk": jpeg(scene.convert("CMYK"), quality=95),
        "grey": jpeg(scene.convert("L"), quality=90),
    }


def test_jpeg_digits_answer_as_the_pixels_pillow_reads_from_them(serve_api: Served) -> None:
    files = digit_jpegs()
    names = [n for n in files if n != "cmyk"]
    served = serve_api.post("/models/digits_cnn/predict", {"instances": [b64(files[n]) for n in names]})
    assert served.status_code == 200, served.text
    arrays = serve_api.post("/models/digits_cnn/predict", {"instances": [pixels_of(files[n]) for n in names]})
    for name, got, want in zip(
        names, served.json()["predictions"], arrays.json()["predictions"], strict=True
    ):
        assert got["label"] == want["label"], name
        assert max(abs(got["probabilities"][k] - p) for k, p in want["probabilities"].items()) <= 1e-4, name
    cmyk = serve_api.post(
        "/models/digits_cnn/predict", {"instances": [b64(files["cmyk"]), b64(files["photo"])]}
    )
    assert cmyk.status_code == 200 and len(cmyk.json()["predictions"]) == 2


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("corrupt", "invalid_jpeg"),
        ("truncated", "invalid_jpeg"),
        ("huge", "invalid_jpeg"),
        ("wrong_size", "invalid_shape"),
    ],
)
def test_a_bad_jpeg_is_a_400_naming_the_instance(serve_api: Served, case: str, code: str) -> None:
    good = digit_jpegs()["photo"]
    data = {
        "corrupt": good[:150]
        + bytes(np.random.default_rng(2).integers(0, 255, 200, dtype=np.uint8))
        + good[350:],
        "truncated": good[: len(good) // 2],
        "huge": with_size(good, 60000, 60000),
        "wrong_size": jpeg(photo((16, 16)), quality=85),
    }[case]
    response = serve_api.post("/models/digits_cnn/predict", {"instances": [b64(good), b64(data)]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["field"], error["code"]) == ("instances[1].b64", code)
    if case == "huge":
        assert "60000x60000" in error["message"]
