"""Logs and (optional) tracing through aws-lambda-powertools; metrics as one EMF record per
invocation (``maas.core.emf``: Powertools' record, built once).

Powertools' own environment variables configure them (``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``, ``POWERTOOLS_TRACE_DISABLED``). The
tracer is imported only when tracing is switched on, so it costs nothing at cold start otherwise.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aws_lambda_powertools.logging import Logger

from maas.core.emf import COUNT, COUNT_PER_SECOND, MILLISECONDS, MetricSet

Handler = TypeVar("Handler", bound=Callable[..., Any])

logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME", "maas"))
metrics = MetricSet(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE", "Maas"))


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

    wrapped: Handler = Tracer().capture_lambda_handler(handler)  # type: ignore[assignment]
    return wrapped


def _service(model: str) -> str:
    return os.getenv("POWERTOOLS_SERVICE_NAME") or model


def _dimensions(model: str, version: int | None = None) -> None:
    """Two dimension sets: per version (``model``, ``model_version``, ``service``) and per model
    (``model``, ``service``), so dashboards can split by version and alarms need not know it."""
    metrics.add_dimension(name="model", value=model)
    if version is not None:
        metrics.add_dimension(name="model_version", value=str(version))
    if "service" not in metrics.dimension_set:
        metrics.add_dimension(name="service", value=_service(model))
    if version is not None:
        metrics.add_dimensions(model=model, service=_service(model))


def label_metric_name(label: str) -> str:
    """``PredictedLabel_<label>``: one metric per label in the request's own EMF record, so the
    label mix costs no extra log line (a ``label`` dimension would need one record per label)."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(label))[:200]
    return f"PredictedLabel_{safe}"


def record_invocation(model: str, *, cold_start: bool, load_times: Sequence[float]) -> None:
    """What the entry point measures once per invocation: a cold start, and the model loads the
    invocation caused, under the model's dimensions (set here if no adapter set them).

    Powertools' own cold-start metric carries only ``function_name`` and ``service``; ours
    carries the model dimensions, so a cold start can be charted per model version.
    """
    if not cold_start and not load_times:
        return
    if "model" not in metrics.dimension_set:
        _dimensions(model)
    if cold_start:
        metrics.add_metric(name="ColdStart", unit=COUNT, value=1)
    for load_ms in load_times:
        metrics.add_metric(name="ModelLoadTime", unit=MILLISECONDS, value=load_ms)


def record_prediction(
    model: str,
    version: int,
    instances: int,
    latency_ms: float,
    *,
    labels: Sequence[str] = (),
) -> None:
    """One scored request: counts, ``session.run`` latency, and the predicted-label mix."""
    _dimensions(model, version)
    metrics.add_metric(name="Requests", unit=COUNT, value=1)
    metrics.add_metric(name="InstancesScored", unit=COUNT, value=instances)
    metrics.add_metric(name="InferenceLatency", unit=MILLISECONDS, value=latency_ms)
    for label, count in sorted(Counter(labels).items()):
        metrics.add_metric(name=label_metric_name(label), unit=COUNT, value=count)


def record_generation(
    model: str,
    version: int,
    sequences: int,
    latency_ms: float,
    *,
    tokens: int,
) -> None:
    """A generation request: counted like a prediction (one instance per sequence, the decoding
    loop's time as latency), plus the number of tokens it generated."""
    record_prediction(model, version, sequences, latency_ms)
    metrics.add_metric(name="GeneratedTokens", unit=COUNT, value=tokens)


def record_llm_request(
    model: str,
    version: int,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    first_token_ms: float | None,
    decode_seconds: float,
) -> None:
    """An LLM completion (OpenAI's routes, streamed or not): tokens in and out, the time to the
    first token (the prefill, what a streaming user waits for) and the decoding rate after it."""
    _dimensions(model, version)
    metrics.add_metric(name="Requests", unit=COUNT, value=1)
    metrics.add_metric(name="PromptTokens", unit=COUNT, value=prompt_tokens)
    metrics.add_metric(name="CompletionTokens", unit=COUNT, value=completion_tokens)
    if first_token_ms is not None:
        metrics.add_metric(name="TimeToFirstToken", unit=MILLISECONDS, value=first_token_ms)
    if decode_seconds > 0 and completion_tokens > 1:
        metrics.add_metric(
            name="TokensPerSecond", unit=COUNT_PER_SECOND, value=(completion_tokens - 1) / decode_seconds
        )


def record_metadata_request(model: str, version: int) -> None:
    _dimensions(model, version)
    metrics.add_metric(name="MetadataRequests", unit=COUNT, value=1)


def record_error(model: str, status: int, code: str) -> None:
    """Client errors count as ``InvalidRequests``, the rest as ``ServerErrors``; also per error code."""
    _dimensions(model)
    name = "InvalidRequests" if status < 500 else "ServerErrors"
    metrics.add_metric(name=name, unit=COUNT, value=1)
    metrics.add_metadata(key="error_code", value=code)
    metrics.single(
        f"{name}ByCode", COUNT, 1, {"model": model, "service": _service(model), "error_code": code}
    )


def _record_counts(
    model: str,
    version: int | None,
    counts: dict[str, int],
    *,
    latency_ms: float | None = None,
) -> None:
    """Counters of one invocation of an event source, with the usual dimensions."""
    _dimensions(model, version)
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=COUNT, value=value)
    if latency_ms is not None:
        metrics.add_metric(name="InferenceLatency", unit=MILLISECONDS, value=latency_ms)


def record_batch_file(
    model: str,
    version: int,
    scored: int,
    failed: int,
    latency_ms: float,
    *,
    files: int = 1,
) -> None:
    """S3 batch scoring: the files and rows of one invocation, and their total ``session.run`` time."""
    counts = {"BatchFiles": files, "BatchRowsScored": scored, "BatchRowsFailed": failed}
    _record_counts(model, version, counts, latency_ms=latency_ms)


def record_unreadable_input(model: str, code: str) -> None:
    """An input object that could not be read at all (it gets an error object, not a retry)."""
    metrics.add_metadata(key="error_code", value=code)
    _record_counts(model, None, {"BatchUnreadableInputs": 1})


def record_ignored_objects(model: str, count: int) -> None:
    """S3 records for objects outside the model's input prefix: a notification set up wrongly."""
    _record_counts(model, None, {"BatchIgnoredObjects": count})


def record_async_batch(
    model: str,
    version: int,
    scored: int,
    failed: int,
    instances: int,
    latency_ms: float,
) -> None:
    """One SQS batch: requests answered and failed (left to retry or the dead-letter queue)."""
    counts = {"AsyncRequestsScored": scored, "AsyncRequestsFailed": failed, "InstancesScored": instances}
    latency = latency_ms if instances else None
    _record_counts(model, version, counts, latency_ms=latency)


def record_request_latency(model: str, latency_ms: float) -> None:
    """An HTTP request's time through the handler (routing, validation, inference, response).

    Only HTTP requests report it, so latency alarms watch what callers wait for and are not set
    off by S3 batch files or SQS batches, whose invocations last seconds by design.
    """
    if "model" not in metrics.dimension_set:
        _dimensions(model)
    metrics.add_metric(name="RequestLatency", unit=MILLISECONDS, value=latency_ms)
