"""Nothing lost: valid SQS requests and S3 rows are answered beside every kind of poison, on the
moto server, through the real handler (the SQS poller played by ``ops.event_sources``)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

import maas.core.signature
import maas.core.tasks.base
from ops.event_sources import create_queue_with_dlq, poll_once, s3_put_event
from tests.conftest import FunctionUnderTest
from tests.e2e.conftest import Stack

POISON = {
    "not-json": "{not json",
    "not-an-object": '["a list"]',
    "no-request-id": '{"instances": ["hello"]}',
    "request-id-newline": '{"request_id": "p-newline\\n", "instances": ["hello"]}',
    "request-id-surrogate": '{"request_id": "p-\\ud800", "instances": ["hello"]}',
    "instances-number": '{"request_id": "p-number", "instances": 12}',
    "instances-empty": '{"request_id": "p-empty", "instances": []}',
    "instances-too-many": json.dumps({"request_id": "p-many", "instances": ["x"] * 300}),
    "lone-surrogate": '{"request_id": "p-surrogate", "instances": ["fine text", "\\ud800"]}',
    "deep": '{"request_id": "p-deep", "instances": ' + "[" * 5000 + "]" * 5000 + "}",
    "big-int": '{"request_id": "p-bigint", "instances": [' + "9" * 4301 + "]}",
    "nan": '{"request_id": "p-nan", "instances": [NaN]}',
}


@pytest.mark.parametrize("blind", [False, True], ids=["validated", "validation-blind-to-surrogates"])
def test_nine_valid_requests_are_answered_and_only_the_poison_is_dead_lettered(
    stack: Stack, spam_nb_function: FunctionUnderTest, monkeypatch: pytest.MonkeyPatch, blind: bool
) -> None:
    """``blind``: the surrogate check is switched off, so the poison reaches onnxruntime (a
    UnicodeEncodeError inside the batched ``session.run``): the run is retried request by request."""
    if blind:
        monkeypatch.setattr(maas.core.signature, "is_unicode", lambda _: True)
        monkeypatch.setattr(maas.core.tasks.base, "is_unicode", lambda _: True)
    sqs = boto3.client("sqs")
    queue_url, dlq_url = create_queue_with_dlq(f"maas-poison-{int(blind)}", max_receive_count=3)
    valid = [
        json.dumps(
            {"request_id": f"ok-{blind:d}-{i}", "instances": [f"call me about the meeting {i}", "WIN CASH"]}
        )
        for i in range(9)
    ]
    bodies = [*valid[:4], *POISON.values(), *valid[4:]]
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)

    rounds = 0
    while poll_once("spam_nb", queue_url, stack.environ).received and rounds < 20:
        rounds += 1

    answered = [
        json.loads(stack.read(f"results/spam_nb/ok-{blind:d}-{i}.json"))
        for i in range(9)
        if stack.keys(f"results/spam_nb/ok-{blind:d}-{i}.json")
    ]
    assert len(answered) == 9
    assert all(len(a["predictions"]) == 2 and a["model_version"] == str(stack.version) for a in answered)
    dead: list[str] = []
    while messages := sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    ):
        for message in messages:
            dead.append(message["Body"])
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(dead) == sorted(POISON.values())
    assert stack.keys("results/spam_nb/p-") == []
    print(
        f"\nSQS poison ({'blind' if blind else 'validated'}): {len(answered)} of 9 valid answered, "
        f"{len(dead)} of {len(POISON)} poison dead-lettered, {rounds} polls"
    )


def test_duplicate_message_ids_and_request_ids_in_one_batch_are_deterministic(
    stack: Stack, spam_nb_function: FunctionUnderTest
) -> None:
    first = {"request_id": "dup-1", "instances": ["hello there"]}
    other = {"request_id": "dup-1", "instances": ["WIN CASH NOW"]}
    same = dict(first)
    records = [
        {"messageId": "m-1", "body": json.dumps(first)},
        {"messageId": "m-1", "body": json.dumps(other)},  # a second delivery of m-1: m-1's outcome
        {"messageId": "m-2", "body": json.dumps(same)},  # the same request: shares its result
        {"messageId": "m-3", "body": json.dumps(other)},  # the same id, other content: retried later
    ]
    base = {
        "receiptHandle": "r",
        "attributes": {},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        "awsRegion": "us-east-1",
    }
    response = spam_nb_function({"Records": [{**base, **r} for r in records]})
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ["m-3"]
    result = json.loads(stack.read("results/spam_nb/dup-1.json"))
    assert result["predictions"][0]["label"] == "ham"  # the first message's content, not the other's


@pytest.mark.parametrize(
    "event", [{"Records": []}, {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}, {}]
)
def test_empty_and_test_events_do_not_crash(
    spam_nb_function: FunctionUnderTest, event: dict[str, Any]
) -> None:
    response = spam_nb_function(event)
    assert "ignored" in response


@pytest.mark.parametrize("blind", [False, True], ids=["validated", "validation-blind-to-surrogates"])
def test_a_file_of_every_bad_row_kind_is_accounted_for_line_by_line(
    stack: Stack, session_runs: list[int], monkeypatch: pytest.MonkeyPatch, blind: bool
) -> None:
    """``blind``: the lone surrogate of line 7 reaches onnxruntime, so its chunk's batched run fails
    and is retried row by row: the other row of that chunk (line 8) is still scored."""
    if blind:
        monkeypatch.setattr(maas.core.signature, "is_unicode", lambda _: True)
        monkeypatch.setattr(maas.core.tasks.base, "is_unicode", lambda _: True)
    function = FunctionUnderTest("spam_nb", {**stack.environ, "BATCH_CHUNK_ROWS": "4"}, None)
    lines = [
        '"a good message about lunch"',
        *[""] * 5,  # blank lines: a whole chunk with nothing to score
        '"\\ud800"',  # in one chunk with line 8: blind, their batched run fails and is retried
        '{"id": "\\ud800", "instance": "a surrogate id is written, escaped"}',
        '{"id": NaN, "instance": "nan id"}',
        '{"id": 7, "instance": ' + "[" * 5000 + "]" * 5000 + "}",
        "[" * 5000,
        "9" * 4301,
        "1e400",
        "12",
        "{not json",
        '{"instance": ""}',
        '"WIN CASH NOW call 0800"',
        '{"id": "x" , "instance": {"nested": true}}',
        "   ",
        '"the last good one"',
    ]
    body = ("\n".join(lines) + "\n").encode()
    key = "inputs/spam_nb/hostile/mixed.jsonl"
    stack.s3().put_object(Bucket=stack.data_bucket, Key=key, Body=body)
    (outcome,) = function(s3_put_event("spam_nb", stack.data_bucket, key))["files"]
    assert outcome["status"] == "scored"
    predictions = stack.read_lines(outcome["outputs"]["predictions"])
    errors = stack.read_lines(outcome["outputs"]["errors"])
    assert [p["line"] for p in predictions] == list(range(1, len(lines) + 1))
    assert outcome["rows"] == len(lines) and outcome["scored"] + outcome["failed"] == outcome["rows"]
    scored = [p["line"] for p in predictions if p["prediction"] is not None]
    assert scored == [1, 8, 17, 20]
    assert [e["line"] for e in errors] == [p["line"] for p in predictions if p["prediction"] is None]
    assert all(e["error"]["code"] and e["error"]["message"] for e in errors)
    assert predictions[7]["id"] == "\ud800"
    assert session_runs and 0 not in session_runs  # the all-blank chunk never reached the model
    assert {e["line"]: e["error"]["code"] for e in errors}[7] == "invalid_text"
    print(
        f"\nS3 rows ({'blind' if blind else 'validated'}): {outcome['rows']} read, {outcome['scored']} scored + {outcome['failed']} refused"
    )


def test_an_unterminated_csv_quote_refuses_each_line_it_swallowed(stack: Stack) -> None:
    function = FunctionUnderTest("spam_nb", {**stack.environ, "BATCH_CHUNK_ROWS": "2"}, None)
    body = b'id,text\n1,fine\n2,"never closed\n3,swallowed\n4,swallowed too\n'
    key = "inputs/spam_nb/hostile/quote.csv"
    stack.s3().put_object(Bucket=stack.data_bucket, Key=key, Body=body)
    (outcome,) = function(s3_put_event("spam_nb", stack.data_bucket, key))["files"]
    predictions = stack.read_lines(outcome["outputs"]["predictions"])
    assert [(p["line"], p.get("error")) for p in predictions] == [
        (2, None),
        (3, "invalid_csv"),
        (4, "invalid_csv"),
        (5, "invalid_csv"),
    ]
