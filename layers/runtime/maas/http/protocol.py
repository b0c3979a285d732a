"""The Open Inference Protocol (KServe/Triton "v2") model routes, as a Powertools ``Router``.

Tensors in, tensors out: the request names each model input with its shape, datatype and data
(flat or nested), and the answer gives each requested output the same way. The ONNX session's own
signature decides what is accepted, so any model the runtime can load speaks the protocol without
model-specific code; the tensors then go through the same pipeline as the plain routes.
Spec: https://github.com/kserve/open-inference-protocol (REST).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from maas.core import pipeline
from maas.core.deadline import deadline_for
from maas.core.errors import RequestError, shown
from maas.core.observability import record_generation, record_metadata_request, record_prediction
from maas.core.runtime import ModelRuntime
from maas.core.service import ServedModel
from maas.core.signature import TensorSpec, cast_batch
from maas.core.tasks.base import Generator
from maas.http.protocol_types import (
    DATATYPE_BY_DTYPE,
    PLATFORM,
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ModelMetadataResponse,
    ModelReadyResponse,
    RequestInput,
    ResponseOutput,
    error_responses,
)

_NUMERIC_LEAF = (int, float)


def datatype_of(spec: TensorSpec) -> str:
    return DATATYPE_BY_DTYPE.get(spec.dtype, spec.dtype.upper())


def metadata_tensor(spec: TensorSpec) -> MetadataTensor:
    return MetadataTensor(
        name=spec.name, datatype=datatype_of(spec), shape=[-1 if d is None else d for d in spec.shape]
    )


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
            f"{where}.data holds {type(wrong).__name__} {shown(wrong)}, datatype {expected} takes "
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
    """An answer and what the metrics need: instances scored, the pipeline's time, and tokens
    for a generator."""

    response: InferenceResponse
    batch: int
    latency_ms: float
    tokens: int | None = None


def infer(
    served: ServedModel, request: InferenceRequest, max_batch: int, deadline: float | None = None
) -> Inferred:
    """Decode the tensors against the model's request signature, then run the pipeline: the
    plain route's validation and preprocessing for one tensor, the checked tensors as feeds for
    several, one decoding loop for a generator. Encode the requested outputs."""
    task = served.task
    specs = {spec.name: spec for spec in task.request_inputs()}
    arrays: dict[str, np.ndarray] = {}
    fields: dict[str, str] = {}
    for index, given in enumerate(request.inputs):
        where = f"inputs[{index}]"
        spec = specs.get(given.name)
        if spec is None:
            raise RequestError(
                f"{where}.name {shown(given.name)} is not an input of {served.name}; it takes {sorted(specs)}",
                code="unknown_input",
                field=f"{where}.name",
            )
        if given.name in arrays:
            raise RequestError(f"{where}.name {shown(given.name)} is given twice", field=f"{where}.name")
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
    if isinstance(task, Generator):
        return _generate(served, task, request, arrays, wanted, deadline)
    if len(arrays) == 1:
        ((name, array),) = arrays.items()
        feeds = pipeline.decode(served, _instances(array), field=fields[name])
    else:  # several graph inputs: the checked tensors are the feeds
        feeds = arrays
    results, latency_ms = pipeline.run_outputs(served, feeds, wanted)
    response = InferenceResponse(
        model_name=served.name,
        model_version=str(served.version),
        id=request.id,
        outputs=[_output(name, results[name]) for name in wanted],
    )
    return Inferred(response, batches.pop(), latency_ms)


def _requested_outputs(served: ServedModel, request: InferenceRequest) -> list[str]:
    """The outputs asked for (all by default), each one the model gives."""
    known = [spec.name for spec in served.task.request_outputs()]
    wanted = [o.name for o in request.outputs] if request.outputs else known
    for index, name in enumerate(wanted):
        if name not in known:
            raise RequestError(
                f"outputs[{index}].name {shown(name)} is not an output of {served.name}; it gives {known}",
                code="unknown_output",
                field=f"outputs[{index}].name",
            )
    return list(dict.fromkeys(wanted))


def _generate(
    served: ServedModel,
    task: Generator,
    request: InferenceRequest,
    arrays: dict[str, np.ndarray],
    wanted: list[str],
    deadline: float | None = None,
) -> Inferred:
    """A text generator: one ``prompt`` tensor, the sampling settings as request ``parameters``,
    one ``text`` per returned sequence. The plain route's checks apply, named in protocol terms."""
    prompts = _instances(arrays["prompt"])
    if len(prompts) != 1:
        raise RequestError(
            f"inputs[0].shape is [{len(prompts)}]: a request carries one prompt", field="inputs[0].shape"
        )
    parameters = request.parameters or {}
    body = {**{k: v for k, v in parameters.items() if k in task.parameters}, "prompt": prompts[0]}
    try:
        settings = pipeline.decode_generation(served, body, deadline=deadline)
    except RequestError as error:
        field = "inputs[0].data" if error.field == "prompt" else f"parameters.{error.field}"
        raise RequestError(f"{field}: {error.message}", code=error.code, field=field) from None
    generated = pipeline.generate(served, settings)
    texts = generated.continuations
    rows = len(texts)
    outputs = [
        ResponseOutput(name="text", shape=[rows], datatype="BYTES", data=texts),
        ResponseOutput(
            name="finish_reason",
            shape=[rows],
            datatype="BYTES",
            data=[s.finish_reason for s in generated.sequences],
        ),
        ResponseOutput(
            name="completion_tokens",
            shape=[rows],
            datatype="INT64",
            data=[s.tokens for s in generated.sequences],
        ),
    ]
    given = {spec.name for spec in task.request_outputs()}
    response = InferenceResponse(
        model_name=served.name,
        model_version=str(served.version),
        id=request.id,
        outputs=[o for o in outputs if o.name in wanted and o.name in given],
    )
    return Inferred(response, len(texts), generated.latency_ms, tokens=generated.tokens)


