"""SQS asynchronous requests through the real handler: stored sqs events, then a real moto queue."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from ops.event_sources import create_queue_with_dlq, poll_once
from tests.conftest import FunctionUnderTest, load_event
from tests.e2e.conftest import Stack, http_predictions
from tests.unit.test_metrics import emf_records


def bodies(event: dict[str, Any]) -> list[str]:
    return [record["body"] for record in event["Records"]]


def result(stack: Stack, request_id: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(stack.read(f"results/spam_nb/{request_id}.json"))
    return document


def test_a_mixed_batch_reports_exactly_the_bad_messages_and_answers_the_good_ones(
    stack: Stack,
    spam_nb_function: FunctionUnderTest,
    session_runs: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = load_event("spam_nb", "sqs_mixed_batch.json")
    records = event["Records"]
    response = spam_nb_function(event)
    (metric,) = [r for r in emf_records(capsys.readouterr().out) if "AsyncRequestsScored" in r]
    assert metric["AsyncRequestsScored"] == [2.0] and metric["AsyncRequestsFailed"] == [3.0]
    assert metric["InstancesScored"] == [4.0]

    # records: good req-0, not JSON, invalid instances, no request_id, good req-1
    failed = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert failed == [records[1]["messageId"], records[2]["messageId"], records[3]["messageId"]]
    assert session_runs == [4]  # the two good requests' four texts, in one session.run

    for record in (records[0], records[4]):
        request = json.loads(record["body"])
        answer = result(stack, request["request_id"])
        assert answer["request_id"] == request["request_id"]
        assert answer["model_name"] == "spam_nb" and answer["model_version"] == str(stack.version)
        assert answer["predictions"] == http_predictions(spam_nb_function, request["instances"])
    assert stack.keys("results/spam_nb/req-bad") == []


def test_a_batch_of_valid_requests_is_scored_in_one_run_and_split_back_per_request(
    stack: Stack, spam_nb_function: FunctionUnderTest, session_runs: list[int]
) -> None:
    event = load_event("spam_nb", "sqs_batch.json")
    assert spam_nb_function(event) == {"batchItemFailures": []}
    requests = [json.loads(body) for body in bodies(event)]
    assert session_runs == [sum(len(r["instances"]) for r in requests)]
    for request in requests:
        assert result(stack, request["request_id"])["predictions"] == http_predictions(
            spam_nb_function, request["instances"]
        )


def test_a_message_delivered_twice_rewrites_the_same_result_with_the_same_content(
    stack: Stack, spam_nb_function: FunctionUnderTest
) -> None:
    event = load_event("spam_nb", "sqs_batch.json")
    requests = ("req-0", "req-1", "req-2")

    def versions() -> dict[str, int]:
        """How many S3 versions each result has (other tests write these keys too)."""
        listed = boto3.client("s3").list_object_versions(
            Bucket=stack.data_bucket, Prefix="results/spam_nb/req-"
        )
        return {
            r: sum(v["Key"] == f"results/spam_nb/{r}.json" for v in listed.get("Versions", []))
            for r in requests
        }

    spam_nb_function(event)
    first = {r: stack.read(f"results/spam_nb/{r}.json") for r in requests}
    before = versions()
    FunctionUnderTest("spam_nb", stack.environ, None)(event)  # redelivered to another environment
    second = {r: stack.read(f"results/spam_nb/{r}.json") for r in requests}
    assert first == second
    assert versions() == {r: n + 1 for r, n in before.items()}  # each written again, once: not skipped


def test_a_poison_message_reaches_the_dead_letter_queue_after_three_receives(
    stack: Stack, spam_nb_function: FunctionUnderTest
) -> None:
    sqs = boto3.client("sqs")
    queue_url, dlq_url = create_queue_with_dlq("maas-test-spam_nb-requests", max_receive_count=3)
    mixed = bodies(load_event("spam_nb", "sqs_mixed_batch.json"))
    good = [
        json.dumps({"request_id": f"dlq-good-{i}", "instances": [f"see you at the meeting {i}"]})
        for i in range(3)
    ]
    poison = mixed[1]  # not JSON
    for body in [good[0], poison, good[1], good[2]]:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    environ = stack.environ
    failures_per_round: list[int] = []
    for _ in range(8):
        polled = poll_once("spam_nb", queue_url, environ)
        if polled.received == 0:
            break
        failures_per_round.append(len(polled.failed_ids))

    assert failures_per_round == [1, 1, 1]  # received, failed and retried three times, then moved
    dead = sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", [])
    assert [m["Body"] for m in dead] == [poison]
    print(
        f"DLQ: {len(dead)} message(s), failures per poll {failures_per_round}, receive count {dead[0]['Attributes']['ApproximateReceiveCount']}"
    )
    assert dead[0]["Attributes"]["ApproximateReceiveCount"] in {"3", "4"}
    assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", []) == []
    for i in range(3):
        assert result(stack, f"dlq-good-{i}")["predictions"][0]["label"] in {"ham", "spam"}
