"""``make demo``: the whole path on this machine, no Docker and no AWS account.

A moto server on 127.0.0.1 stands in for S3; the model is trained by our own trainer, published
as a version, promoted to ``production`` and queried through the function's real handler with
the sample events in ``events/``.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from maas.registry import ModelRegistry
from training.data import PROJECT_ROOT
from training.local import create_bucket, environment, invoke, local_aws_environment, moto_server, read_event
from training.metrics_report import format_table, summarise
from training.options import TrainOptions

BUCKET = "maas-models-demo"
ALIAS = "production"


def _say(message: str = "") -> None:
    print(message, flush=True)


def _show_response(event: dict[str, Any], response: dict[str, Any]) -> None:
    route = event.get("routeKey", "?")
    body = json.loads(response.get("body") or "{}")
    status = response.get("statusCode")
    if "predictions" in body:
        _say(f"{route} -> {status}, answered by {body['model_name']} version {body['model_version']}")
        request = json.loads(_request_body(event))
        for text, prediction in zip(request["instances"], body["predictions"], strict=True):
            confidence = prediction["probabilities"][prediction["label"]]
            snippet = " ".join(text.split())[:70]
            _say(f"    {prediction['label']:<5} p={confidence:.3f}  {snippet!r}")
    elif "platform" in body:  # Open Inference Protocol v2 model metadata
        inputs = ", ".join(f"{t['name']} {t['datatype']}{t['shape']}" for t in body["inputs"])
        _say(
            f"{route} -> {status}: {body['name']} ({body['platform']}), versions {body['versions']}, inputs {inputs}"
        )
    elif "outputs" in body:  # Open Inference Protocol v2 infer
        tensors = ", ".join(
            f"{o['name']} {o['datatype']}{o['shape']} {_short(o['data'])}" for o in body["outputs"]
        )
        _say(
            f"{route} -> {status}, answered by {body['model_name']} version {body['model_version']}: {tensors}"
        )
    elif "model_version" in body:
        metrics = body.get("metrics", {})
        _say(
            f"{route} -> {status}: {body['model_name']} version {body['model_version']}, labels {body['labels']}, "
            f"accuracy {metrics.get('accuracy')}, F1 {metrics.get('f1')}"
        )
    else:
        _say(f"{route} -> {status}: {body}")


def _short(values: list[Any]) -> list[Any]:
    return [round(v, 3) if isinstance(v, float) else v for v in values[:4]]


def _request_body(event: dict[str, Any]) -> str:
    import base64

    raw = str(event.get("body", ""))
    return base64.b64decode(raw).decode() if event.get("isBase64Encoded") else raw


def run_demo(workdir: Path) -> int:
    workdir = workdir if workdir.is_absolute() else PROJECT_ROOT / workdir
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "demo.log"
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's access log
    with (
        moto_server() as endpoint,
        environment(local_aws_environment(endpoint)),
        log_path.open("w") as log,
    ):
        _say(f"1. moto server (local S3) on {endpoint}")
        create_bucket(BUCKET)
        _say(f"   created bucket s3://{BUCKET} (versioning on)")

        _say("2. train spam_nb on the SpamAssassin corpus, export ONNX, check parity")
        from training.models import spam_nb

        manifest = spam_nb.train(TrainOptions(out=workdir / "spam_nb"))
        metrics, parity = manifest["metrics"], manifest["parity"]
        _say(
            f"   held-out accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}; parity on {parity['rows']} "
            f"rows: {parity['label_disagreements']} label disagreements, max |Δp| "
            f"{parity['max_abs_probability_diff']:.2e}"
        )

        registry = ModelRegistry(BUCKET)
        published = registry.publish(workdir / "spam_nb")
        _say(
            f"3. published spam_nb version {published.version} to s3://{BUCKET}/"
            f"{registry.version_prefix('spam_nb', published.version)}"
        )
        alias = registry.set_alias("spam_nb", ALIAS, published.version)
        _say(f"   alias {ALIAS} -> version {alias.version}")

        _say("4. invoke the spam_nb function's real handler with the sample events")
        for path in sorted((PROJECT_ROOT / "events" / "spam_nb").glob("*.json")):
            event = read_event(path)
            with redirect_stdout(log):  # the handler's EMF metric records and logs go to the demo log
                response = invoke("spam_nb", event, {"MODEL_BUCKET": BUCKET})
            _say(f"   [{path.relative_to(PROJECT_ROOT)}]")
            _show_response(event, response)
        _say(f"5. the handler's logs and EMF metric records are in {log_path}")
        _say("6. stopping the moto server")
    _say(f"7. metrics summary (maas metrics {log_path}):")
    with log_path.open() as lines:
        _say(format_table(summarise(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(Path("build/demo")))
