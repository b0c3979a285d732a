"""The containers every request arrives in: a JSON object, and a batch of instances.

Shared by the HTTP and event adapters (a body and a queue message are both JSON objects), so
it lives in the core and neither adapter imports the other.
"""

from __future__ import annotations

import json
from typing import Any

from maas.core.errors import RequestError, cut


def parse_json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """A JSON object from an HTTP body or a queue message; anything else is a ``RequestError``."""
    try:
        document = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise RequestError(f"{what} is nested too deeply", code="too_deeply_nested", field="body") from None
    except (UnicodeDecodeError, ValueError) as error:  # also an integer of more than 4,300 digits
        raise RequestError(
            f"{what} is not valid JSON: {cut(str(error))}", code="invalid_json", field="body"
        ) from None
    if not isinstance(document, dict):
        raise RequestError(
            f"{what} must be a JSON object, got {type(document).__name__}",
            code="invalid_type",
            field="body",
        )
    return document


def check_instances(instances: Any, max_batch: int, field: str = "instances") -> list[Any]:
    """The batch container itself: a non-empty list no longer than ``max_batch``."""
    if instances is None:
        raise RequestError(f"{field} is required", code="missing_field", field=field)
    if not isinstance(instances, list):
        raise RequestError(
            f"{field} must be a list, got {type(instances).__name__}", code="invalid_type", field=field
        )
    if not instances:
        raise RequestError(f"{field} must not be empty", code="empty_batch", field=field)
    if len(instances) > max_batch:
        raise RequestError(
            f"{field} holds {len(instances)} items, at most {max_batch} are allowed per request",
            code="batch_too_large",
            field=field,
        )
    return instances
