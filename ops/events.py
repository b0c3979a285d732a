"""Regenerate the sample events under ``events/<model>/`` from ``sam local generate-event``.

The events are committed; this script documents and repeats how they were made:
``python -m ops.events``. The HTTP ones are SAM's HTTP API (payload 2.0) event, edited for
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops import catalogue
from training.data import PROJECT_ROOT

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


DIGITS = (0, 7, 13)  # rows of scikit-learn's load_digits(): a 0, a 7 and a 3
GENERATE = {
    "prompt": "Call me Ishmael",
    "max_new_tokens": 100,
    "num_return_sequences": 2,
    "temperature": 0.8,
    "top_k": 20,
    "seed": 7,
}
GENERATE_GREEDY = {"prompt": "Call me Ishmael", "max_new_tokens": 160, "temperature": 0}


def digit_images() -> list[list[list[float]]]:
    """Real 8x8 digits, scaled to [0, 1] as the model takes them."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    return [(images[i] / 16.0).round(4).tolist() for i in DIGITS]


def png_base64(image: list[list[float]], mode: str = "L") -> str:
    """A real PNG (Pillow's encoder, independent of the layer's decoder), base64 encoded."""
    import io

    import numpy as np
    from PIL import Image

    pixels = Image.fromarray((np.asarray(image) * 255).round().astype(np.uint8), mode="L").convert(mode)
    buffer = io.BytesIO()
    pixels.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


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


def write_event_source_events(
    events: Path, model: str, requests: list[dict[str, Any]], invalid: dict[str, Any]
) -> None:
    """``s3_put.json`` naming ``inputs/sample.jsonl`` (its real size and ETag), ``sqs_batch.json``
    (valid requests) and ``sqs_mixed_batch.json`` (valid, not JSON, invalid, no request_id, valid)."""
    model_dir = events / model
    content = (model_dir / "inputs" / "sample.jsonl").read_bytes()
    write(
        model_dir / "s3_put.json", generate_s3_put_event(DATA_BUCKET, f"inputs/{model}/sample.jsonl", content)
    )
    queue = f"maas-{model}-requests"
    bodies = [json.dumps({"request_id": f"req-{i}", **request}) for i, request in enumerate(requests)]
    write(model_dir / "sqs_batch.json", generate_sqs_event(queue, bodies))
    mixed = [
        bodies[0],
        "this is not JSON {",
        json.dumps({"request_id": "req-bad-instances", **invalid}),
        json.dumps(requests[0]),
        bodies[1],
    ]
    write(model_dir / "sqs_mixed_batch.json", generate_sqs_event(queue, mixed))


def write_sample_input(events: Path, model: str, rows: list[Any]) -> None:
    """``events/<model>/inputs/sample.jsonl``: one instance (or request) per line."""
    path = events / model / "inputs" / "sample.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {path}")


def write(path: Path, event: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(event, indent=2) + "\n")
    print(f"wrote {path}")


def write_model_events(
    events: Path, model: str, verb: str, requests: dict[str, tuple[dict[str, Any], bool]]
) -> None:
    """``<name>.json`` per request (``POST /models/<model>/<verb>``) and ``describe.json``."""
    for name, (body, base64_body) in requests.items():
        event = generate_http_event("POST", f"/models/{model}/{verb}", body, base64_body=base64_body)
        write(events / model / f"{name}.json", event)
    write(
        events / model / "describe.json",
        generate_http_event("GET", f"/models/{model}", None, base64_body=False),
    )


def write_protocol_events(events: Path, model: str, infer: dict[str, Any]) -> None:
    """``metadata.json`` (``GET /v2/models/<model>``) and ``infer.json`` (``POST .../infer``)."""
    path = f"/v2/models/{model}"
    write(events / model / "metadata.json", generate_http_event("GET", path, None, base64_body=False))
    write(
        events / model / "infer.json",
        generate_http_event("POST", f"{path}/infer", infer, base64_body=False),
    )


# spam_nb's events also show a base64 body, and its sample.jsonl is written by hand: it shows every row form.
BASE64_EXAMPLE = "spam_nb"
HAND_WRITTEN_INPUTS = frozenset({"spam_nb"})


