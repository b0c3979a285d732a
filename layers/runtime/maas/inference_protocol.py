"""The Open Inference Protocol (KServe/Triton "v2") REST routes of a model function.

Tensors in, tensors out: the request names each model input with its shape, datatype and data
(flat or nested), and the answer gives each requested output the same way. The ONNX session's own
signature decides what is accepted, so any model the runtime can load speaks the protocol without
model-specific code. Spec: https://github.com/kserve/open-inference-protocol (REST).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field

from maas.errors import NotFound, RequestError
from maas.observability import record_generation, record_metadata_request, record_prediction
from maas.runtime import ModelRuntime
from maas.service import ServedModel
from maas.signature import TensorSpec, cast_batch

PLATFORM = "onnx"
GENERATION = "text-generation"
# The plain generate route's fields that a protocol request passes as ``parameters``.
GENERATION_PARAMETERS = ("max_new_tokens", "num_return_sequences", "temperature", "top_k", "seed")
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
_NUMERIC_LEAF = (int, float)


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


class ProtocolError(_Message):
    """The protocol's error shape: one message."""

    error: str


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


def datatype_of(spec: TensorSpec) -> str:
    return DATATYPE_BY_DTYPE.get(spec.dtype, spec.dtype.upper())


def metadata_tensor(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(
        name=spec.name, datatype=datatype_of(spec), shape=[-1 if d is None else d for d in spec.shape]
    )


def parse_version(raw: str) -> int:
    """A version in a path is a registry version number; anything else names no version."""
    if not raw.isdigit() or int(raw) < 1:
        raise NotFound(f"version {raw!r} does not exist: versions are numbers from 1", field="version")
    return int(raw)


def _leaves(data: list[Any]) -> list[Any]:
    """Row-major flattening of nested lists (the protocol allows flat or nested data)."""
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        else:
            flat.append(item)
    return flat


_END = object()


def _tensor(given: RequestInput, spec: TensorSpec, where: str, max_batch: int) -> np.ndarray:
    """One request input as the array the session takes, or a 400 naming the field and the reason."""
    expected = datatype_of(spec)
    if given.datatype != expected:
        raise RequestError(
            f"{where}.datatype is {given.datatype}, but input {spec.name!r} takes {expected}",
            code="invalid_datatype",
            field=f"{where}.datatype",
        )
    values = _leaves(given.data)
    count = math.prod(given.shape)
    if len(values) != count:
        raise RequestError(
            f"{where}.shape {given.shape} holds {count} elements, but {where}.data has {len(values)}",
            code="shape_mismatch",
            field=f"{where}.shape",
        )
    if not given.shape or given.shape[0] == 0:
        raise RequestError(f"{where}.shape must start with a batch of at least 1", field=f"{where}.shape")
    if given.shape[0] > max_batch:
        raise RequestError(
            f"{where} has a batch of {given.shape[0]}, at most {max_batch} are allowed per request",
            code="batch_too_large",
            field=f"{where}.shape",
        )
    if expected == "BYTES":
        wrong = next((v for v in values if not isinstance(v, str)), None)
    elif expected == "BOOL":
        wrong = next((v for v in values if not isinstance(v, bool)), None)
    else:
        wrong = next((v for v in values if isinstance(v, bool) or not isinstance(v, _NUMERIC_LEAF)), None)
    if wrong is not None:
        raise RequestError(
            f"{where}.data holds {type(wrong).__name__} {wrong!r}, datatype {expected} takes "
            + ("strings" if expected == "BYTES" else "booleans" if expected == "BOOL" else "numbers"),
            code="invalid_type",
            field=f"{where}.data",
        )
    try:
        with np.errstate(over="ignore"):  # a float beyond FP32 becomes inf, refused by cast_batch
            array = np.asarray(values, dtype=np.dtype(spec.dtype)).reshape(given.shape)
    except (OverflowError, ValueError):
        raise RequestError(
            f"{where}.data holds values out of range for {expected}",
            code="invalid_value",
            field=f"{where}.data",
        ) from None
    return cast_batch(array, spec, f"{where}.data")


def _output(name: str, array: np.ndarray) -> ResponseOutput:
    kind = "object" if array.dtype.kind in "OUS" else array.dtype.name
    data = [str(v) for v in array.ravel()] if kind == "object" else array.ravel().tolist()
    return ResponseOutput(
        name=name, shape=list(array.shape), datatype=DATATYPE_BY_DTYPE.get(kind, kind.upper()), data=data
    )


def _instances(array: np.ndarray) -> list[Any]:
    """The batch's rows as the plain route's instances; a row of one element is that element."""
    if math.prod(array.shape[1:]) == 1:
        return list(array.reshape(-1).tolist())
    return list(array.tolist())


@dataclass(frozen=True, slots=True)
class Inferred:
    """An answer and what the metrics need: instances scored, and tokens for a generator."""

    response: InferenceResponse
    batch: int
    tokens: int | None = None


def infer(served: ServedModel, request: InferenceRequest, max_batch: int) -> Inferred:
    """Check the tensors against the model's request signature, prepare them as the plain route
    does (same validation, same preprocessing), run the session, answer the requested outputs."""
    task = served.task
    predictor = task.predictor
    specs = {spec.name: spec for spec in task.request_inputs()}
    arrays: dict[str, np.ndarray] = {}
    fields: dict[str, str] = {}
    for index, given in enumerate(request.inputs):
        where = f"inputs[{index}]"
        spec = specs.get(given.name)
        if spec is None:
            raise RequestError(
                f"{where}.name {given.name!r} is not an input of {served.name}; it takes {sorted(specs)}",
                code="unknown_input",
                field=f"{where}.name",
            )
        if given.name in arrays:
            raise RequestError(f"{where}.name {given.name!r} is given twice", field=f"{where}.name")
        arrays[given.name] = _tensor(given, spec, where, max_batch)
        fields[given.name] = f"{where}.data"
    missing = sorted(set(specs) - set(arrays))
    if missing:
        raise RequestError(
            f"inputs is missing {missing}: {served.name} takes {sorted(specs)}",
            code="missing_input",
            field="inputs",
        )
    batches = {array.shape[0] for array in arrays.values()}
    if len(batches) > 1:
        raise RequestError(f"inputs have different batch sizes {sorted(batches)}", field="inputs")
    wanted = _requested_outputs(served, request)
    if task.name == GENERATION:
        return _generate(served, request, arrays, wanted)
    if len(arrays) == 1:
        ((name, array),) = arrays.items()
        feeds = task.prepare(_instances(array), field=fields[name])
    else:  # several graph inputs: the checked tensors are the feeds
        feeds = arrays
    results = predictor.run(feeds, wanted)
    response = InferenceResponse(
        model_name=served.name,
        model_version=str(served.version),
        id=request.id,
        outputs=[_output(name, results[name]) for name in wanted],
    )
    return Inferred(response, batches.pop())


def _requested_outputs(served: ServedModel, request: InferenceRequest) -> list[str]:
    """The outputs asked for (all by default), each one the model gives."""
    known = [spec.name for spec in served.task.request_outputs()]
    wanted = [o.name for o in request.outputs] if request.outputs else known
    for index, name in enumerate(wanted):
        if name not in known:
            raise RequestError(
                f"outputs[{index}].name {name!r} is not an output of {served.name}; it gives {known}",
                code="unknown_output",
                field=f"outputs[{index}].name",
            )
    return list(dict.fromkeys(wanted))


def _generate(
    served: ServedModel, request: InferenceRequest, arrays: dict[str, np.ndarray], wanted: list[str]
) -> Inferred:
    """A text generator: one ``prompt`` tensor, the sampling settings as request ``parameters``,
    one ``text`` per returned sequence. The plain route's checks apply, named in protocol terms."""
    task: Any = served.task
    prompts = _instances(arrays["prompt"])
    if len(prompts) != 1:
        raise RequestError(
            f"inputs[0].shape is [{len(prompts)}]: a request carries one prompt", field="inputs[0].shape"
        )
    parameters = request.parameters or {}
    body = {**{k: v for k, v in parameters.items() if k in GENERATION_PARAMETERS}, "prompt": prompts[0]}
    try:
        settings = task.parse(body)
    except RequestError as error:
        field = "inputs[0].data" if error.field == "prompt" else f"parameters.{error.field}"
        raise RequestError(f"{field}: {error.message}", code=error.code, field=field) from None
    texts = task.generate(settings)
    outputs = [ResponseOutput(name="text", shape=[len(texts)], datatype="BYTES", data=texts)]
    response = InferenceResponse(
        model_name=served.name,
        model_version=str(served.version),
        id=request.id,
        outputs=[o for o in outputs if o.name in wanted],
    )
    return Inferred(response, len(texts), tokens=settings.max_new_tokens * len(texts))


def register_protocol_routes(app: APIGatewayHttpResolver, runtime: ModelRuntime) -> None:
    """The six model routes; the versioned ones serve that version, whatever the aliases say."""

    def served_model(model: str, version: str | None) -> ServedModel:
        if model != runtime.model_name:
            raise NotFound(
                f"unknown model {model!r}: this function serves {runtime.model_name!r}",
                code="model_not_found",
                field="model",
            )
        if version is None:
            return runtime.service.current()
        return runtime.service.version(parse_version(version))

    def metadata(model: str, version: str | None) -> ModelMetadataResponse:
        served = served_model(model, version)
        record_metadata_request(
            served.name, served.version, cold_start=runtime.take_cold_start(), load_ms=runtime.take_load_ms()
        )
        return ModelMetadataResponse(
            name=served.name,
            versions=[str(v) for v in runtime.service.registry.list_versions(served.name)],
            platform=PLATFORM,
            inputs=[metadata_tensor(spec) for spec in served.task.request_inputs()],
            outputs=[metadata_tensor(spec) for spec in served.task.request_outputs()],
        )

    def ready(model: str, version: str | None) -> ModelReadyResponse:
        served = served_model(model, version)
        return ModelReadyResponse(name=served.name, ready=True)

    def run(model: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        served = served_model(model, version)
        started = time.perf_counter()
        result = infer(served, request, runtime.settings.max_batch)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        cold, load_ms = runtime.take_cold_start(), runtime.take_load_ms()
        if result.tokens is not None:
            record_generation(
                served.name,
                served.version,
                result.batch,
                elapsed_ms,
                tokens=result.tokens,
                cold_start=cold,
                load_ms=load_ms,
            )
        else:
            record_prediction(
                served.name, served.version, result.batch, elapsed_ms, cold_start=cold, load_ms=load_ms
            )
        return result.response

    tags = ["Open Inference Protocol v2"]
    docs: dict[str, Any] = {"tags": tags, "responses": error_responses(404, 410, 503)}
    infer_docs: dict[str, Any] = {"tags": tags, "responses": error_responses(400, 404, 410, 413, 415, 503)}

    @app.get("/v2/models/<model>", summary="Model metadata", **docs)
    def model_metadata(model: str) -> ModelMetadataResponse:
        return metadata(model, None)

    @app.get("/v2/models/<model>/versions/<version>", summary="Model version metadata", **docs)
    def model_version_metadata(model: str, version: str) -> ModelMetadataResponse:
        return metadata(model, version)

    @app.get("/v2/models/<model>/ready", summary="Model readiness", **docs)
    def model_ready(model: str) -> ModelReadyResponse:
        return ready(model, None)

    @app.get("/v2/models/<model>/versions/<version>/ready", summary="Model version readiness", **docs)
    def model_version_ready(model: str, version: str) -> ModelReadyResponse:
        return ready(model, version)

    @app.post("/v2/models/<model>/infer", summary="Inference", **infer_docs)
    def model_infer(model: str, request: Annotated[InferenceRequest, Body()]) -> InferenceResponse:
        return run(model, None, request)

    @app.post("/v2/models/<model>/versions/<version>/infer", summary="Inference on a version", **infer_docs)
    def model_version_infer(
        model: str, version: str, request: Annotated[InferenceRequest, Body()]
    ) -> InferenceResponse:
        return run(model, version, request)
