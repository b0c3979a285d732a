"""One CloudWatch embedded-metric-format (EMF) record per invocation, built in a dict and
serialised once, at the end of the invocation.

The record is the one Powertools Metrics prints (same ``_aws`` directive, dimension sets, metric
values as lists, metadata as top-level keys), without its per-call validation and enum lookups:
on a warm request of a fraction of a millisecond those cost as much as ``session.run`` does.
Names and units are this project's constants, so there is nothing to validate per call.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

COUNT = "Count"
MILLISECONDS = "Milliseconds"
COUNT_PER_SECOND = "Count/Second"
MAX_METRICS = 100  # CloudWatch's limit per record: a fuller set is flushed first, as Powertools does

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _disabled() -> bool:
    return os.getenv("POWERTOOLS_METRICS_DISABLED", "false").strip().lower() in {"true", "1", "yes"}


def record(
    namespace: str,
    dimension_sets: list[dict[str, str]],
    metrics: dict[str, tuple[str, list[float]]],
    metadata: dict[str, Any] | None = None,
) -> str:
    """The EMF JSON line of one metric set (keys in Powertools' order: dimensions, metadata, metrics)."""
    values: dict[str, Any] = {}
    for dimensions in dimension_sets:
        values.update(dimensions)
    directive = {
        "Namespace": namespace,
        "Dimensions": [list(dimensions) for dimensions in dimension_sets],
        "Metrics": [{"Name": name, "Unit": unit} for name, (unit, _) in metrics.items()],
    }
    document: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [directive]},
        **values,
        **(metadata or {}),
        **{name: points for name, (_, points) in metrics.items()},
    }
    return json.dumps(document, separators=(",", ":"))


class MetricSet:
    """The metrics of the invocation under way: ``add_*`` fills it, ``flush`` prints it once."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.disabled = _disabled()  # Powertools' switch, read once: the environment is fixed
        self.dimension_set: dict[str, str] = {}
        self._more_dimension_sets: list[dict[str, str]] = []
        self._metrics: dict[str, tuple[str, list[float]]] = {}
        self._metadata: dict[str, Any] = {}

    def add_dimension(self, name: str, value: str) -> None:
        self.dimension_set[name] = str(value)

    def add_dimensions(self, **dimensions: str) -> None:
        """Another dimension set for the same metrics (the per-model one beside the per-version one)."""
        self._more_dimension_sets.append({name: str(value) for name, value in dimensions.items()})

    def add_metric(self, name: str, unit: str, value: float) -> None:
        found = self._metrics.get(name)
        if found is None:
            if len(self._metrics) == MAX_METRICS:
                self.flush()
            self._metrics[name] = (unit, [float(value)])
        else:
            found[1].append(float(value))

    def add_metadata(self, key: str, value: Any) -> None:
        self._metadata[key] = value

    def single(self, name: str, unit: str, value: float, dimensions: dict[str, str]) -> None:
        """A record of its own, printed now, with only these dimensions (the per-error-code counts)."""
        if not self.disabled:
            print(record(self.namespace, [dict(dimensions)], {name: (unit, [float(value)])}))

    def flush(self) -> None:
        """Print the set (nothing without a metric) and start the next one empty."""
        if self._metrics and not self.disabled:
            sets = [self.dimension_set, *self._more_dimension_sets]
            print(record(self.namespace, sets, self._metrics, self._metadata))
        self.clear_metrics()

    def clear_metrics(self) -> None:
        self.dimension_set = {}
        self._more_dimension_sets = []
        self._metrics = {}
        self._metadata = {}

    def log_metrics(self, handler: Handler) -> Handler:
        """Flush once when the handler returns or raises."""

        @functools.wraps(handler)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return handler(*args, **kwargs)
            finally:
                self.flush()

        return wrapped  # type: ignore[return-value]
