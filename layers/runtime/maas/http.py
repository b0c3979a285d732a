"""HTTP routes on Powertools' APIGatewayHttpResolver (API Gateway HTTP API, payload 2.0).

Also the one place where errors become HTTP responses: ``status_for`` decides the status and
``error_response`` the body, ``{"error": {code, message, field}}`` on the plain routes and the
Open Inference Protocol's ``{"error": "message"}`` on its ``/v2`` routes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import BaseModel

from maas.errors import (
    Conflict,
    MaasError,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    RequestError,
    Retired,
    UnsupportedMediaType,
)
from maas.inference_protocol import error_responses, register_protocol_routes
from maas.observability import (
    logger,
    record_error,
    record_generation,
    record_metadata_request,
    record_prediction,
)
from maas.runtime import ModelRuntime
from maas.tasks import check_instances

PROTOCOL_PREFIX = "/v2"
# Set by clients that send tensors in the protocol's binary extension (Triton's, by default).
BINARY_HEADER = "inference-header-content-length"


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None


class PlainError(BaseModel):
    """The plain routes' error body (the protocol routes answer ``{"error": "message"}``)."""

    error: ErrorDetail


# Most specific first: the first class an error is an instance of decides its status.
_STATUS_BY_ERROR: tuple[tuple[type[MaasError], int], ...] = (
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (RequestError, 400),
    (NotFound, 404),
    (Retired, 410),
    (Conflict, 409),
    (ModelUnavailable, 503),
)


def status_for(error: MaasError) -> int:
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def error_response(error: MaasError, *, protocol: bool = False) -> Response[Any]:
    """The one mapping from errors to HTTP: status by class; the body in the route family's shape."""
    body = {"error": error.message} if protocol else {"error": error.to_dict()}
    return Response(
        status_code=status_for(error),
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
    )


def _location(loc: tuple[Any, ...]) -> str:
    """pydantic's ``("body", "inputs", 0, "datatype")`` as ``inputs[0].datatype``."""
    parts = [p for p in loc if p != "body"] if len(loc) > 1 else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def validation_error(error: RequestValidationError) -> RequestError:
    """Powertools' request validation failure as our 400: the first problem, by field."""
    problems = list(error.errors())
    first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "invalid JSON")
        return RequestError(f"the body is not valid JSON: {detail}", code="invalid_json", field="body")
    field = _location(tuple(first.get("loc", ("body",))))
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return RequestError(f"{field}: {first.get('msg', 'invalid')}{more}", code="invalid_request", field=field)


def install_error_handlers(
    app: APIGatewayHttpResolver, record: Callable[[MaasError, int], None] | None = None
) -> None:
    """Every failure of ``app``'s routes becomes ``error_response``: ours, Powertools' validation
    errors, undecodable bodies, unknown routes, and (as a 500) anything unexpected."""

    def respond(error: MaasError) -> Response[Any]:
        status = status_for(error)
        if record is not None:
            record(error, status)
        if status >= 500:
            logger.error("request failed", extra={"error": error.to_dict()})
        else:
            logger.info("request refused", extra={"error": error.to_dict()})
        return error_response(error, protocol=app.current_event.raw_path.startswith(PROTOCOL_PREFIX))

    @app.exception_handler(MaasError)
    def handle_maas_error(error: MaasError) -> Response[Any]:
        return respond(error)

    def body_error(error: MaasError) -> Response[Any]:
        """A body that cannot be read; a request in the binary tensor extension is told so."""
        if BINARY_HEADER in app.current_event.headers:
            error = RequestError(
                "the binary tensor data extension is not supported: send tensors as JSON "
                "(tritonclient: binary_data=False)",
                code="binary_data_unsupported",
                field=BINARY_HEADER,
            )
        return respond(error)

    @app.exception_handler(RequestValidationError)
    def handle_invalid(error: RequestValidationError) -> Response[Any]:
        return body_error(validation_error(error))

    @app.exception_handler(RequestUnsupportedContentType)
    def handle_unsupported(_: RequestUnsupportedContentType) -> Response[Any]:
        content_type = app.current_event.headers.get("content-type", "")
        return body_error(
            UnsupportedMediaType(
                f"content-type {content_type!r} is not accepted: send application/json", field="content-type"
            )
        )

    @app.exception_handler([binascii.Error, UnicodeDecodeError])
    def handle_undecodable(_: ValueError) -> Response[Any]:
        return body_error(
            RequestError("the body is not valid base64-encoded UTF-8", code="invalid_body", field="body")
        )

    @app.not_found
    def handle_not_found(_: NotFoundError) -> Response[Any]:
        event = app.current_event
        return respond(
            NotFound(
                f"no route {event.request_context.http.method} {event.raw_path}",
                code="route_not_found",
                field="path",
            )
        )

    @app.exception_handler(Exception)
    def handle_unexpected(error: Exception) -> Response[Any]:
        logger.exception("unexpected error")
        return respond(MaasError(f"internal error: {type(error).__name__}"))


def bounded_json(max_bytes: Callable[[], int]) -> Callable[[str], Any]:
    """A JSON body deserializer that refuses bodies over the limit before parsing them."""

    def loads(body: str) -> Any:
        limit = max_bytes()
        size = len(body.encode("utf-8", errors="surrogatepass"))
        if size > limit:
            raise PayloadTooLarge(f"the body is {size} bytes, at most {limit} are accepted", field="body")
        return json.loads(body)

    return loads


def resolver(max_body_bytes: Callable[[], int]) -> APIGatewayHttpResolver:
    """A resolver with typed, validated routes (the OpenAPI document is generated from them); a
    response that does not match its declared type is a 500, never a 4xx."""
    return APIGatewayHttpResolver(
        enable_validation=True,
        response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        json_body_deserializer=bounded_json(max_body_bytes),
    )


