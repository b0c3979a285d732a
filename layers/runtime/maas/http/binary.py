"""The Open Inference Protocol's binary tensor data extension, as Triton and KServe accept it.

``tritonclient`` sends tensors this way by default: the body is the JSON request
(``Inference-Header-Content-Length`` bytes of it) followed by the raw tensors, each input saying
its byte count in ``parameters.binary_data_size``. Numbers are little-endian; ``BYTES`` elements
are each a 4-byte little-endian length and the bytes. Outputs come back the same way when asked
(``parameters.binary_data`` on an output, or ``binary_data_output`` on the request).

The extension is a transport: ``unpack`` turns such a request into the JSON request every route
reads (validation, the pipeline and metrics stay as they are) and ``pack`` turns the JSON answer
into the binary one. Spec: Triton's ``binary_data.md`` extension.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maas.core.decode import parse_json_object
from maas.core.errors import PayloadTooLarge, RequestError

HEADER = "inference-header-content-length"
# the protocol's numeric datatypes as little-endian numpy types
NUMPY_TYPES = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


@dataclass(frozen=True, slots=True)
class BinaryOutputs:
    """Which outputs the client wants as binary data: all of them, or those it named."""

    every: bool = False
    names: frozenset[str] = field(default_factory=frozenset)

    def wanted(self, name: str) -> bool:
        return self.every or name in self.names


def is_binary(event: dict[str, Any]) -> bool:
    headers = event.get("headers") or {}
    return isinstance(headers, dict) and any(str(k).lower() == HEADER for k in headers)


def _body(event: dict[str, Any], max_bytes: int) -> bytes:
    raw = event.get("body") or ""
    encoded = raw.encode("utf-8", errors="surrogatepass") if isinstance(raw, str) else bytes(raw)
    if event.get("isBase64Encoded"):
        try:
            encoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(
                "the body is marked base64 but is not valid base64", code="invalid_body"
            ) from None
    if len(encoded) > max_bytes:
        raise PayloadTooLarge(
            f"the body is {len(encoded)} bytes, at most {max_bytes} are accepted", field="body"
        )
    return encoded


def _elements(chunk: bytes, datatype: Any, where: str) -> list[Any]:
    """One input's raw bytes as the flat JSON data it stands for."""
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(chunk):
            if offset + 4 > len(chunk):
                raise RequestError(
                    f"{where} ends inside an element's length", code="invalid_binary", field=where
                )
            (length,) = struct.unpack_from("<I", chunk, offset)
            element = chunk[offset + 4 : offset + 4 + length]
            if len(element) != length:
                raise RequestError(
                    f"{where} ends inside an element of {length} bytes", code="invalid_binary", field=where
                )
            try:
                values.append(element.decode("utf-8"))
            except UnicodeDecodeError:
                raise RequestError(
                    f"{where} holds an element that is not UTF-8", code="invalid_text", field=where
                ) from None
            offset += 4 + length
        return values
    kind = NUMPY_TYPES.get(str(datatype))
    if kind is None:
        raise RequestError(
            f"{where}: datatype {datatype!r} has no binary form", code="invalid_datatype", field=where
        )
    size = np.dtype(kind).itemsize
    if len(chunk) % size:
        raise RequestError(
            f"{where} is {len(chunk)} bytes, not a whole number of {datatype} elements ({size} bytes each)",
            code="invalid_binary",
            field=where,
        )
    return list(np.frombuffer(chunk, dtype=kind).tolist())


def unpack(event: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], BinaryOutputs]:
    """A binary request as the JSON request it stands for, and the outputs wanted as binary."""
    body = _body(event, max_bytes)
    headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
    given = str(headers.get(HEADER, "")).strip()
    if not given.isdigit() or int(given) > len(body):
        raise RequestError(
            f"header Inference-Header-Content-Length is {given!r}: it must be the byte length of the JSON "
            f"at the start of the body ({len(body)} bytes)",
            code="invalid_binary",
            field=HEADER,
        )
    request = parse_json_object(body[: int(given)], "the JSON part of the body")
    tail = body[int(given) :]
    offset = 0
    inputs = request.get("inputs")
    for index, tensor in enumerate(inputs if isinstance(inputs, list) else []):
        parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
        if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
            continue
        where = f"inputs[{index}].parameters.binary_data_size"
        size = parameters.pop("binary_data_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(tail):
            raise RequestError(
                f"{where} is {size!r}, but {len(tail) - offset} bytes of tensor data are left",
                code="invalid_binary",
                field=where,
            )
        tensor["data"] = _elements(tail[offset : offset + size], tensor.get("datatype"), f"inputs[{index}]")
        offset += size
    if offset != len(tail):
        raise RequestError(
            f"the body holds {len(tail) - offset} bytes after the tensors its inputs describe",
            code="invalid_binary",
            field="body",
        )
    parameters = request.get("parameters")
    every = isinstance(parameters, dict) and parameters.get("binary_data_output") is True
    outputs = request.get("outputs")
    names = frozenset(
        str(o.get("name"))
        for o in (outputs if isinstance(outputs, list) else [])
        if isinstance(o, dict)
        and isinstance(o.get("parameters"), dict)
        and o["parameters"].get("binary_data")
    )
    rewritten = copy.copy(event)
    rewritten["headers"] = {k: v for k, v in headers.items() if k != HEADER} | {
        "content-type": "application/json"
    }
    rewritten["body"] = json.dumps(request)
    rewritten["isBase64Encoded"] = False
    return rewritten, BinaryOutputs(every, names)


def _raw(output: dict[str, Any]) -> bytes:
    data = output.get("data") or []
    if output.get("datatype") == "BYTES":
        parts = [str(v).encode("utf-8") for v in data]
        return b"".join(struct.pack("<I", len(p)) + p for p in parts)
    return np.asarray(data, dtype=NUMPY_TYPES[str(output.get("datatype"))]).tobytes()


def pack(response: dict[str, Any], wanted: BinaryOutputs) -> dict[str, Any]:
    """A successful JSON answer with the wanted outputs moved into binary data after the JSON."""
    if int(response.get("statusCode", 500)) != 200 or not (wanted.every or wanted.names):
        return response
    raw = response.get("body") or ""
    text = base64.b64decode(raw).decode("utf-8") if response.get("isBase64Encoded") else str(raw)
    answer = json.loads(text)
    chunks = []
    for output in answer.get("outputs", []):
        if not wanted.wanted(str(output.get("name"))) or output.get("datatype") not in (
            *NUMPY_TYPES,
            "BYTES",
        ):
            continue
        data = _raw(output)
        chunks.append(data)
        output.pop("data", None)
        output["parameters"] = {**(output.get("parameters") or {}), "binary_data_size": len(data)}
    if not chunks:
        return response
    header = json.dumps(answer, allow_nan=False).encode("utf-8")
    headers = {k: v for k, v in (response.get("headers") or {}).items() if k.lower() != "content-type"}
    return {
        **response,
        "headers": {
            **headers,
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
        "body": base64.b64encode(header + b"".join(chunks)).decode("ascii"),
        "isBase64Encoded": True,
    }
