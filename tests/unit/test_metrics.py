"""CloudWatch EMF records printed by a real invocation: names, units, dimensions and values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ops.registry_admin import RegistryAdmin
from tests.conftest import load_event, make_function, with_json_body


def emf_records(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' in line]


def units(record: dict[str, Any]) -> dict[str, str]:
    return {m["Name"]: m["Unit"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}


def dimension_sets(record: dict[str, Any]) -> list[list[str]]:
    return sorted(sorted(d) for d in record["_aws"]["CloudWatchMetrics"][0]["Dimensions"])


@pytest.fixture
def function(registry: RegistryAdmin, spam_nb_dir: Path, s3: Any, tmp_path: Path) -> Any:
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    return make_function("spam_nb", s3, tmp_path)


def test_a_cold_prediction_reports_requests_latency_load_time_cold_start_and_label_mix(
    function: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    function(load_event("spam_nb", "predict.json"))
    records = emf_records(capsys.readouterr().out)
    main = next(r for r in records if "Requests" in r)
    assert main["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MaasTest"
    assert dimension_sets(main) == [["model", "model_version", "service"], ["model", "service"]]
    assert (main["model"], main["model_version"], main["service"]) == ("spam_nb", "1", "spam_nb")
    assert units(main) == {
        "Requests": "Count",
        "InstancesScored": "Count",
        "InferenceLatency": "Milliseconds",
        "RequestLatency": "Milliseconds",
        "ColdStart": "Count",
        "ModelLoadTime": "Milliseconds",
        "PredictedLabel_ham": "Count",
        "PredictedLabel_spam": "Count",
    }
    assert main["Requests"] == [1.0] and main["InstancesScored"] == [3.0] and main["ColdStart"] == [1.0]
    assert main["InferenceLatency"][0] > 0 and main["ModelLoadTime"][0] > main["InferenceLatency"][0]
    assert main["RequestLatency"][0] > main["ModelLoadTime"][0], "the request waited for the load"
    assert (main["PredictedLabel_ham"], main["PredictedLabel_spam"]) == ([2.0], [1.0])
    assert len(records) == 1, "one EMF record per invocation"


def test_a_warm_prediction_has_no_cold_start_and_no_load(
    function: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    function(load_event("spam_nb", "predict.json"))
    capsys.readouterr()
    function(load_event("spam_nb", "predict_base64.json"))
    main = next(r for r in emf_records(capsys.readouterr().out) if "Requests" in r)
    assert "ColdStart" not in main and "ModelLoadTime" not in main
    assert main["InstancesScored"] == [1.0]


def test_invalid_requests_are_counted_by_error_code(
    function: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    function(with_json_body(load_event("spam_nb", "predict.json"), {"instances": []}))
    records = emf_records(capsys.readouterr().out)
    main = next(r for r in records if "InvalidRequests" in r)
    assert main["InvalidRequests"] == [1.0] and main["model"] == "spam_nb"
    by_code = next(r for r in records if "InvalidRequestsByCode" in r)
    assert (by_code["error_code"], by_code["InvalidRequestsByCode"]) == ("empty_batch", [1.0])
    assert dimension_sets(by_code) == [["error_code", "model", "service"]]


def test_maas_metrics_summarises_a_real_handler_log(
    function: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ops import cli

    for name in ("predict.json", "predict_base64.json", "predict.json"):
        function(load_event("spam_nb", name))
    function(with_json_body(load_event("spam_nb", "predict.json"), {"instances": [7]}))
    log = tmp_path / "handler.log"
    log.write_text(capsys.readouterr().out)
    plot = tmp_path / "metrics.png"
    assert cli.main(["metrics", str(log), "--plot", str(plot)]) == 0
    table = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in table if line.startswith("spam_nb"))
    # model, versions, requests, instances, p50, p90, p99, cold, errors, label mix ...
    assert row[1:4] == ["1", "3", "7"]
    assert row[7:9] == ["1", "1"]
    assert " ".join(row[9:]) == "ham 57%, spam 43%"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
