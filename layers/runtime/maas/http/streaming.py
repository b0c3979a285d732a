"""Streamed HTTP answers: server-sent events, and the hand-over from a route to a transport.

A Powertools route returns one ``Response`` whose body is a string. A streamed answer (OpenAI's
``stream: true``) is instead an iterator of byte chunks that a transport writes as they come:
the Lambda Runtime API in streaming mode (``maas.entry.runtime_api``) or ``maas serve``. The route
hands its iterator to the app's ``StreamSlot`` when the transport can stream; through a transport
that cannot (API Gateway's HTTP API buffers every answer) the same events are joined into one
body, which OpenAI's clients parse the same way.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.event_handler.api_gateway import Response

EVENT_STREAM = "text/event-stream"
DONE = b"data: [DONE]\n\n"
STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event: ``data: {json}`` and the blank line that ends it."""
    return b"data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n\n"


class ClientGone(Exception):
    """The transport noticed that the client closed its connection: stop producing."""


class ResponseSink(Protocol):
    """Where a streamed answer goes: its status and headers once, then its chunks, flushed."""

    def start(self, status: int, headers: dict[str, str]) -> None: ...

    def write(self, chunk: bytes) -> None:
        """Send ``chunk`` now; raise ``ClientGone`` when the transport knows the client left."""
        ...


@dataclass
class StreamSlot:
    """Where a route leaves its stream for the transport (one request at a time per app)."""

    enabled: bool = False
    chunks: Iterator[bytes] | None = None

    def take(self) -> Iterator[bytes] | None:
        chunks, self.chunks = self.chunks, None
        return chunks


def stream_response(slot: StreamSlot, chunks: Iterable[bytes]) -> Response[Any]:
    """The answer of a streaming route: headers now and ``chunks`` through the transport when it
    streams (``slot.enabled``), else every chunk joined into one buffered body."""
    iterator = iter(chunks)
    if slot.enabled:
        slot.chunks = iterator
        body = ""
    else:
        body = b"".join(iterator).decode("utf-8")
    return Response(status_code=200, content_type=EVENT_STREAM, body=body, headers=dict(STREAM_HEADERS))


def write_response(response: dict[str, Any], chunks: Iterator[bytes] | None, sink: ResponseSink) -> int:
    """A resolved payload-2.0 answer through ``sink``: its status and headers, then its body or,
    for a streaming route, each chunk as it is produced. Returns the chunks written; a client
    that leaves (``ClientGone``) closes the producer, which stops generating."""
    headers = {str(k).lower(): str(v) for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers[str(name).lower()] = ",".join(map(str, values))
    sink.start(int(response.get("statusCode", 200)), headers)
    if chunks is None:
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            sink.write(base64.b64decode(body))
        elif body:
            sink.write(str(body).encode("utf-8"))
        return 1
    written = 0
    try:
        for chunk in chunks:
            sink.write(chunk)
            written += 1
    except ClientGone:
        pass
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # a generator's finally blocks run now: the decoding loop stops here
    return written
