"""The one place where errors become HTTP responses.

``status_for`` decides the status and ``error_response`` the body: ``{"error": {code, message,
field}}`` on the plain routes, the Open Inference Protocol's ``{"error": "message"}`` on its
``/v2`` routes and OpenAI's ``{"error": {message, type, param, code}}`` on ``/v1`` (which its
clients parse into their own exceptions). ``install_error_handlers`` wires both into a resolver, for our errors,
Powertools' validation errors, undecodable bodies, unknown routes and anything unexpected.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)

from maas.core.errors import (
    Conflict,
    MaasError,
    ModelUnavailable,
    NotFound,
    PayloadTooLarge,
    RegistryError,
    RequestError,
    Retired,
    UnsupportedMediaType,
    cut,
    error_detail,
    shown,
)
from maas.core.observability import logger

PROTOCOL_PREFIX = "/v2"
# OpenAI's routes: ``/v1/...`` (the multi-model function) and ``/models/{m}/v1/...`` (a model's).
_OPENAI_PATH = re.compile(r"^(?:/models/[^/]+)?/v1(?:/|$)")
# Set by clients that send tensors in the protocol's binary extension (Triton's, by default).


# Most specific first: the first class an error is an instance of decides its status.
_STATUS_BY_ERROR: tuple[tuple[type[MaasError], int], ...] = (
    (PayloadTooLarge, 413),
    (UnsupportedMediaType, 415),
    (RequestError, 400),
    (NotFound, 404),
    (Retired, 410),
    (Conflict, 409),
    (ModelUnavailable, 503),
    (RegistryError, 503),  # the registry cannot be read now: the service, not the request, is at fault
)
MESSAGE_LIMIT = 400
# A last guard only: messages are built from our own facts (names, versions, fields, error codes)
# and what AWS said travels in ``MaasError.detail``, which is logged and never answered.
_S3_URL = re.compile(r"s3://[^\s'\"]*")
_ARN = re.compile(r"arn:aws[\w-]*:[^\s'\"]*")
_VERSION_ID = re.compile(r"(?i)(version[ _-]?id\s*)[A-Za-z0-9._-]{16,}")


def public_message(message: str) -> str:
    """A message fit for a client: no S3 URL, ARN or S3 version id, and short."""
    text = _ARN.sub("<arn>", _S3_URL.sub("the registry", message))
    text = _VERSION_ID.sub(r"\1<hidden>", text)
    return cut(text, MESSAGE_LIMIT)


def route_family(path: str) -> str:
    """Which error shape a path's answers take: ``protocol``, ``openai`` or ``plain``."""
    if path.startswith(PROTOCOL_PREFIX):
        return "protocol"
    return "openai" if _OPENAI_PATH.match(path) else "plain"


def openai_error_type(status: int) -> str:
    """OpenAI's ``error.type`` for a status: its clients pick the exception class by the status."""
    return "invalid_request_error" if status < 500 else "server_error"


def openai_error_body(error: MaasError, message: str) -> dict[str, Any]:
    """``{"error": {message, type, param, code}}``: the body of an error answer on ``/v1``, and
    of the error chunk that ends a stream which failed after it started."""
    status = status_for(error)
    return {
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": error.field,
            "code": error.code,
        }
    }


def status_for(error: MaasError) -> int:
    for kind, status in _STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 500


def error_response(
    error: MaasError,
    *,
    protocol: bool = False,
    family: str | None = None,
    request_id: str | None = None,
) -> Response[Any]:
    """The one mapping from errors to HTTP: status by class; the body in the route family's shape
    (plain ``{"error": {code, message, field, request_id}}``, the protocol's ``{"error": message}``
    with ``code`` and ``request_id`` beside it, OpenAI's ``{"error": {message, type, param,
    code}}``). The message is cleaned by ``public_message``."""
    message = public_message(error.message)
    family = family or ("protocol" if protocol else "plain")
    body: dict[str, Any]
    if family == "protocol":
        body = {"error": message, "code": error.code, "request_id": request_id}
    elif family == "openai":
        body = openai_error_body(error, message)
    else:
        body = {"error": {**error.to_dict(), "message": message, "request_id": request_id}}
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


def _request_id(app: APIGatewayHttpResolver) -> str | None:
    """API Gateway's id of the request (what its access log shows), else Lambda's."""
    try:
        found = app.current_event.request_context.request_id
    except (KeyError, AttributeError, TypeError):
        found = None
    if not found:
        found = getattr(app.lambda_context, "aws_request_id", None)
    return str(found) if found else None


def install_error_handlers(
    app: APIGatewayHttpResolver,
    record: Callable[[MaasError, int], None] | None = None,
) -> None:
    """Every failure of ``app``'s routes becomes ``error_response``: ours, Powertools' validation
    errors, undecodable bodies, unknown routes, content nested too deeply (a 400), and (as a 500)
    anything unexpected. What AWS said (``error_detail``) is logged, never answered."""

    def respond(error: MaasError) -> Response[Any]:
        status = status_for(error)
        if record is not None:
            record(error, status)
        logged = {"error": error.to_dict(), "detail": error_detail(error)}
        if status >= 500:
            logger.error("request failed", extra=logged)
        else:
            logger.info("request refused", extra=logged)
        return error_response(
            error,
            family=route_family(app.current_event.raw_path),
            request_id=_request_id(app),
        )

    @app.exception_handler(MaasError)  # type: ignore[untyped-decorator]
    def handle_maas_error(error: MaasError) -> Response[Any]:
        return respond(error)

    def body_error(error: MaasError) -> Response[Any]:
        """A body that cannot be read (a binary tensor request arrives here already as JSON:
        ``maas.http.binary``)."""
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
                f"no route {event.request_context.http.method} {shown(event.raw_path)}",
                code="route_not_found",
                field="path",
            )
        )

    @app.exception_handler(RecursionError)  # type: ignore[untyped-decorator]
    def handle_too_deep(_: RecursionError) -> Response[Any]:
        """Content nested deeper than the interpreter's stack, wherever it was noticed: the request's fault."""
        return body_error(
            RequestError("the body is nested too deeply", code="too_deeply_nested", field="body")
        )

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def handle_unexpected(error: Exception) -> Response[Any]:
        logger.exception("unexpected error")
        return respond(MaasError(f"internal error: {type(error).__name__}"))
