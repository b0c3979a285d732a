"""One entry for every event source: route an event to HTTP, S3, SQS or a batch job by its shape.

A model function is subscribed to API Gateway, to its S3 input prefix and to its queue, and its
batch state machine invokes it; Lambda gives all of them to the same handler, and only the event
itself says which one it is. What is
measured once per invocation is measured here, around the adapter: the cold start, the model
loads the invocation caused, and (for HTTP) the request's latency through the handler.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from maas.core.observability import logger, metrics, record_invocation, record_request_latency, traced
from maas.core.runtime import ModelRuntime
from maas.http.app import build_model_app
from maas.http.streaming import ResponseSink, write_response

Handler = Callable[[dict[str, Any], Any], Any]
StreamHandler = Callable[[dict[str, Any], Any, ResponseSink], None]


def event_source(event: Any) -> str:
    """``aws:s3`` or ``aws:sqs`` for records events (as Lambda names them), ``http`` for an API
    Gateway request; ``states:batch`` for a Distributed Map batch (``Items`` and ``BatchInput``),
    ``states:job`` for a batch job's first and last steps (``BatchJob``); ``empty`` for
    ``{"Records": []}``, ``s3:TestEvent`` for the test event S3 sends when a notification is
    configured, and ``unknown`` for any other shape."""
    if not isinstance(event, dict):
        return "unknown"
    if isinstance(event.get("Items"), list) and "BatchInput" in event:
        return "states:batch"
    if "BatchJob" in event:
        return "states:job"
    records = event.get("Records")
    if isinstance(records, list):
        if not records:
            return "empty"
        if isinstance(records[0], dict):
            return str(records[0].get("eventSource") or records[0].get("EventSource") or "unknown")
        return "unknown"
    if event.get("Event") == "s3:TestEvent":
        return "s3:TestEvent"
    if "requestContext" in event or "rawPath" in event:
        return "http"
    return "unknown"


def api_request_id(event: Any) -> str | None:
    """API Gateway's request id, the logs' correlation id (Powertools' ``API_GATEWAY_HTTP`` path,
    ``requestContext.requestId``, read without a JMESPath search per request); None otherwise."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    found = context.get("requestId") if isinstance(context, dict) else None
    return found if isinstance(found, str) else None


class ModelFunction:
    """One function's whole behaviour: its runtime, its HTTP application and its entry point.

    ``model_name`` None reads ``MODEL_NAME`` at the first request; ``multi_model`` serves any
    model of the registry over HTTP (S3 and SQS events name no model, so it takes none).
    """

    def __init__(self, model_name: str | None = None, *, multi_model: bool = False) -> None:
        self.runtime = ModelRuntime(model_name, multi_model=multi_model, light_reads=True)
        self.app = build_model_app(self.runtime)
        self.lambda_handler: Handler = self._entry_point()
        self.stream_handler: StreamHandler = self._stream_entry_point()

    def handle(self, event: dict[str, Any], context: Any) -> Any:
        """Dispatch by event shape; the batch adapters are imported only when their event comes."""
        runtime = self.runtime
        runtime.invocations += 1
        cold = runtime.invocations == 1
        try:
            return self._dispatch(event, context)
        finally:
            record_invocation(runtime.metrics_name, cold_start=cold, load_times=runtime.drain_load_times())

    def _dispatch(self, event: dict[str, Any], context: Any) -> Any:
        runtime = self.runtime
        source = event_source(event)
        if source in {"aws:s3", "aws:sqs", "states:batch", "states:job"} and runtime.multi_model:
            logger.error("the multi-model function answers HTTP only", extra={"source": source})
            return {"ignored": source}
        if source == "aws:s3":
            from maas.events.s3 import handle_s3_event

            return handle_s3_event(event, runtime, context)
        if source == "aws:sqs":
            from maas.events.sqs import handle_sqs_event

            return handle_sqs_event(event, context, runtime)
        if source == "states:batch":
            from maas.events.distributed_map import score_batch

            return score_batch(event, runtime, context)
        if source == "states:job":
            from maas.events.distributed_map import handle_job_event

            return handle_job_event(event, runtime)
        if source in {"empty", "s3:TestEvent"}:
            logger.info("event with nothing to do", extra={"source": source})
            return {"ignored": source, "batchItemFailures": []}
        if source != "http":
            logger.error("event from a source this function does not handle", extra={"source": source})
            return {"ignored": source}
        started = time.perf_counter()
        response = self.app.resolve(event, context)
        record_request_latency(runtime.metrics_name, (time.perf_counter() - started) * 1000.0)
        return response

    def stream(self, event: dict[str, Any], context: Any, sink: ResponseSink) -> None:
        """``handle``, its answer written to ``sink`` as it is produced: a streaming OpenAI route's
        events one by one (the transport streams: a function URL in RESPONSE_STREAM mode, ``maas
        serve``), any other answer at once. ``RequestLatency`` is then the time to the headers."""
        slot = self.app.stream
        slot.enabled = True
        try:
            response = self.handle(event, context)
            chunks = slot.take()
        finally:
            slot.enabled = False
        if not isinstance(response, dict) or "statusCode" not in response:  # not an HTTP answer
            response = {
                "statusCode": 200,
                "headers": {"content-type": "application/json"},
                "body": json.dumps(response),
            }
        write_response(response, chunks, sink)

    def _stream_entry_point(self) -> StreamHandler:
        """The streaming twin of ``lambda_handler``: the metrics of what the stream produced
        (tokens, time to first token) are flushed after its last chunk."""

        @logger.inject_lambda_context(clear_state=True)
        @metrics.log_metrics
        def stream_handler(event: dict[str, Any], context: Any, sink: ResponseSink) -> None:
            logger.set_correlation_id(api_request_id(event))
            self.stream(event, context, sink)

        return stream_handler

    def _entry_point(self) -> Handler:
        """Structured-log context, one EMF flush per invocation, tracing when enabled."""

        @logger.inject_lambda_context(clear_state=True)
        @metrics.log_metrics
        @traced
        def lambda_handler(event: dict[str, Any], context: Any) -> Any:
            logger.set_correlation_id(api_request_id(event))
            return self.handle(event, context)

        return lambda_handler
