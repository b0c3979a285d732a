"""``make demo``: the whole path on this machine, no Docker and no AWS account.

A moto server on 127.0.0.1 stands in for S3 and SQS; every model (spam_nb, then the Keras families) is
trained by our own trainer (small epochs: this is a demo), published as a version, promoted to
``production`` and queried through its function's real handler with the sample events in
``events/``. Then spam_nb scores a file of inputs dropped into the data bucket and answers a
batch of requests sent to its queue, and the lifecycle (``ops/demo_lifecycle.py``) runs: a
second spam_nb version is published, compared, promoted, rolled back, retired and deleted while
one warm function environment keeps answering. ``--quick`` trains on small slices (the end-to-end
test runs it that way).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3

from ops import catalogue
from ops.demo_lifecycle import run_lifecycle
from ops.event_sources import create_queue_with_dlq, poll_once, s3_put_event
from ops.local import create_bucket, environment, invoke, local_aws_environment, moto_server, read_event
from ops.metrics_report import format_table, summarise
from ops.registry_admin import RegistryAdmin
from training.data import PROJECT_ROOT
from training.options import TrainOptions

BUCKET = "maas-models-demo"
DATA_BUCKET = "maas-data-demo"
ALIAS = "production"
ENVIRONMENT = {"MODEL_BUCKET": BUCKET, "DATA_BUCKET": DATA_BUCKET}
# How the demo trains each catalogue model after spam_nb: (what it is, demo training options,
# --quick training options). The models and their order come from models.toml; a catalogue model
# without a line here (no trainer of ours) is not part of the demo.
DEMO_TRAINING: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "spam_lstm": ("Embedding -> LSTM spam filter", {"epochs": 2}, {"epochs": 1, "limit": 800}),
    "digits_cnn": ("CNN on 8x8 digits", {"epochs": 10}, {"epochs": 2}),
    "spam_mlp": ("TF-IDF -> dense network, one graph", {"epochs": 3}, {"epochs": 1, "limit": 800}),
    "moby_gen": (
        "character GRU on Moby Dick",
        {"epochs": 2, "limit": 400_000},
        {"epochs": 1, "limit": 40_000},
    ),
}
# The Keras families: (model, what it is, demo training options, --quick training options).
KERAS_MODELS: tuple[tuple[str, str, dict[str, Any], dict[str, Any]], ...] = tuple(
    (name, *DEMO_TRAINING[name]) for name in catalogue.load().names if name in DEMO_TRAINING
)


def _say(message: str = "") -> None:
    print(message, flush=True)


def _show_response(event: dict[str, Any], response: dict[str, Any]) -> None:
    route = event.get("routeKey", "?")
    body = json.loads(response.get("body") or "{}")
    status = response.get("statusCode")
    if "embeddings" in body:
        _say(f"{route} -> {status}, answered by {body['model_name']} version {body['model_version']}")
        request = json.loads(_request_body(event))
        vectors = [[float(v) for v in row] for row in body["embeddings"]]
        for instance, vector in zip(request["instances"], vectors, strict=True):
            _say(f"    [{len(vector)} floats] {_short(vector)}…  {_describe_instance(instance)}")
        if len(vectors) >= 3:
            near = sum(a * b for a, b in zip(vectors[0], vectors[1], strict=True))
            far = sum(a * b for a, b in zip(vectors[0], vectors[2], strict=True))
            _say(
                f"    cosine(1st, 2nd) {near:.3f} > cosine(1st, 3rd) {far:.3f}; truncated: {body['truncated']}"
            )
    elif "predictions" in body:
        _say(f"{route} -> {status}, answered by {body['model_name']} version {body['model_version']}")
        request = json.loads(_request_body(event))
        for instance, prediction in zip(request["instances"], body["predictions"], strict=True):
            confidence = prediction["probabilities"][prediction["label"]]
            _say(f"    {prediction['label']:<5} p={confidence:.3f}  {_describe_instance(instance)}")
    elif "continuations" in body:
        _say(f"{route} -> {status}, answered by {body['model_name']} version {body['model_version']}")
        request = json.loads(_request_body(event))
        how = (
            "greedy"
            if request.get("temperature") == 0
            else f"sampled at temperature {request.get('temperature', 1.0)}"
        )
        reasons = body.get("finish_reasons") or [None] * len(body["continuations"])
        for text, reason in zip(body["continuations"], reasons, strict=True):
            ended = f" [{reason}]" if reason else ""
            _say(f"    {how}: {body['prompt']!r} -> {' '.join(text.split())[:90]!r}{ended}")
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
        figures = ", ".join(f"{k} {metrics[k]}" for k in ("accuracy", "f1", "perplexity") if k in metrics)
        _say(
            f"{route} -> {status}: {body['model_name']} version {body['model_version']}, labels {body['labels']}"
            + (f", held-out {figures}" if figures else "")
        )
    else:
        _say(f"{route} -> {status}: {body}")


def _short(values: list[Any]) -> list[Any]:
    return [round(v, 3) if isinstance(v, float) else v for v in values[:4]]


def _describe_instance(instance: Any) -> str:
    if isinstance(instance, str):
        return repr(" ".join(instance.split())[:70])
    if isinstance(instance, dict):
        return "a base64 PNG image"
    rows = len(instance)
    return f"a {rows}x{len(instance[0]) if rows else 0} pixel array"


def _request_body(event: dict[str, Any]) -> str:
    import base64

    raw = str(event.get("body", ""))
    return base64.b64decode(raw).decode() if event.get("isBase64Encoded") else raw


def _held_out(manifest: dict[str, Any]) -> str:
    metrics, parity = manifest["metrics"], manifest["parity"]
    figures = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "f1", "perplexity") if k in metrics)
    return (
        f"held-out {figures}; parity {parity['label_disagreements']} of {parity['rows']} "
        f"{parity['compared']} differ, max |Δ{parity['measure']}| {parity['max_abs_diff']:.1e}; "
        f"ONNX {manifest['model']['size'] / 1e6:.2f} MB"
    )


def _invoke_events(model: str, log: Any) -> None:
    for path in sorted((PROJECT_ROOT / "events" / model).glob("*.json")):
        event = read_event(path)
        if "routeKey" not in event:
            continue  # the S3 and SQS samples are played in steps 5 and 6, with real objects and queues
        with redirect_stdout(log):  # the handler's EMF metric records and logs go to the demo log
            response = invoke(model, event, ENVIRONMENT)
        _say(f"   [{path.relative_to(PROJECT_ROOT)}]")
        _show_response(event, response)


def _transformers(workdir: Path, registry: RegistryAdmin, log: Any, quick: bool) -> None:
    """minilm (fp32 and int8, from one PyTorch export) and spam_minilm on the same encoder."""
    from training.models import minilm, spam_minilm
    from training.progress import Progress

    _say("4.5 minilm (all-MiniLM-L6-v2): export with PyTorch (its Python 3.11 environment), parity gates")
    quiet = Progress("minilm", quiet=True)
    # --quick (the test suite's run): 100 held-out subjects, fp32 only; the tests check int8
    exported = minilm.export(
        workdir / "minilm-export", TrainOptions(out=workdir, limit=100 if quick else None), quiet
    )
    for variant, scheme in (("fp32", None), ("int8", "int8"))[: 1 if quick else 2]:
        manifest = minilm.write_variant(exported, workdir / f"minilm_{variant}", scheme, quiet)
        parity = manifest["parity"]
        size = manifest["model"]["size"] + sum(a["size"] for a in manifest["artifacts"].values())
        overlap = f", top-5 overlap {parity['top5_overlap']:.3f}" if "top5_overlap" in parity else ""
        version = registry.publish(workdir / f"minilm_{variant}").version
        _say(
            f"   {variant}: min cosine {parity['min_cosine']:.6f} to sentence-transformers on {parity['rows']} "
            f"held-out texts{overlap}; {size / 1e6:.1f} MB; published version {version}"
        )
    registry.set_alias("minilm", ALIAS, 1)
    _say(f"   alias {ALIAS} -> 1 (fp32)" + ("" if quick else "; `maas models promote minilm 2` serves int8"))
    _invoke_events("minilm", log)
    _say("4.6 spam_minilm: logistic regression on MiniLM embeddings, merged into one graph")
    options = TrainOptions(out=workdir / "spam_minilm", limit=300 if quick else 2000)
    manifest = spam_minilm.train_on(exported, options, quiet)
    version = registry.publish(workdir / "spam_minilm").version
    registry.set_alias("spam_minilm", ALIAS, version)
    baseline = manifest["metrics"]["spam_nb_on_this_split"]["accuracy"]
    _say(f"   {_held_out(manifest)}; spam_nb on the same split: accuracy {baseline:.4f}")
    event = read_event(PROJECT_ROOT / "events" / "spam_minilm" / "predict.json")
    with redirect_stdout(log):
        response = invoke("spam_minilm", event, ENVIRONMENT)
    _show_response(event, response)


def _llm(workdir: Path, registry: RegistryAdmin, log: Any) -> None:
    """gemma: google/gemma-3-270m from its GGUF, its gated served variant, greedy and sampled."""
    from training.models import gemma

    _say("4.7 gemma (google/gemma-3-270m, GGUF Q4_K_M from PyPI): dequantise, export with a KV cache, gate")
    _say(
        f"    (a machine's first run exports for minutes; later runs read the cache in {gemma.cache_root()})"
    )
    manifest = gemma.train(TrainOptions(out=workdir / "gemma", quantize=gemma.SERVED_VARIANTS, quiet=True))
    for name, figures in manifest["metrics"]["variants"].items():
        verdict = "passes" if figures["passed"] else "fails: " + "; ".join(figures["unmet"])
        _say(
            f"   {name:<14} {figures['bytes'] / 1e6:7.1f} MB  perplexity {figures['perplexity']:.2f} "
            f"({figures['perplexity_ratio']:.4f}x PyTorch's), greedy agreement {figures['greedy_agreement']:.3f}: "
            f"{verdict}"
        )
    folder = gemma.served(workdir / "gemma")
    version = registry.publish(folder).version
    registry.set_alias("gemma", ALIAS, version)
    _say(
        f"   published gemma version {version} ({folder.name}: the first of {gemma.SERVED_PREFERENCE} that passed), alias {ALIAS} -> {version}"
    )
    _invoke_events("gemma", log)
    _streamed_chat(log)


def _streamed_chat(log: Any) -> None:
    """A chat reply streamed as server-sent events through ``maas serve``'s own server (what a
    function URL in RESPONSE_STREAM mode does on AWS), read by ``maas chat``'s client."""
    import threading
    from http.server import ThreadingHTTPServer

    from ops.chat import Chat
    from ops.serve import LocalApi, RouteTable, _request_handler, functions

    api = LocalApi(RouteTable(functions()), ENVIRONMENT)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _request_handler(api))
    server.daemon_threads = False  # so that server_close() waits for the handler (and its EMF record)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/models/gemma/v1"
    question = "Write one sentence about the sea."
    # the base model is not instruction-tuned: greedy chat loops on itself without a penalty
    settings = {"max_tokens": 48, "temperature": 0, "repetition_penalty": 1.3}
    _say(f"   POST {url}/chat/completions, stream=true, {settings} (maas chat gemma): {question!r}")
    chat = Chat(base_url=url, model="gemma", settings=settings)
    terminal = sys.stdout
    print("    gemma> ", end="", flush=True)
    started = time.perf_counter()
    # the handler's logs and EMF records, the server's access log: the demo log; the reply: the
    # terminal. The handler thread prints its EMF record after the client has read [DONE]: the
    # server is closed (its handler threads joined) before stdout is the terminal again.
    with redirect_stdout(log), redirect_stderr(log):
        try:
            reply = chat.say(question, out=terminal)
        finally:
            server.shutdown()
            server.server_close()
    whole = time.perf_counter() - started
    usage = reply.usage or {}
    _say(
        f"    [{reply.finish_reason}; {usage.get('prompt_tokens')} tokens in, {usage.get('completion_tokens')} out; "
        f"first token after {(reply.first_token_s or 0.0) * 1000:.0f} ms, the whole reply after {whole * 1000:.0f} ms]"
    )


