"""The one place where errors become HTTP responses.

``status_for`` decides the status and ``error_response`` the body: ``{"error": {code, message,
field}}`` on the plain routes and the Open Inference Protocol's ``{"error": "message"}`` on its
``/v2`` routes. ``install_error_handlers`` wires both into a resolver, for our errors,
Powertools' validation errors, undecodable bodies, unknown routes and anything unexpected.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from pydantic import BaseModel

from maas.core.errors import (
    Conflict,
    MaasError,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    RequestError,
    Retired,
    UnsupportedMediaType,
)
from maas.core.observability import logger

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
    first: dict[str, Any] = dict(problems[0]) if problems else {"loc": ("body",), "msg": "invalid request"}
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

    @app.exception_handler(MaasError)  # type: ignore[untyped-decorator]
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

    @app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
    def handle_invalid(error: RequestValidationError) -> Response[Any]:
        return body_error(validation_error(error))

    @app.exception_handler(RequestUnsupportedContentType)  # type: ignore[untyped-decorator]
    def handle_unsupported(_: RequestUnsupportedContentType) -> Response[Any]:
        content_type = app.current_event.headers.get("content-type", "")
        return body_error(
            UnsupportedMediaType(
                f"content-type {content_type!r} is not accepted: send application/json", field="content-type"
            )
        )

    @app.exception_handler([binascii.Error, UnicodeDecodeError])  # type: ignore[untyped-decorator]
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

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def handle_unexpected(error: Exception) -> Response[Any]:
        logger.exception("unexpected error")
        return respond(MaasError(f"internal error: {type(error).__name__}"))
