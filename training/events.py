"""Regenerate the sample events under ``events/<model>/`` from ``sam local generate-event``.

The events are committed; this script documents and repeats how they were made:
``python -m training.events``. Each is SAM's HTTP API (payload 2.0) event, edited for one route,
so it works as it is with ``sam local invoke -e`` and with ``maas invoke --event``.
"""

from __future__ import annotations

import base64
import json
import subprocess
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
    # Open Inference Protocol v2: a BYTES tensor of texts, and the model metadata.
    infer = {
        "id": "sample-1",
        "inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": SPAM_TEXTS[:2]}],
    }
    write(
        model_dir / "infer.json",
        generate_http_event("POST", "/v2/models/spam_nb/infer", infer, base64_body=False),
    )
    write(
        model_dir / "metadata.json", generate_http_event("GET", "/v2/models/spam_nb", None, base64_body=False)
    )
    registry_dir = EVENTS_DIR / "registry"
    write(registry_dir / "live.json", generate_http_event("GET", "/v2/health/live", None, base64_body=False))
    write(
        registry_dir / "index.json",
        generate_http_event("POST", "/v2/repository/index", {"ready": True}, base64_body=False),
    )


if __name__ == "__main__":
    main()