def _batch_file() -> dict[str, Any]:
    """Drop the sample input file under inputs/spam_nb/ and deliver its S3 event to the handler."""
    create_bucket(DATA_BUCKET)
    key = "inputs/spam_nb/sample.jsonl"
    s3 = boto3.client("s3")
    s3.upload_file(str(PROJECT_ROOT / "events" / "spam_nb" / "inputs" / "sample.jsonl"), DATA_BUCKET, key)
    response = invoke("spam_nb", s3_put_event("spam_nb", DATA_BUCKET, key), ENVIRONMENT)
    outcome: dict[str, Any] = response["files"][0]
    return outcome


def _show_batch(outcome: dict[str, Any]) -> None:
    s3 = boto3.client("s3")
    _say(
        f"   {outcome['rows']} rows: {outcome['scored']} scored, {outcome['failed']} refused, by spam_nb version "
        f"{outcome['model_version']} in {outcome['timings_ms']['total']:.0f} ms"
    )
    for name, key in [*outcome["outputs"].items(), ("summary", outcome["success_object"])]:
        _say(f"   {name:<11} s3://{DATA_BUCKET}/{key}")
    body = s3.get_object(Bucket=DATA_BUCKET, Key=outcome["outputs"]["predictions"])["Body"].read().decode()
    for line in body.splitlines()[:4]:
        row = json.loads(line)
        shown = row["prediction"]["label"] if row["prediction"] else f"refused ({row['error']})"
        _say(f"    line {row['line']}  id {row['id']!s:<8} {shown}")