def write_text_events(events: Path, model: str) -> None:
    """A text classifier: raw texts over HTTP, as tensors, in a batch file and in queue messages."""
    texts = {"instances": SPAM_TEXTS}
    requests = {"predict": (texts, False)}
    if model == BASE64_EXAMPLE:
        requests["predict_base64"] = ({"instances": SPAM_TEXTS[:1]}, True)
    write_model_events(events, model, "predict", requests)
    text_input = {"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": SPAM_TEXTS[:2]}
    write_protocol_events(events, model, {"id": "sample-1", "inputs": [text_input]})
    if model not in HAND_WRITTEN_INPUTS:
        write_sample_input(events, model, [*SPAM_TEXTS, 42, ""])
    pairs = [{"instances": SPAM_TEXTS[i : i + 2]} for i in range(3)]
    write_event_source_events(events, model, pairs, {"instances": ["a fine text", 42, ""]})


def write_image_events(events: Path, model: str) -> None:
    """An image classifier: 8x8 digits as arrays and as PNGs (grey and RGB)."""
    images = digit_images()
    write_model_events(
        events,
        model,
        "predict",
        {
            "predict": ({"instances": images}, False),
            "predict_png": (
                {"instances": [{"b64": png_base64(images[0])}, {"b64": png_base64(images[1], "RGB")}]},
                False,
            ),
        },
    )
    image_input = {"name": "image", "shape": [2, 8, 8, 1], "datatype": "FP32", "data": images[:2]}
    write_protocol_events(events, model, {"id": "sample-1", "inputs": [image_input]})
    write_sample_input(events, model, [*images, [[0.5] * 3] * 3])
    image_pairs = [{"instances": images[i : i + 2]} for i in range(2)]
    write_event_source_events(events, model, image_pairs, {"instances": [images[0], [[0.5] * 3] * 3]})


def write_generator_events(events: Path, model: str) -> None:
    """A text generator: sampled and greedy generation, a prompt tensor, prompts in files and queues."""
    write_model_events(
        events,
        model,
        "generate",
        {"generate": (GENERATE, False), "generate_greedy": (GENERATE_GREEDY, False)},
    )
    prompt = {"name": "prompt", "shape": [1], "datatype": "BYTES", "data": [GENERATE_GREEDY["prompt"]]}
    parameters = {"max_new_tokens": 40, "temperature": 0}
    write_protocol_events(events, model, {"id": "sample-1", "inputs": [prompt], "parameters": parameters})
    short = {"max_new_tokens": 40, "temperature": 0}
    prompts = ["Call me Ishmael", "The whale", "It was the ship"]
    write_sample_input(
        events, model, [*({"prompt": p, **short} for p in prompts), {"prompt": ""}, prompts[0]]
    )
    write_event_source_events(
        events, model, [{"prompt": p, **short} for p in prompts], {"prompt": "", "max_new_tokens": 10}
    )


EMBED_TEXTS = [
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "Limited offer: cheap watches, free shipping worldwide",
]


def write_embedding_events(events: Path, model: str) -> None:
    """A sentence-embedding model: texts over HTTP, as a BYTES tensor, in a batch file and in queues."""
    write_model_events(events, model, "embed", {"embed": ({"instances": EMBED_TEXTS}, False)})
    text_input = {"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": EMBED_TEXTS[:2]}
    write_protocol_events(events, model, {"id": "sample-1", "inputs": [text_input]})
    write_sample_input(events, model, [*EMBED_TEXTS, "", "naïve café ✓ 日本語"])
    pairs = [{"instances": EMBED_TEXTS[i : i + 2]} for i in range(2)]
    write_event_source_events(events, model, pairs, {"instances": ["a fine text", ""]})


FAMILY_EVENTS: dict[str, Callable[[Path, str], None]] = {
    "text": write_text_events,
    "image": write_image_events,
    "generator": write_generator_events,
    "embedding": write_embedding_events,
}


def main(root: Path = PROJECT_ROOT) -> None:
    """Every catalogue model of the project ``root``: HTTP (plain and Open Inference Protocol), S3
    batch input, SQS requests; and the registry function's."""
    events = root / "events"
    for model in catalogue.load(root / "models.toml"):
        FAMILY_EVENTS[model.family](events, model.name)
    registry_dir = events / "registry"
    write(registry_dir / "live.json", generate_http_event("GET", "/v2/health/live", None, base64_body=False))
    write(
        registry_dir / "index.json",
        generate_http_event("POST", "/v2/repository/index", {"ready": True}, base64_body=False),
    )


if __name__ == "__main__":
    main()
