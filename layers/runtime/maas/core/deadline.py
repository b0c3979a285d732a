"""When a generation must stop: before the Lambda's time runs out, and before API Gateway's 29 s.

A generator that runs into either loses everything it decoded (the invocation is killed, or the
gateway answers 504 while the function goes on). So the adapter turns what bounds its caller into
one ``time.monotonic()`` instant, and the generator stops before it and answers what it has, with
``finish_reason`` "time". The margin leaves room to encode the answer and write it out.
"""

from __future__ import annotations

import time
from typing import Any

#: API Gateway's integration timeout (HTTP and REST APIs alike): its caller gets a 504 after it
GATEWAY_SECONDS = 29.0
#: time kept back for what follows the last token: encoding, metrics, the answer's trip out
MARGIN_SECONDS = 1.0


def remaining_seconds(context: Any) -> float | None:
    """The invocation's remaining time, if the context knows it (Lambda's does; a test's may not)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    try:
        return float(remaining()) / 1000.0
    except (TypeError, ValueError):
        return None


def deadline_for(context: Any, *, http: bool, margin: float = MARGIN_SECONDS) -> float | None:
    """The instant generation stops: the sooner of the invocation's end and, for an HTTP request,
    the gateway's 29 s, less the margin; None when nothing bounds the caller."""
    now = time.monotonic()
    limits = [seconds for seconds in (remaining_seconds(context),) if seconds is not None]
    if http:
        limits.append(GATEWAY_SECONDS)
    if not limits:
        return None
    return now + max(0.0, min(limits) - margin)