def read_json_object(event: Any, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object: base64 bodies decoded, size bounded, every failure a 4xx."""
    raw = event.body
    if raw is None or raw == "":
        raise RequestError("the request has no body; send a JSON object", code="missing_body", field="body")
    encoded = raw.encode("utf-8", errors="surrogatepass")
    if event.is_base64_encoded:
        if len(encoded) > (max_bytes * 4) // 3 + 4:
            raise PayloadTooLarge(f"the body is larger than {max_bytes} bytes", field="body")
        try:
            encoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(
                "the body is marked base64 but is not valid base64", code="invalid_body", field="body"
            ) from None
    if len(encoded) > max_bytes:
        raise PayloadTooLarge(
            f"the body is {len(encoded)} bytes, at most {max_bytes} are accepted", field="body"
        )
    return parse_json_object(encoded, "the body")


def parse_json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object from an HTTP body or a queue message; anything else is a ``RequestError``."""
    try:
        document = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, ValueError) as error:
        raise RequestError(f"{what} is not valid JSON: {error}", code="invalid_json", field="body") from None
    if not isinstance(document, dict):
        raise RequestError(
            f"{what} must be a JSON object, got {type(document).__name__}",
            code="invalid_type",
            field="body",
        )
    return document


PLAIN = ["Plain JSON"]


def own_model(runtime: ModelRuntime, model: str) -> None:
    if model != runtime.model_name:
        raise NotFound(
            f"this function serves model {runtime.model_name!r}, not {model!r}",
            code="model_not_found",
            field="model",
        )


def add_generation_routes(app: APIGatewayHttpResolver, runtime: ModelRuntime) -> None:
    """``POST /models/{m}/generate``: ``{"prompt", "max_new_tokens", "num_return_sequences",
    "temperature", "top_k", "seed"}`` -> the continuations, for a text-generation model."""
    from maas.generation import TextGenerator  # only generator functions import the decoder

    @app.post(
        "/models/<model>/generate",
        summary='Generate: {"prompt", "max_new_tokens", ...}',
        tags=PLAIN,
        responses=error_responses(400, 404, 413, 503, model=PlainError),
    )
    def generate(model: str) -> dict[str, Any]:
        own_model(runtime, model)
        body = read_json_object(app.current_event, runtime.settings.max_body_bytes)
        served = runtime.service.current()
        task = served.task
        if not isinstance(task, TextGenerator):
            raise RequestError(
                f"model {served.name!r} is a {task.name!r} model; it does not generate text",
                code="wrong_route",
                field="path",
            )
        request = task.parse(body)
        started = time.perf_counter()
        continuations = task.generate(request)
        record_generation(
            served.name,
            served.version,
            len(continuations),
            (time.perf_counter() - started) * 1000.0,
            tokens=request.max_new_tokens * len(continuations),
            cold_start=runtime.take_cold_start(),
            load_ms=runtime.take_load_ms(),
        )
        return {
            "model_name": served.name,
            "model_version": str(served.version),
            "prompt": request.prompt,
            "continuations": continuations,
            "parameters": {
                "max_new_tokens": request.max_new_tokens,
                "num_return_sequences": request.num_return_sequences,
                "temperature": request.temperature,
                "top_k": request.top_k,
                "seed": request.seed,
            },
        }


def build_http_app(runtime: ModelRuntime, *, generation: bool = False) -> APIGatewayHttpResolver:
    """The model function's routes: ``POST /models/{m}/predict`` (``/generate`` for a generator),
    ``GET /models/{m}`` and the Open Inference Protocol's model routes (``maas.inference_protocol``)."""
    app = resolver(lambda: runtime.settings.max_body_bytes)
    if generation:
        add_generation_routes(app, runtime)
    else:
        add_prediction_routes(app, runtime)

    @app.get(
        "/models/<model>",
        summary="The answering version",
        tags=PLAIN,
        responses=error_responses(404, 503, model=PlainError),
    )
    def describe(model: str) -> dict[str, Any]:
        own_model(runtime, model)
        served = runtime.service.current()
        record_metadata_request(
            served.name, served.version, cold_start=runtime.take_cold_start(), load_ms=runtime.take_load_ms()
        )
        return served.describe()

    register_protocol_routes(app, runtime)

    def record(error: MaasError, status: int) -> None:
        record_error(runtime.model_name, status, error.code, cold_start=runtime.take_cold_start())

    install_error_handlers(app, record)
    return app


def add_prediction_routes(app: APIGatewayHttpResolver, runtime: ModelRuntime) -> None:
    """``POST /models/{m}/predict`` with ``{"instances": [...]}``, for every classifier task."""

    @app.post(
        "/models/<model>/predict",
        summary='Predict: {"instances": [...]}',
        tags=PLAIN,
        responses=error_responses(400, 404, 413, 503, model=PlainError),
    )
    def predict(model: str) -> dict[str, Any]:
        own_model(runtime, model)
        settings = runtime.settings
        body = read_json_object(app.current_event, settings.max_body_bytes)
        instances = check_instances(body.get("instances"), settings.max_batch)
        served = runtime.service.current()
        feeds = served.task.prepare(instances)
        started = time.perf_counter()
        predictions = served.task.predict(feeds)
        record_prediction(
            served.name,
            served.version,
            len(instances),
            (time.perf_counter() - started) * 1000.0,
            labels=[str(p["label"]) for p in predictions if "label" in p],
            cold_start=runtime.take_cold_start(),
            load_ms=runtime.take_load_ms(),
        )
        return {"model_name": served.name, "model_version": str(served.version), "predictions": predictions}
