"""Logs, metrics and (optional) tracing through aws-lambda-powertools.

Powertools' own environment variables configure them (``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``, ``POWERTOOLS_TRACE_DISABLED``). The
tracer is imported only when tracing is switched on, so it costs nothing at cold start otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

Handler = TypeVar("Handler", bound=Callable[..., Any])

logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME", "maas"))
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "Maas"))


def tracing_enabled() -> bool:
    return os.getenv("POWERTOOLS_TRACE_DISABLED", "true").strip().lower() in {"false", "0", "no"}


def traced(handler: Handler) -> Handler:
    """Wrap a Lambda handler with Powertools' tracer only when tracing is enabled.

    The layer does not ship aws-xray-sdk (it would bring a second botocore, ~30 MB): with
    ``Tracing: Active`` Lambda still records each invocation's trace, and the handler's own
    subsegments appear once aws-xray-sdk is added to the layer's requirements.
    """
    if not tracing_enabled():
        return handler
    if importlib.util.find_spec("aws_xray_sdk") is None:
        logger.warning("tracing is on but aws-xray-sdk is not installed: only Lambda's own trace is recorded")
        return handler
    from aws_lambda_powertools import Tracer  # imported here on purpose: it pulls aws-xray-sdk

    wrapped: Handler = Tracer().capture_lambda_handler(handler)
    return wrapped


def _dimensions(model: str, version: int | None = None) -> None:
    """``model`` (and ``model_version`` once known) plus ``service``, which defaults to the model's name."""
    metrics.add_dimension(name="model", value=model)
    if version is not None:
        metrics.add_dimension(name="model_version", value=str(version))
    if "service" not in metrics.dimension_set:
        metrics.add_dimension(name="service", value=os.getenv("POWERTOOLS_SERVICE_NAME") or model)


def record_prediction(model: str, version: int, instances: int, latency_ms: float) -> None:
    _dimensions(model, version)
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="InstancesScored", unit=MetricUnit.Count, value=instances)
    metrics.add_metric(name="InferenceLatency", unit=MetricUnit.Milliseconds, value=latency_ms)


def record_metadata_request(model: str, version: int) -> None:
    _dimensions(model, version)
    metrics.add_metric(name="MetadataRequests", unit=MetricUnit.Count, value=1)


def record_error(model: str, status: int, code: str) -> None:
    """Client errors count as ``InvalidRequests``, the rest as ``ServerErrors``; the code goes in metadata."""
    _dimensions(model)
    metrics.add_metric(
        name="InvalidRequests" if status < 500 else "ServerErrors", unit=MetricUnit.Count, value=1
    )
    metrics.add_metadata(key="error_code", value=code)
