"""The template's dashboard and alarms watch metrics that the handlers really emit.

A real spam_nb function answers a good request, a bad one and one it cannot serve; the EMF lines
it prints are the ground truth the dashboard and alarms are checked against (names, dimensions,
namespace), so a renamed metric cannot leave a dashboard silently empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ops import catalogue, dashboard
from ops.local import LambdaContext, load_function_module
from ops.registry_admin import RegistryAdmin
from ops.serve import BufferedSink
from ops.template import Intrinsic, functions, load_template
from tests.conftest import BUCKET, load_event, make_function, with_json_body
from tests.e2e.test_openai_llm import publishable
from tests.unit.test_metrics import emf_records

LAMBDA_METRICS = {"Invocations", "Errors", "Throttles", "Duration"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def dashboard_widgets(template: dict[str, Any]) -> list[dict[str, Any]]:
    body = template["Resources"]["ModelsDashboard"]["Properties"]["DashboardBody"]
    assert isinstance(body, Intrinsic) and body.tag == "Sub"
    # What !Sub will fill in: every placeholder names a parameter, pseudo parameter or resource.
    for placeholder in re.findall(r"\$\{([^}]+)\}", body.value):
        assert placeholder.startswith("AWS::") or placeholder.split(".")[0] in template["Resources"]
    widgets: list[dict[str, Any]] = json.loads(body.value)["widgets"]
    return widgets


# A Metrics Insights line of the dashboard (the multi-model row): SELECT STAT(metric) FROM SCHEMA(...)
INSIGHTS = re.compile(r'SELECT \w+\((\w+)\) FROM SCHEMA\("([^"]+)", ([\w, ]+)\)')


def referenced_metrics(template: dict[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    """(namespace, metric, dimension names) of every dashboard line and alarm of the template."""
    found = set()
    for widget in dashboard_widgets(template):
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                match = INSIGHTS.match(line[0]["expression"])
                assert match, line
                metric, namespace, dimensions = match.groups()
                found.add((namespace, metric, frozenset(d.strip() for d in dimensions.split(","))))
                continue
            namespace, name, *rest = line
            dimensions = rest[:-1] if isinstance(rest[-1], dict) else rest
            found.add((namespace, name, frozenset(dimensions[0::2])))
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = resource["Properties"]
        stats = [q["MetricStat"]["Metric"] for q in properties.get("Metrics", []) if "MetricStat" in q]
        if "MetricName" in properties:
            stats.append(properties)
        for metric in stats:
            names = frozenset(d["Name"] for d in metric["Dimensions"])
            found.add((metric["Namespace"], metric["MetricName"], names))
    return found


KERAS_EVENTS = {
    "trained_spam_lstm": "predict.json",
    "trained_spam_mlp": "predict.json",
    "trained_moby_gen": "generate.json",
}


@pytest.fixture
def emitted(
    registry: RegistryAdmin,
    spam_nb_dir: Path,
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
    trained_digits_cnn: Any,
    tiny_llms: dict[str, Path],
) -> list[dict[str, Any]]:
    """EMF records of a served request, an invalid request and a request with no version to serve,
    of a served request of every Keras model (digits_cnn with all ten digits, for its label mix),
    and of an OpenAI completion streamed by the multi-model function (the LLM metrics)."""
    llm = registry.publish(publishable(tiny_llms["llama"], tmp_path))
    registry.set_alias(llm.name, "production", llm.version)
    (spec,) = [s for s in functions() if s.logical_id == "MultiModelFunction"]
    multi = load_function_module(spec)
    multi.runtime.reset(
        environ={"MODEL_BUCKET": BUCKET, "MODEL_CACHE_DIR": str(tmp_path / "llm")}, s3_client=s3
    )
    completion = {"model": llm.name, "prompt": "Call me Ishmael", "max_tokens": 4, "stream": True}
    event = with_json_body(load_event("spam_nb", "predict.json"), completion)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/completions"
    sink = BufferedSink()
    multi.stream_handler(event, LambdaContext("m"), sink)
    assert sink.status == 200 and sink.chunks[-1] == b"data: [DONE]\n\n"
    multi.runtime.reset()
    for fixture, event_name in KERAS_EVENTS.items():
        trained = request.getfixturevalue(fixture)
        model = registry.publish(trained.directory).name
        registry.set_alias(model, "production", 1)
        response = make_function(model, s3, tmp_path / model)(load_event(model, event_name))
        assert response["statusCode"] == 200
    registry.publish(trained_digits_cnn.directory)
    registry.set_alias("digits_cnn", "production", 1)
    images = trained_digits_cnn.data.test_x
    predicted = list(trained_digits_cnn.model.predict(images, verbose=0).argmax(axis=1))
    every_digit = [images[predicted.index(d)][..., 0].tolist() for d in range(10)]  # one read as each digit
    digits = with_json_body(load_event("digits_cnn", "predict.json"), {"instances": every_digit})
    assert make_function("digits_cnn", s3, tmp_path / "digits")(digits)["statusCode"] == 200
    unserved = make_function("spam_nb", s3, tmp_path / "unserved")
    assert unserved(load_event("spam_nb", "predict.json"))["statusCode"] == 503
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    function = make_function("spam_nb", s3, tmp_path / "served")
    assert function(load_event("spam_nb", "predict.json"))["statusCode"] == 200
    bad = with_json_body(load_event("spam_nb", "predict.json"), {"instances": [7]})
    assert function(bad)["statusCode"] == 400
    return emf_records(capsys.readouterr().out)


def test_the_committed_dashboard_is_the_generated_one(template: dict[str, Any]) -> None:
    body = template["Resources"]["ModelsDashboard"]["Properties"]["DashboardBody"].value
    assert body == dashboard.dashboard_body(dashboard.panels(catalogue.load())), "run `maas template --write`"


def test_every_model_function_has_a_dashboard_row_and_alarms(template: dict[str, Any]) -> None:
    models = {spec.model_name: spec.logical_id for spec in functions() if spec.model_name}
    panels = dashboard.panels(catalogue.load())
    assert {(p.model, p.function) for p in panels} == set(models.items())
    assert {p.labels for p in panels if p.model == "spam_nb"} == {("ham", "spam")}
    alarmed = {
        json.dumps(resource["Properties"], default=lambda i: i.value)
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    for model, logical_id in models.items():
        watched = [text for text in alarmed if f'"{logical_id}"' in text or f'"Value": "{model}"' in text]
        wanted = ("Errors", "RequestLatency", "Throttles")
        kinds = {name for name in wanted for text in watched if f'"{name}"' in text}
        assert kinds == set(wanted), logical_id
    # the multi-model function serves many models: its alarms watch the function, not a model
    multi = [text for text in alarmed if '"MultiModelFunction"' in text]
    assert {
        name for name in ("Errors", "Duration", "Throttles") for text in multi if f'"{name}"' in text
    } == {
        "Errors",
        "Duration",
        "Throttles",
    }
    titles = {w["properties"]["title"].split(":")[0] for w in dashboard_widgets(template)}
    assert titles == {*models, "multi_model"}


def test_dashboard_and_alarms_reference_only_metrics_the_handlers_emit(
    template: dict[str, Any], emitted: list[dict[str, Any]]
) -> None:
    namespace = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    assert namespace == dashboard.NAMESPACE
    produced = {
        (metric["Name"], frozenset(dimensions))
        for record in emitted
        for directive in record["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
        for dimensions in directive["Dimensions"]
    }
    ours = {(name, dims) for ns, name, dims in referenced_metrics(template) if ns == namespace}
    assert {name for name, _ in ours} >= {
        "InferenceLatency",
        "RequestLatency",
        "ColdStart",
        "ModelLoadTime",
        "InvalidRequests",
        "ServerErrors",
        "PredictedLabel_ham",
        "PredictedLabel_spam",
        "TimeToFirstToken",
        "TokensPerSecond",
        "PromptTokens",
        "CompletionTokens",
    }
    assert ours <= produced, sorted(ours - produced)
    lambdas = {name for ns, name, dims in referenced_metrics(template) if ns == "AWS/Lambda"}
    assert lambdas == LAMBDA_METRICS


def test_alarms_notify_the_optional_topic(template: dict[str, Any]) -> None:
    alarms = [
        r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert alarms
    for alarm in alarms:
        for key in ("AlarmActions", "OKActions"):
            action = alarm[key]
            assert isinstance(action, Intrinsic) and action.tag == "If" and action.value[0] == "HasAlarmTopic"
