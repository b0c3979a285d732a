"""Regenerate the sample events under ``events/<model>/`` from ``sam local generate-event``.

The events are committed; this script documents and repeats how they were made:
``python -m training.events``. The HTTP ones are SAM's HTTP API (payload 2.0) event, edited for
one route; the S3 one is SAM's ``s3 put`` event naming the sample input file (its real size and
ETag); the SQS ones are SAM's ``sqs receive-message`` event, one record per request message. All
work as they are with ``sam local invoke -e`` and with ``maas invoke --event``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

from training.data import PROJECT_ROOT

EVENTS_DIR = PROJECT_ROOT / "events"

SPAM_TEXTS = [
    "Congratulations! You have been selected to receive a FREE $1000 gift card. Click here now to claim "
    "your prize, limited time offer, no purchase necessary!!!",
    "Hi Tom, the design review moved to Thursday at 3pm. Could you send me the draft of the test plan "
    "before then? Thanks, Anna",
    "Re: cvs commit - fixed the build on Debian, the patch is attached and the tests pass again.",
]


def generate_http_event(
    method: str, path: str, body: dict[str, Any] | None, *, base64_body: bool
) -> dict[str, Any]:
    """SAM's http-api-proxy event for ``method path``, with a JSON body (base64 if asked)."""
    raw = json.dumps(body) if body is not None else ""
    command = [
        "sam",
        "local",
        "generate-event",
        "apigateway",
        "http-api-proxy",
        "--method",
        method,
        "--path",
        path.lstrip("/"),
        "--body",
        raw,
    ]
    event: dict[str, Any] = json.loads(
        subprocess.run(command, check=True, capture_output=True, text=True).stdout
    )
    route = f"{method} {path}"
    event["routeKey"] = route
    event["requestContext"]["routeKey"] = route
    event["rawPath"] = path
    event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = ""
    event.pop("queryStringParameters", None)
    event.pop("cookies", None)
    event.pop("pathParameters", None)
    event["headers"] = {"content-type": "application/json", "host": event["requestContext"]["domainName"]}
    event["requestContext"].pop("authorizer", None)
    event["requestContext"].pop("authentication", None)
    if body is None:
        event.pop("body", None)
        event["isBase64Encoded"] = False
    elif base64_body:
        event["body"] = base64.b64encode(raw.encode()).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = raw
        event["isBase64Encoded"] = False
    return event


DATA_BUCKET = "maas-data"
SAMPLE_INPUTS = ("sample.jsonl", "sample.csv")


def _sam_event(*args: str) -> dict[str, Any]:
    command = ["sam", "local", "generate-event", *args]
    event: dict[str, Any] = json.loads(
        subprocess.run(command, check=True, capture_output=True, text=True).stdout
    )
    return event


def generate_s3_put_event(bucket: str, key: str, content: bytes) -> dict[str, Any]:
    """SAM's s3 put event for ``key``, with the real size and ETag (MD5) of ``content``."""
    event = _sam_event("s3", "put", "--bucket", bucket, "--key", key)
    obj = event["Records"][0]["s3"]["object"]
    obj["size"] = len(content)
    obj["eTag"] = hashlib.md5(content).hexdigest()
    return event


def generate_sqs_event(queue: str, bodies: list[str]) -> dict[str, Any]:
    """SAM's sqs receive-message event with one record per body (SAM does not escape a body itself)."""
    template = _sam_event("sqs", "receive-message", "--queue-name", queue, "--body", "BODY")["Records"][0]
    records = []
    for index, body in enumerate(bodies):
        record = json.loads(json.dumps(template))
        record["messageId"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{queue}/{body}/{index}"))
        record["receiptHandle"] = f"receipt-{record['messageId']}"
        record["body"] = body
        record["md5OfBody"] = hashlib.md5(body.encode()).hexdigest()
        records.append(record)
    return {"Records": records}


def request_body(request_id: str, instances: Any) -> str:
    return json.dumps({"request_id": request_id, "instances": instances})


def write(path: Path, event: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(event, indent=2) + "\n")
    print(f"wrote {path.relative_to(PROJECT_ROOT)}")


def main() -> None:
    model_dir = EVENTS_DIR / "spam_nb"
    predict = "/models/spam_nb/predict"
    write(
        model_dir / "predict.json",
        generate_http_event("POST", predict, {"instances": SPAM_TEXTS}, base64_body=False),
    )
    write(
        model_dir / "predict_base64.json",
        generate_http_event("POST", predict, {"instances": SPAM_TEXTS[:1]}, base64_body=True),
    )
    write(model_dir / "describe.json", generate_http_event("GET", "/models/spam_nb", None, base64_body=False))
    key = "inputs/spam_nb/sample.jsonl"
    content = (model_dir / "inputs" / "sample.jsonl").read_bytes()
    write(model_dir / "s3_put.json", generate_s3_put_event(DATA_BUCKET, key, content))
    queue = "maas-spam_nb-requests"
    good = [request_body(f"req-{i}", SPAM_TEXTS[i : i + 2]) for i in range(2)]
    write(
        model_dir / "sqs_batch.json",
        generate_sqs_event(queue, [*good, request_body("req-2", SPAM_TEXTS[2:])]),
    )
    mixed = [
        good[0],
        "this is not JSON {",
        request_body("req-bad-instances", ["a fine text", 42, ""]),
        json.dumps({"instances": SPAM_TEXTS[:1]}),
        good[1],
    ]
    write(model_dir / "sqs_mixed_batch.json", generate_sqs_event(queue, mixed))


if __name__ == "__main__":
    main()
