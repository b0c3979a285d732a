"""Lambda's S3 and SQS event sources, played locally: real events for real objects and queues.

Where AWS would notify a function of an object or poll a queue for it, these helpers build the
same event from the stored samples (``events/<model>/s3_put.json`` and ``sqs_batch.json``, made
by ``sam local generate-event``) filled with the facts of a real object or real received
messages, invoke the function's real handler in-process, and, like Lambda's SQS poller, delete
the messages that succeeded and leave the reported failures to come back.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import boto3

from ops.local import REGION, invoke
from training.data import PROJECT_ROOT

EVENTS_DIR = PROJECT_ROOT / "events"


def sample_event(model: str, name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / model / name).read_text())
    return event


def s3_put_event(model: str, bucket: str, key: str, s3: Any | None = None) -> dict[str, Any]:
    """The stored S3 put event, naming an existing object: its bucket, key, size, ETag and version."""
    client = s3 or boto3.client("s3")
    head = client.head_object(Bucket=bucket, Key=key)
    event = sample_event(model, "s3_put.json")
    record = event["Records"][0]
    record["awsRegion"] = REGION
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj = record["s3"]["object"]
    obj["key"] = quote_plus(key, safe="/")  # S3 URL-encodes keys in events
    obj["size"] = int(head["ContentLength"])
    obj["eTag"] = str(head["ETag"]).strip('"')
    version = head.get("VersionId")
    if version and version != "null":
        obj["versionId"] = version
    else:
        obj.pop("versionId", None)
    event["Records"] = [record]
    return event


def sqs_event(model: str, messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The stored SQS event carrying ``messages`` as received from a queue (``ReceiveMessage``)."""
    template = sample_event(model, "sqs_batch.json")["Records"][0]
    records = []
    for message in messages:
        record = copy.deepcopy(template)
        record["messageId"] = message["MessageId"]
        record["receiptHandle"] = message["ReceiptHandle"]
        record["body"] = message["Body"]
        record["md5OfBody"] = message.get("MD5OfBody", record.get("md5OfBody"))
        record["attributes"] = {**record.get("attributes", {}), **message.get("Attributes", {})}
        record["eventSourceARN"] = queue_arn
        record["awsRegion"] = REGION
        records.append(record)
    return {"Records": records}


@dataclass(frozen=True, slots=True)
class PollResult:
    received: int
    failed_ids: list[str]
    response: dict[str, Any] | None


def poll_once(
    model: str, queue_url: str, overrides: Mapping[str, str] | None = None, sqs: Any | None = None
) -> PollResult:
    """One round of Lambda's SQS poller: receive up to 10, invoke, delete the successes.

    Failures reported in ``batchItemFailures`` are made visible again at once (a real queue waits
    for the visibility timeout); after ``maxReceiveCount`` receives SQS moves them to the DLQ.
    """
    client = sqs or boto3.client("sqs")
    received = client.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages", [])
    if not received:
        return PollResult(0, [], None)
    arn = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    response: dict[str, Any] = invoke(model, sqs_event(model, received, arn), overrides)
    failed = [item["itemIdentifier"] for item in response.get("batchItemFailures", [])]
    for message in received:
        if message["MessageId"] in failed:
            client.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return PollResult(len(received), failed, response)


def create_queue_with_dlq(name: str, max_receive_count: int = 3, sqs: Any | None = None) -> tuple[str, str]:
    """A queue and its dead-letter queue with the template's redrive policy; returns both URLs."""
    client = sqs or boto3.client("sqs")
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    queue_url = client.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive})["QueueUrl"]
    return queue_url, dlq_url
