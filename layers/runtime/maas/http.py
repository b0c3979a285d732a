"""HTTP routes on Powertools' APIGatewayHttpResolver (API Gateway HTTP API, payload 2.0).

Also the one place where errors become HTTP responses: ``error_response``.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from maas.errors import (
    Conflict,
    MaasError,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    RequestError,
)
from maas.observability import (
    logger,
    record_error,
    record_generation,
    record_metadata_request,
    record_prediction,
)
from maas.runtime import ModelRuntime
from maas.tasks import check_instances

# Most specific first: the first class an error is an instance of decides its status.
_STATUS_BY_ERROR: tuple[tuple[type[MaasError], int], ...] = (
    (PayloadTooLarge, 413),
    (RequestError, 400),
    (NotFound, 404),
    (Conflict, 409),
    (ModelUnavailable, 503),
)


def status_for(error: MaasError) -> int:
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def error_response(error: MaasError) -> Response[Any]:
    """The one mapping from errors to HTTP: status by class, body ``{"error": {code, message, field}}``."""
    return Response(
        status_code=status_for(error),
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": error.to_dict()}),
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

    @app.post("/models/<model>/generate")
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
    """The model function's routes: ``POST /models/{m}/predict`` (``/generate`` for a generator)
    and ``GET /models/{m}``."""
    app = APIGatewayHttpResolver()
    if generation:
        add_generation_routes(app, runtime)
    else:
        add_prediction_routes(app, runtime)

    @app.get("/models/<model>")
    def describe(model: str) -> dict[str, Any]:
        own_model(runtime, model)
        served = runtime.service.current()
        record_metadata_request(
            served.name, served.version, cold_start=runtime.take_cold_start(), load_ms=runtime.take_load_ms()
        )
        return served.describe()

    def respond(error: MaasError) -> Response[Any]:
        status = status_for(error)
        record_error(runtime.model_name, status, error.code, cold_start=runtime.take_cold_start())
        if status >= 500:
            logger.error("request failed", extra={"error": error.to_dict()})
        else:
            logger.info("request refused", extra={"error": error.to_dict()})
        return error_response(error)

    @app.exception_handler(MaasError)
    def handle_maas_error(error: MaasError) -> Response[Any]:
        return respond(error)

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

    return app


def add_prediction_routes(app: APIGatewayHttpResolver, runtime: ModelRuntime) -> None:
    """``POST /models/{m}/predict`` with ``{"instances": [...]}``, for every classifier task."""

    @app.post("/models/<model>/predict")
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