def protocol_router(runtime: ModelRuntime) -> Router:
    """The six model routes; the versioned ones serve that version, whatever the aliases say."""
    router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated

    def metadata(model: str, version: str | None) -> ModelMetadataResponse:
        served = pipeline.resolve(runtime, model, version)
        record_metadata_request(served.name, served.version)
        return ModelMetadataResponse(
            name=served.name,
            versions=[str(v) for v in runtime.service.registry.list_versions(served.name)],
            platform=PLATFORM,
            inputs=[metadata_tensor(spec) for spec in served.task.request_inputs()],
            outputs=[metadata_tensor(spec) for spec in served.task.request_outputs()],
        )

    def ready(model: str, version: str | None) -> ModelReadyResponse:
        served = pipeline.resolve(runtime, model, version)
        return ModelReadyResponse(name=served.name, ready=True)

    def run(model: str, version: str | None, request: InferenceRequest) -> InferenceResponse:
        served = pipeline.resolve(runtime, model, version)
        deadline = deadline_for(getattr(router, "lambda_context", None), http=True)
        result = infer(served, request, runtime.settings.max_batch, deadline)
        if result.tokens is not None:
            record_generation(
                served.name, served.version, result.batch, result.latency_ms, tokens=result.tokens
            )
        else:
            record_prediction(served.name, served.version, result.batch, result.latency_ms)
        return result.response

    tags = ["Open Inference Protocol v2"]
    docs: dict[str, Any] = {"tags": tags, "responses": error_responses(404, 410, 503)}
    infer_docs: dict[str, Any] = {"tags": tags, "responses": error_responses(400, 404, 410, 413, 415, 503)}

    @router.get("/v2/models/<model>", summary="Model metadata", **docs)
    def model_metadata(model: str) -> ModelMetadataResponse:
        return metadata(model, None)

    @router.get("/v2/models/<model>/versions/<version>", summary="Model version metadata", **docs)
    def model_version_metadata(model: str, version: str) -> ModelMetadataResponse:
        return metadata(model, version)

    @router.get("/v2/models/<model>/ready", summary="Model readiness", **docs)
    def model_ready(model: str) -> ModelReadyResponse:
        return ready(model, None)

    @router.get("/v2/models/<model>/versions/<version>/ready", summary="Model version readiness", **docs)
    def model_version_ready(model: str, version: str) -> ModelReadyResponse:
        return ready(model, version)

    @router.post("/v2/models/<model>/infer", summary="Inference", **infer_docs)
    def model_infer(model: str, request: Annotated[InferenceRequest, Body()]) -> InferenceResponse:
        return run(model, None, request)

    @router.post(
        "/v2/models/<model>/versions/<version>/infer", summary="Inference on a version", **infer_docs
    )
    def model_version_infer(
        model: str, version: str, request: Annotated[InferenceRequest, Body()]
    ) -> InferenceResponse:
        return run(model, version, request)

    return router
