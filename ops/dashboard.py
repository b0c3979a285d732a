"""The CloudWatch dashboard of ``template.yaml``, generated from the catalogue (``models.toml``).

One row per catalogue model: invocations, errors and throttles; latency percentiles; cold starts
and model load time; the predicted-label mix (the catalogue's labels); the dead-letter queue's
depth. Lambda's own metrics are addressed by function, ours (namespace ``Maas``) by the
``model, service`` dimension set that every record carries whatever the version, so the
dashboard never needs to know a version. A last row watches the multi-model function, whose
records carry ``service=multi_model`` and whichever model they served: CloudWatch Metrics
Insights queries group them by model.

``maas template --write`` puts the body into ``ModelsDashboard`` (``infra/shared.yaml``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ops.catalogue import Catalogue

NAMESPACE = "Maas"
WIDTH = 24 // 5
HEIGHT = 6
MULTI_MODEL = "multi_model"
MULTI_MODEL_FUNCTION = "MultiModelFunction"


@dataclass(frozen=True, slots=True)
class Panel:
    """What the dashboard shows of one model: its function, its labels, its dead-letter queue."""

    model: str
    function: str
    labels: tuple[str, ...] = ()
    dead_letter_queue: str | None = None
    stream: bool = False


def panels(models: Catalogue) -> tuple[Panel, ...]:
    """One panel per catalogue model; a generator has no labels (its row shows InstancesScored)."""
    return tuple(
        Panel(
            model=m.name,
            function=m.function,
            labels=m.labels,
            dead_letter_queue=m.dead_letter_queue,
            stream=m.stream,
        )
        for m in models
    )


def _ours(metric: str, panel: Panel, **options: Any) -> list[Any]:
    return [NAMESPACE, metric, "model", panel.model, "service", panel.model, options]


def _lambda(metric: str, panel: Panel, **options: Any) -> list[Any]:
    return ["AWS/Lambda", metric, "FunctionName", f"${{{panel.function}}}", options]


def _widget(title: str, metrics: list[list[Any]], x: int, y: int, **properties: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "period": 60,
            "metrics": metrics,
            **properties,
        },
    }


def _row(panel: Panel, y: int) -> list[dict[str, Any]]:
    name = panel.model
    traffic = [
        _lambda("Invocations", panel, stat="Sum"),
        _lambda("Errors", panel, stat="Sum"),
        _lambda("Throttles", panel, stat="Sum"),
        _ours("InvalidRequests", panel, stat="Sum"),
        _ours("ServerErrors", panel, stat="Sum"),
    ]
    latency = [
        _ours("InferenceLatency", panel, stat=stat, label=f"inference {stat}")
        for stat in ("p50", "p90", "p99")
    ] + [
        _ours("RequestLatency", panel, stat="p99", label="HTTP request p99"),
        _lambda("Duration", panel, stat="p99", label="invocation p99 (batches too)"),
    ]
    cold = [
        _ours("ColdStart", panel, stat="Sum"),
        _ours("ModelLoadTime", panel, stat="Maximum", yAxis="right"),
    ]
    mix = [_ours(f"PredictedLabel_{label}", panel, stat="Sum", label=label) for label in panel.labels] or [
        _ours("InstancesScored", panel, stat="Sum")
    ]
    widgets = [
        _widget(f"{name}: invocations, errors, throttles", traffic, 0, y),
        _widget(f"{name}: latency (ms)", latency, WIDTH, y),
        _widget(f"{name}: cold starts, model load (ms)", cold, 2 * WIDTH, y),
        _widget(f"{name}: predicted-label mix", mix, 3 * WIDTH, y, stacked=True),
    ]
    if panel.dead_letter_queue is not None:
        depth = [
            [
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                "QueueName",
                f"${{{panel.dead_letter_queue}.QueueName}}",
                {"stat": "Maximum"},
            ]
        ]
        widgets.append(_widget(f"{name}: dead-letter depth", depth, 4 * WIDTH, y))
    if panel.stream:  # an LLM served with streamed completions: a second row
        widgets += llm_widgets(name, y + HEIGHT, 0)
    return widgets


def _insights(statistic: str, metric: str, label: str) -> list[Any]:
    """A Metrics Insights line: ``metric`` of the multi-model function, one series per model."""
    query = (
        f'SELECT {statistic}({metric}) FROM SCHEMA("{NAMESPACE}", model, service) '
        f"WHERE service = '{MULTI_MODEL}' GROUP BY model"
    )
    return [{"expression": query, "label": label, "id": f"{metric.lower()}_{statistic.lower()}"}]


def _llm_insights(statistic: str, metric: str, label: str, service: str) -> list[Any]:
    """A Metrics Insights line of an LLM metric: one series per model and version."""
    query = (
        f'SELECT {statistic}({metric}) FROM SCHEMA("{NAMESPACE}", model, model_version, service) '
        f"WHERE service = '{service}' GROUP BY model, model_version"
    )
    return [{"expression": query, "label": label, "id": f"llm_{metric.lower()}_{statistic.lower()}"}]


def llm_widgets(service: str, y: int, x: int) -> list[dict[str, Any]]:
    """OpenAI's completions (causal-lm models), per model and version: time to first token and
    decoding rate, tokens in and out."""
    speed = [
        _llm_insights("AVG", "TimeToFirstToken", "time to first token (ms)", service),
        [_llm_insights("AVG", "TokensPerSecond", "tokens/s", service)[0] | {"yAxis": "right"}],
    ]
    tokens = [
        _llm_insights("SUM", "PromptTokens", "tokens in", service),
        _llm_insights("SUM", "CompletionTokens", "tokens out", service),
    ]
    return [
        _widget(f"{service}: LLM time to first token (ms), tokens/s by version", speed, x, y),
        _widget(f"{service}: LLM tokens in and out by version", tokens, x + WIDTH, y),
    ]


def _multi_model_row(y: int) -> list[dict[str, Any]]:
    function = Panel(model=MULTI_MODEL, function=MULTI_MODEL_FUNCTION)
    traffic = [
        _lambda("Invocations", function, stat="Sum"),
        _lambda("Errors", function, stat="Sum"),
        _lambda("Throttles", function, stat="Sum"),
        _insights("SUM", "ServerErrors", "5xx answers"),
    ]
    latency = [
        _lambda("Duration", function, stat=stat, label=f"invocation {stat}") for stat in ("p50", "p99")
    ] + [_insights("MAX", "RequestLatency", "HTTP request max")]
    cold = [
        _insights("SUM", "ColdStart", "cold starts"),
        _insights("MAX", "ModelLoadTime", "model load (ms)"),
    ]
    mix = [_insights("SUM", "InstancesScored", "instances")]
    return [
        _widget(f"{MULTI_MODEL}: invocations, errors, throttles", traffic, 0, y),
        _widget(f"{MULTI_MODEL}: latency (ms)", latency, WIDTH, y),
        _widget(f"{MULTI_MODEL}: cold starts, model load (ms) by model", cold, 2 * WIDTH, y),
        _widget(f"{MULTI_MODEL}: instances scored by model", mix, 3 * WIDTH, y, stacked=True),
        *llm_widgets(MULTI_MODEL, y + HEIGHT, 0),
    ]


def dashboard_body(rows: tuple[Panel, ...]) -> str:
    """The dashboard JSON, with ``${...}`` placeholders for ``!Sub`` to fill at deploy time."""
    widgets: list[dict[str, Any]] = []
    y = 0
    for panel in rows:
        widgets += _row(panel, y)
        y += HEIGHT * (2 if panel.stream else 1)
    widgets += _multi_model_row(y)
    lines = ",\n".join(f"  {json.dumps(widget)}" for widget in widgets)  # one widget per line
    return f'{{"widgets": [\n{lines}\n]}}'
