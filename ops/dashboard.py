"""The CloudWatch dashboard of ``template.yaml``, generated so it stays in step with the models.

One row per model: invocations, errors and throttles; latency percentiles; cold starts and model
load time; the predicted-label mix; the dead-letter queue's depth. Lambda's own metrics are
addressed by function, ours (namespace ``Maas``) by the ``model, service`` dimension set that
every record carries whatever the version, so the dashboard never needs to know a version.

``maas dashboard --write`` rewrites the block between the ``dashboard:start``/``dashboard:end``
markers of ``template.yaml``; a test checks that the committed block equals this output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.template import TEMPLATE

NAMESPACE = "Maas"
START = "# dashboard:start"
END = "# dashboard:end"
WIDTH = 24 // 5
HEIGHT = 6


@dataclass(frozen=True, slots=True)
class Panel:
    """What the dashboard shows of one model: its function, its labels, its dead-letter queue."""

    model: str
    function: str
    labels: tuple[str, ...] = ()
    dead_letter_queue: str | None = None


PANELS: tuple[Panel, ...] = (
    Panel(
        model="spam_nb",
        function="SpamNbFunction",
        labels=("ham", "spam"),
        dead_letter_queue="SpamNbDeadLetterQueue",
    ),
    Panel(
        model="spam_lstm",
        function="SpamLstmFunction",
        labels=("ham", "spam"),
        dead_letter_queue="SpamLstmDeadLetterQueue",
    ),
    Panel(
        model="digits_cnn",
        function="DigitsCnnFunction",
        labels=tuple(str(digit) for digit in range(10)),
        dead_letter_queue="DigitsCnnDeadLetterQueue",
    ),
    Panel(
        model="spam_mlp",
        function="SpamMlpFunction",
        labels=("ham", "spam"),
        dead_letter_queue="SpamMlpDeadLetterQueue",
    ),
    # a generator has no labels: its row shows the sequences it generated (InstancesScored)
    Panel(model="moby_gen", function="MobyGenFunction", dead_letter_queue="MobyGenDeadLetterQueue"),
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
    return widgets


def dashboard_body(panels: tuple[Panel, ...] = PANELS) -> str:
    """The dashboard JSON, with ``${...}`` placeholders for ``!Sub`` to fill at deploy time."""
    widgets = [widget for row, panel in enumerate(panels) for widget in _row(panel, row * HEIGHT)]
    lines = ",\n".join(f"  {json.dumps(widget)}" for widget in widgets)  # one widget per line
    return f'{{"widgets": [\n{lines}\n]}}'


def template_block(panels: tuple[Panel, ...] = PANELS) -> str:
    body = "\n".join(f"        {line}" for line in dashboard_body(panels).splitlines())
    return f"      {START}\n      DashboardBody: !Sub |\n{body}\n      {END}\n"


_BLOCK = re.compile(rf"^ *{re.escape(START)}\n.*?^ *{re.escape(END)}\n", re.MULTILINE | re.DOTALL)


def committed_block(path: Path = TEMPLATE) -> str:
    match = _BLOCK.search(path.read_text())
    if match is None:
        raise ValueError(f"{path}: no {START!r} ... {END!r} block")
    return match.group(0)


def write(path: Path = TEMPLATE) -> bool:
    """Rewrite the template's dashboard block; True when it changed."""
    text = path.read_text()
    block = template_block()
    if committed_block(path) == block:
        return False
    path.write_text(_BLOCK.sub(lambda _: block, text, count=1))
    return True
