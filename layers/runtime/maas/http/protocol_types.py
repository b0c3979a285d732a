"""The Open Inference Protocol's messages (KServe/Triton "v2" REST), in one module.

pydantic models for the requests and answers, the protocol's datatypes, and the error responses
each route documents in the OpenAPI document (the plain routes' error body too). Nothing here
imports numpy or onnxruntime: the server-wide routes (the registry function) use these types
too. Only the typed routes import this module: a model function loads it at its first ``/v2``
request.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PLATFORM = "onnx"
Datatype = Literal["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
# numpy dtype names (as TensorSpec holds them) <-> protocol datatypes
DATATYPE_BY_DTYPE: dict[str, str] = {
    "object": "BYTES",
    "bool": "BOOL",
    "uint8": "UINT8",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


class _Message(BaseModel):
    """Unknown fields are ignored, as the protocol allows extensions to add their own."""

    model_config = ConfigDict(extra="ignore")


class MetadataTensor(_Message):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size (the batch)")


class ModelMetadataResponse(_Message):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ModelReadyResponse(_Message):
    name: str
    ready: bool


class RequestInput(_Message):
    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] = Field(description="row-major, flat or nested as the shape")


class RequestOutput(_Message):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Message):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


def _omitted_if_none() -> Any:
    """An optional answer field that is left out, not sent as null, when it has no value."""
    return Field(default=None, exclude_if=lambda value: value is None)


class ResponseOutput(_Message):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = _omitted_if_none()
    data: list[Any]


class InferenceResponse(_Message):
    model_name: str
    model_version: str | None = _omitted_if_none()
    id: str | None = Field(
        default=None, exclude_if=lambda value: value is None, description="the request's id"
    )
    parameters: dict[str, Any] | None = _omitted_if_none()
    outputs: list[ResponseOutput]


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None
    request_id: str | None = None


class PlainError(BaseModel):
    """The plain routes' error body (the protocol routes answer ``{"error": "message"}``)."""

    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error (4xx) or server_error (5xx)")
    param: str | None
    code: str


class OpenAIError(BaseModel):
    """OpenAI's error body, which its clients raise from (``openai.BadRequestError``...)."""

    error: OpenAIErrorDetail


class ProtocolError(_Message):
    """The protocol's error shape: one message (and, beside it, our code and the request id)."""

    error: str
    code: str | None = None
    request_id: str | None = None


_ERRORS = {
    400: "malformed request: the message names the field and the reason",
    404: "unknown model, version or route",
    410: "the version was retired and is not served",
    413: "the body is larger than the function accepts",
    415: "the body is not JSON",
    503: "no version of the model can be served right now",
}


def error_responses(*statuses: int, model: type[BaseModel] | None = None) -> dict[int, Any]:
    """OpenAPI ``responses`` of a route: 200 (its return type) and the error statuses it can answer."""
    schema = model or ProtocolError
    errors = {
        status: {"description": _ERRORS[status], "content": {"application/json": {"model": schema}}}
        for status in statuses
    }
    return {200: {"description": "OK"}, **errors}
