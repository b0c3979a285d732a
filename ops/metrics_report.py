"""``maas metrics LOGFILE``: what the handlers' CloudWatch EMF lines say, summarised per model.

The same records CloudWatch turns into metrics are printed by every invocation (``maas invoke``,
``maas serve``, the demo); this reads them back so a developer sees counts, latency percentiles,
cold starts, errors and the label mix without an AWS account.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LABEL_PREFIX = "PredictedLabel_"


@dataclass
class ModelSummary:
    model: str
    versions: set[str] = field(default_factory=set)
    requests: int = 0
    instances: int = 0
    cold_starts: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    load_ms: list[float] = field(default_factory=list)
    labels: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None


def emf_records(lines: Iterable[str]) -> Iterable[dict[str, Any]]:
    """The JSON objects carrying an ``_aws`` EMF directive; anything else in the log is skipped."""
    for line in lines:
        start = line.find('{"_aws"')
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(record, dict) and "CloudWatchMetrics" in record.get("_aws", {}):
            yield record


def _values(record: dict[str, Any], name: str) -> list[float]:
    value = record.get(name, [])
    return [float(v) for v in (value if isinstance(value, list) else [value])]


def summarise(lines: Iterable[str]) -> dict[str, ModelSummary]:
    summaries: dict[str, ModelSummary] = {}
    for record in emf_records(lines):
        model = record.get("model")
        if not isinstance(model, str):
            continue
        summary = summaries.setdefault(model, ModelSummary(model))
        if "model_version" in record:
            summary.versions.add(str(record["model_version"]))
        summary.requests += int(sum(_values(record, "Requests")))
        summary.instances += int(sum(_values(record, "InstancesScored")))
        summary.cold_starts += int(sum(_values(record, "ColdStart")))
        summary.errors += int(sum(_values(record, "InvalidRequests")) + sum(_values(record, "ServerErrors")))
        summary.latencies_ms.extend(_values(record, "InferenceLatency"))
        summary.load_ms.extend(_values(record, "ModelLoadTime"))
        for name in record:
            if name.startswith(LABEL_PREFIX):
                summary.labels[name[len(LABEL_PREFIX) :]] += int(sum(_values(record, name)))
        if "error_code" in record and "InvalidRequestsByCode" in record:
            summary.error_codes[str(record["error_code"])] += 1
    return dict(sorted(summaries.items()))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(summaries: dict[str, ModelSummary]) -> str:
    header = (
        f"{'model':<12} {'versions':<9} {'requests':>8} {'instances':>9} {'p50 ms':>8} {'p90 ms':>8} "
        f"{'p99 ms':>8} {'cold':>5} {'errors':>6}  label mix"
    )
    rows = [header, "-" * len(header)]
    for s in summaries.values():
        total = sum(s.labels.values())
        mix = (
            ", ".join(f"{label} {count / total:.0%}" for label, count in s.labels.most_common())
            if total
            else "-"
        )
        rows.append(
            f"{s.model:<12} {','.join(sorted(s.versions)) or '-':<9} {s.requests:>8} {s.instances:>9} "
            f"{_ms(s.percentile(50)):>8} {_ms(s.percentile(90)):>8} {_ms(s.percentile(99)):>8} "
            f"{s.cold_starts:>5} {s.errors:>6}  {mix}"
        )
    if len(rows) == 2:
        rows.append("(no EMF metric records found)")
    return "\n".join(rows)


def plot(summaries: dict[str, ModelSummary], path: Path) -> None:
    """Latency distribution and label mix per model, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(summaries.values())
    figure, (latency, mix) = plt.subplots(1, 2, figsize=(12, 4.5))
    for s in models:
        if s.latencies_ms:
            latency.hist(s.latencies_ms, bins=30, alpha=0.6, label=f"{s.model} (n={len(s.latencies_ms)})")
    latency.set(title="Inference latency (session.run)", xlabel="ms", ylabel="requests")
    if any(s.latencies_ms for s in models):
        latency.legend()
    bottoms = np.zeros(len(models))
    labels = sorted({label for s in models for label in s.labels})
    for label in labels:
        counts = np.array([s.labels.get(label, 0) / max(1, sum(s.labels.values())) for s in models])
        mix.bar([s.model for s in models], counts, bottom=bottoms, label=label)
        bottoms += counts
    mix.set(title="Predicted-label mix", ylabel="share of predictions", ylim=(0, 1))
    if labels:
        mix.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
