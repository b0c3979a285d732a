"""One handler entry for every event source: route an event to HTTP, S3 or SQS by its shape.

A model function is subscribed to API Gateway, to its S3 input prefix and to its queue; Lambda
gives all three to the same handler, and only the event itself says which one it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.logging import correlation_paths

from maas.observability import logger, metrics, record_request_latency, traced
from maas.runtime import ModelRuntime

Handler = Callable[[dict[str, Any], Any], Any]


def event_source(event: dict[str, Any]) -> str:
    """``aws:s3`` or ``aws:sqs`` for records events (as Lambda names them), else ``http``."""
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        return str(records[0].get("eventSource") or records[0].get("EventSource") or "unknown")
    return "http"


def build_handler(runtime: ModelRuntime, http_app: APIGatewayHttpResolver) -> Handler:
    """The function's whole behaviour; the batch modules are imported only when their event comes."""

    def handle(event: dict[str, Any], context: Any) -> Any:
        source = event_source(event)
        if source == "aws:s3":
            from maas.batch import handle_s3_event

            return handle_s3_event(event, runtime)
        if source == "aws:sqs":
            from maas.sqs import handle_sqs_event

            return handle_sqs_event(event, context, runtime)
        if source != "http":
            logger.error("event from a source this function does not handle", extra={"source": source})
            return {"ignored": source}
        started = time.perf_counter()
        response = http_app.resolve(event, context)
        record_request_latency(runtime.model_name, (time.perf_counter() - started) * 1000.0)
        return response

    return handle


def lambda_handler_for(runtime: ModelRuntime, http_app: APIGatewayHttpResolver) -> Handler:
    """A model function's Lambda entry point: structured-log context, one EMF flush per
    invocation, tracing when enabled, around ``build_handler``'s dispatch."""
    handle = build_handler(runtime, http_app)

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @metrics.log_metrics
    @traced
    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        return handle(event, context)

    return lambda_handler
