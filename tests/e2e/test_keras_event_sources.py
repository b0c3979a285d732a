"""S3 batch files and SQS batches for the Keras model functions, with their stored sample events:
the same layer code answers every family, and its answers equal each function's HTTP answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ops.registry_admin import RegistryAdmin
from tests.conftest import FunctionUnderTest, body_of, load_event, with_json_body
from tests.e2e.conftest import Stack
from training.data import PROJECT_ROOT

CLASSIFIERS = {"spam_lstm": 2, "digits_cnn": 1, "spam_mlp": 2}  # model -> invalid rows in its sample


@pytest.fixture(scope="module")
def keras_functions(
    stack: Stack,
    trained_spam_lstm: Any,
    trained_digits_cnn: Any,
    trained_spam_mlp: Any,
    trained_moby_gen: Any,
) -> dict[str, FunctionUnderTest]:
    registry = RegistryAdmin(stack.models_bucket)
    for trained in (trained_spam_lstm, trained_digits_cnn, trained_spam_mlp, trained_moby_gen):
        name = trained.manifest["name"]
        if registry.get_alias(name, "production") is None:
            registry.set_alias(name, "production", registry.publish(trained.directory).version)
    return {model: FunctionUnderTest(model, stack.environ, None) for model in [*CLASSIFIERS, "moby_gen"]}


def http_answer(function: FunctionUnderTest, model: str, body: dict[str, Any]) -> dict[str, Any]:
    sample = "generate.json" if model == "moby_gen" else "predict.json"
    response = function(with_json_body(load_event(model, sample), body))
    assert response["statusCode"] == 200, response["body"]
    answer: dict[str, Any] = body_of(response)
    return answer


def check_mixed_batch(stack: Stack, function: FunctionUnderTest, model: str) -> list[dict[str, Any]]:
    """The stored mixed batch: exactly records 1-3 fail, and records 0 and 4 are answered."""
    event = load_event(model, "sqs_mixed_batch.json")
    records = event["Records"]
    response = function(event)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["messageId"] for r in records[1:4]
    ]
    answered = []
    for record in (records[0], records[4]):
        request = json.loads(record["body"])
        result = json.loads(stack.read(f"results/{model}/{request['request_id']}.json"))
        assert (result["model_name"], result["model_version"]) == (model, "1")
        answered.append({"request": request, "result": result})
    return answered


def score_sample_file(stack: Stack, function: FunctionUnderTest, model: str) -> list[dict[str, Any]]:
    """The stored s3_put event for the model's sample file, uploaded where the event says it is."""
    event = load_event(model, "s3_put.json")
    key = event["Records"][0]["s3"]["object"]["key"]
    content = (PROJECT_ROOT / "events" / model / "inputs" / "sample.jsonl").read_bytes()
    stack.s3().put_object(Bucket=stack.data_bucket, Key=key, Body=content)
    (outcome,) = function(event)["files"]
    assert outcome["status"] == "scored" and outcome["rows"] == len(content.splitlines())
    return stack.read_lines(outcome["outputs"]["predictions"])


@pytest.mark.parametrize("model", sorted(CLASSIFIERS))
def test_classifier_families_over_sqs_and_s3_answer_what_http_answers(
    stack: Stack, keras_functions: dict[str, FunctionUnderTest], model: str
) -> None:
    function = keras_functions[model]
    for answered in check_mixed_batch(stack, function, model):
        expected = http_answer(function, model, {"instances": answered["request"]["instances"]})
        assert answered["result"]["predictions"] == expected["predictions"]

    lines = score_sample_file(stack, function, model)
    refused = [line for line in lines if line["prediction"] is None]
    assert len(refused) == CLASSIFIERS[model]
    instances = [
        json.loads(raw) for raw in (PROJECT_ROOT / "events" / model / "inputs" / "sample.jsonl").open()
    ]
    valid = [instances[line["line"] - 1] for line in lines if line["prediction"] is not None]
    expected = http_answer(function, model, {"instances": valid})["predictions"]
    assert [line["prediction"] for line in lines if line["prediction"] is not None] == expected


def test_the_generator_over_sqs_and_s3_answers_what_http_answers_and_repeats_itself(
    stack: Stack, keras_functions: dict[str, FunctionUnderTest]
) -> None:
    function = keras_functions["moby_gen"]
    for answered in check_mixed_batch(stack, function, "moby_gen"):
        request = {k: v for k, v in answered["request"].items() if k != "request_id"}
        expected = http_answer(function, "moby_gen", request)  # greedy: the same text every time
        assert answered["result"]["continuations"] == expected["continuations"]

    first = score_sample_file(stack, function, "moby_gen")
    assert [line["error"] for line in first if line["prediction"] is None] == ["empty_text"]
    assert all(len(line["prediction"]["continuations"]) == 1 for line in first if line["prediction"])
    again = score_sample_file(stack, function, "moby_gen")  # the bare prompt samples: with a stable seed
    assert again == first
