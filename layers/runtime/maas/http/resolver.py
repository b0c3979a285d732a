"""The resolver every HTTP function uses, and the bounded, decoded request body."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayHttpResolver

from maas.core.decode import parse_json_object
from maas.core.errors import PayloadTooLarge, RequestError, cut


def bounded_json(max_bytes: Callable[[], int]) -> Callable[[str], Any]:
    """A JSON body deserializer that refuses bodies over the limit before parsing them."""

    def loads(body: str) -> Any:
        limit = max_bytes()
        size = len(body.encode("utf-8", errors="surrogatepass"))
        if size > limit:
            raise PayloadTooLarge(f"the body is {size} bytes, at most {limit} are accepted", field="body")
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise  # Powertools' own validation names it: a 400 invalid_json
        except RecursionError:
            raise RequestError(
                "the body is nested too deeply", code="too_deeply_nested", field="body"
            ) from None
        except ValueError as error:  # an integer of more than 4,300 digits
            raise RequestError(
                f"the body is not valid JSON: {cut(str(error))}", code="invalid_json", field="body"
            ) from None

    return loads


def resolver(max_body_bytes: Callable[[], int], *, validation: bool = True) -> APIGatewayHttpResolver:
    """A resolver with typed, validated routes (the OpenAPI document is generated from them); a
    response that does not match its declared type is a 500, never a 4xx. Without ``validation``
    (the plain routes, which read and check their bodies themselves) pydantic is never imported."""
    return APIGatewayHttpResolver(
        enable_validation=validation,
        response_validation_error_http_code=HTTPStatus.INTERNAL_SERVER_ERROR if validation else None,
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
