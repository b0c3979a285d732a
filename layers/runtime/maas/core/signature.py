"""Tensor signatures: what a model takes and gives, read from the ONNX session itself.

Validation and dtype casting are driven by these specs, so a request is checked against the
model that will run it, not against what a handler author remembered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maas.core.errors import RequestError

# onnxruntime's type strings -> numpy dtypes (strings travel as object arrays).
ONNX_TO_NUMPY: dict[str, str] = {
    "tensor(string)": "object",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output: its name, element type and shape (``None`` for a free dimension)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @classmethod
    def from_onnx(cls, name: str, onnx_type: str, shape: list[Any]) -> TensorSpec:
        dims = tuple(d if isinstance(d, int) and d > 0 else None for d in shape)
        return cls(name=name, dtype=ONNX_TO_NUMPY.get(onnx_type, onnx_type), shape=dims)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": "string" if self.dtype == "object" else self.dtype,
            "shape": list(self.shape),
        }


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8: JSON's ``"\\ud800"`` decodes to a lone surrogate,
    which onnxruntime cannot take (a ``UnicodeEncodeError`` inside ``session.run``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def cast_batch(values: Any, spec: TensorSpec, field: str) -> np.ndarray:
    """Turn a JSON batch into the array ``spec`` wants, or say which field is wrong and why.

    The batch dimension is free; every other fixed dimension must match exactly. Numbers are cast
    to the model's dtype (float32 for float models: onnxruntime refuses float64 for them).
    """
    if spec.dtype == "object":
        array = np.asarray(values, dtype=object)
        if not all(isinstance(v, str) for v in array.ravel()):
            raise RequestError(f"{field} must hold strings", code="invalid_type", field=field)
        if not all(is_unicode(v) for v in array.ravel()):
            raise RequestError(
                f"{field} holds text that is not valid Unicode (a lone surrogate)",
                code="invalid_text",
                field=field,
            )
    else:
        try:
            array = np.asarray(values, dtype=np.dtype(spec.dtype))
        except (TypeError, ValueError):
            raise RequestError(
                f"{field} must be numbers of shape {list(spec.shape)} ({spec.dtype})",
                code="invalid_type",
                field=field,
            ) from None
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise RequestError(f"{field} holds NaN or infinite values", code="invalid_value", field=field)
    expected = spec.shape
    if array.ndim == len(expected) - 1 and expected[-1] == 1:
        array = array.reshape(*array.shape, 1)
    if array.ndim != len(expected) or any(
        want is not None and got != want for got, want in zip(array.shape[1:], expected[1:], strict=True)
    ):
        raise RequestError(
            f"{field} has shape {list(array.shape)}, the model takes {['N' if d is None else d for d in expected]}",
            code="invalid_shape",
            field=field,
        )
    return array