def _async_requests(log: Any) -> None:
    sqs = boto3.client("sqs")
    queue_url, dlq_url = create_queue_with_dlq("maas-spam_nb-requests-demo")
    sample = read_event(PROJECT_ROOT / "events" / "spam_nb" / "sqs_mixed_batch.json")
    for record in sample["Records"]:
        sqs.send_message(QueueUrl=queue_url, MessageBody=record["body"])
    _say(f"   sent {len(sample['Records'])} messages (events/spam_nb/sqs_mixed_batch.json) to {queue_url}")
    rounds = 0
    while rounds < 10:
        with redirect_stdout(log):
            polled = poll_once("spam_nb", queue_url, ENVIRONMENT)
        if polled.received == 0:
            break
        rounds += 1
        _say(f"   poll {rounds}: {polled.received} received, {len(polled.failed_ids)} reported as failures")
    listed = boto3.client("s3").list_objects_v2(Bucket=DATA_BUCKET, Prefix="results/spam_nb/")
    for obj in listed.get("Contents", []):
        _say(f"   result     s3://{DATA_BUCKET}/{obj['Key']}")
    dead = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
    _say(
        f"   dead-letter queue holds {dead['Attributes']['ApproximateNumberOfMessages']} messages (the bad ones)"
    )


def run_demo(workdir: Path, *, quick: bool = False) -> int:
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

        registry = RegistryAdmin(BUCKET)
        published = registry.publish(workdir / "spam_nb")
        _say(
            f"3. published spam_nb version {published.version} to s3://{BUCKET}/"
            f"{registry.version_prefix('spam_nb', published.version)}"
        )
        alias = registry.set_alias("spam_nb", ALIAS, published.version)
        _say(f"   alias {ALIAS} -> version {alias.version}")

        _say("4. invoke the spam_nb function's real handler with the sample HTTP events")
        _invoke_events("spam_nb", log)
        for step, (model, what, options, quick_options) in enumerate(KERAS_MODELS, start=1):
            _say(f"4.{step} {model} ({what}): train with Keras, export with tf2onnx, check parity, publish")
            trainer = importlib.import_module(f"training.models.{model}")
            chosen = quick_options if quick else options
            manifest = trainer.train(replace(TrainOptions(out=workdir / model), **chosen))
            version = registry.publish(workdir / model).version
            registry.set_alias(model, ALIAS, version)
            _say(f"   {_held_out(manifest)}; published {model} version {version}, alias {ALIAS} -> {version}")
            _invoke_events(model, log)
        _transformers(workdir, registry, log, quick)
        if quick:  # the suite imports gemma in tests/e2e/test_gemma.py and serves tiny decoders
            _say("4.7 gemma: not in --quick (make demo runs it)")
        else:
            _llm(workdir, registry, log)
        with redirect_stdout(log):
            scored = _batch_file()
        _say(f"5. S3 batch scoring: dropped {scored['input']['key']} into s3://{DATA_BUCKET}/")
        _show_batch(scored)
        _say("6. SQS async requests: a queue with a dead-letter queue (maxReceiveCount 3), a mixed batch")
        _async_requests(log)
        step = run_lifecycle(BUCKET, workdir, ALIAS, log, _say, step=7)
        _say(f"{step}. the handler's logs and EMF metric records are in {log_path}")
        _say(f"{step + 1}. stopping the moto server")
    _say(f"{step + 2}. metrics summary (maas metrics {log_path}):")
    with log_path.open() as lines:
        _say(format_table(summarise(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(run_demo(Path("build/demo"), quick="--quick" in sys.argv))
