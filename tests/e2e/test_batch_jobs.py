"""Batch jobs through `maas batch run` (the template's state machine, executed locally against the
moto server with the real handler): every row accounted for once, one version per job."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops import batch_run
from ops.batch_run import StatesError, run_job, state_machine_for_model
from ops.event_sources import s3_put_event
from ops.local import create_bucket, environment, local_aws_environment, moto_server_process
from ops.registry_admin import RegistryAdmin
from ops.template import FunctionSpec
from tests.conftest import FunctionUnderTest
from tests.e2e.conftest import http_predictions
from training.data import PROJECT_ROOT

# `maas batch run`'s environments are threads of one process sharing Powertools' metric store: one
# invocation's flush may find the store already flushed by another (never so in Lambda).
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
MODELS = "maas-batch-models"
DATA = "maas-batch-data"
WORDS = ["meeting", "notes", "free", "money", "winner", "project", "lunch", "prize", "click", "report"]


@dataclass(frozen=True)
class Jobs:
    environ: dict[str, str]
    registry: RegistryAdmin

    def put(self, key: str, body: bytes) -> None:
        boto3.client("s3").put_object(Bucket=DATA, Key=key, Body=body)

    def read(self, key: str) -> bytes:
        body: bytes = boto3.client("s3").get_object(Bucket=DATA, Key=key)["Body"].read()
        return body

    def outputs(self, prefix: str) -> dict[str, bytes]:
        pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=DATA, Prefix=prefix)
        keys = [o["Key"] for page in pages for o in page.get("Contents", []) if "/map/" not in o["Key"]]
        return {key: self.read(key) for key in keys}

    def run(self, key: str, **options: Any) -> dict[str, Any]:
        return run_job("spam_nb", DATA, key, overrides=self.environ, **options).output


@pytest.fixture(scope="module")
def jobs(spam_nb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    """spam_nb versions 1 and 2 (production -> 1) in a registry of their own, an empty data bucket,
    on a moto server in a process of its own: its S3 work does not take the GIL from the batches
    (Step Functions and S3 are not in the Lambda process either)."""
    with moto_server_process() as endpoint, environment(local_aws_environment(endpoint)):
        create_bucket(MODELS)
        create_bucket(DATA)
        registry = RegistryAdmin(MODELS)
        for _ in range(2):
            registry.publish(spam_nb_dir)
        registry.set_alias("spam_nb", "production", 1)
        cache = tmp_path_factory.mktemp("batch-cache")
        yield Jobs({"MODEL_BUCKET": MODELS, "DATA_BUCKET": DATA, "MODEL_CACHE_DIR": str(cache)}, registry)


def text(i: int) -> str:
    return " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7, 11)) + f" number {i}"


def large_csv(rows: int) -> tuple[bytes, set[int]]:
    """``id,text`` rows; every 997th text is empty and every 1,009th blank: refused, by row index."""
    bad = {i for i in range(rows) if i % 997 == 5 or i % 1009 == 7}
    lines = ["id,text"]
    for i in range(rows):
        body = "" if i % 997 == 5 else "   " if i in bad else text(i)
        lines.append(f'r{i},"{body}"' if i % 2 else f"r{i},{body}")
    return ("\n".join(lines) + "\n").encode(), bad


def large_jsonl(rows: int) -> tuple[bytes, set[int]]:
    """Bare texts and ``{"id", "instance"}`` rows; numbers, nulls, lists and empty texts refused."""
    wrong: list[Any] = [17, None, ["a", "list"], {"instance": ""}, {"instance": {"nested": 1}}, ""]
    bad = {i for i in range(rows) if i % 501 == 3}
    lines = []
    for i in range(rows):
        value: Any = (
            wrong[i % len(wrong)]
            if i in bad
            else ({"id": f"j{i}", "instance": text(i)} if i % 3 else text(i))
        )
        lines.append(json.dumps(value))
    return ("\n".join(lines) + "\n").encode(), bad


def rows_of(outputs: dict[str, bytes], suffix: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for key, body in sorted(outputs.items())
        if key.endswith(suffix)
        for line in body.splitlines()
    ]


def check_accounting(outputs: dict[str, bytes], rows: int, bad: set[int], offset: int, version: int) -> None:
    """Every input row has exactly one prediction line; the refused ones exactly one error line."""
    predictions = rows_of(outputs, ".predictions.jsonl")
    lines = [p["line"] - offset for p in predictions]
    assert len(lines) == rows and sorted(lines) == list(range(rows))  # none missing, none doubled
    refused = {p["line"] - offset for p in predictions if p["prediction"] is None}
    assert refused == bad
    errors = rows_of(outputs, ".errors.jsonl")
    assert sorted(e["line"] - offset for e in errors) == sorted(bad)
    assert {p["model_version"] for p in predictions} == {str(version)}


def check_sampled_answers(jobs: Jobs, predictions: list[dict[str, Any]], bad: set[int], offset: int) -> None:
    """64 scored rows spread over the file answer what the model's HTTP endpoint answers for
    their texts (version 1, the job's): the job scores, it does not only count."""
    by_row = {p["line"] - offset: p for p in predictions}
    sample = [i for i in range(0, len(by_row), max(1, len(by_row) // 64)) if i not in bad][:64]
    function = FunctionUnderTest("spam_nb", {**jobs.environ, "MODEL_VERSION": "1"}, None)
    assert [by_row[i]["prediction"] for i in sample] == http_predictions(function, [text(i) for i in sample])


def test_a_200000_row_csv_and_a_100000_row_jsonl_are_each_row_accounted_for_and_rerun_identically(
    jobs: Jobs,
) -> None:
    csv_body, csv_bad = large_csv(200_000)
    jobs.put("inputs/spam_nb/large/big.csv", csv_body)
    first = jobs.run("inputs/spam_nb/large/big.csv", parallel=2)
    print(f"csv: {first['rows_read']} read, {first['rows_scored']} scored, {first['rows_refused']} refused")
    assert (first["input_rows"], first["rows_read"]) == (200_000, 200_000)
    assert (first["rows_scored"], first["rows_refused"]) == (200_000 - len(csv_bad), len(csv_bad))
    assert first["model_version"] == "1" and first["batches"] >= 100  # 2,000 rows (or 256 KiB) a batch
    prefix = first["outputs"]["prefix"]
    before = jobs.outputs(prefix)
    check_accounting(before, 200_000, csv_bad, offset=2, version=1)
    summary = json.loads(before[first["success_object"]])
    assert {k: summary[k] for k in ("rows_read", "rows_scored", "rows_refused")} == {
        k: first[k] for k in ("rows_read", "rows_scored", "rows_refused")
    }
    ids = {p["id"] for p in rows_of(before, ".predictions.jsonl")}
    assert ids == {f"r{i}" for i in range(200_000)}
    check_sampled_answers(jobs, rows_of(before, ".predictions.jsonl"), csv_bad, offset=2)

    jsonl_body, jsonl_bad = large_jsonl(100_000)
    jobs.put("inputs/spam_nb/large/big.jsonl", jsonl_body)
    done = jobs.run("inputs/spam_nb/large/big.jsonl", parallel=2)
    print(f"jsonl: {done['rows_read']} read, {done['rows_scored']} scored, {done['rows_refused']} refused")
    assert (done["rows_read"], done["rows_scored"], done["rows_refused"]) == (
        100_000,
        100_000 - len(jsonl_bad),
        len(jsonl_bad),
    )
    jsonl_outputs = jobs.outputs(done["outputs"]["prefix"])
    check_accounting(jsonl_outputs, 100_000, jsonl_bad, offset=1, version=1)
    check_sampled_answers(jobs, rows_of(jsonl_outputs, ".predictions.jsonl"), jsonl_bad, offset=1)
    codes = {
        json.loads(line)["error"]["code"]
        for line in b"".join(v for k, v in jsonl_outputs.items() if k.endswith(".errors.jsonl")).splitlines()
    }
    assert codes >= {"invalid_type", "empty_text"}
    # a rerun (another execution, other environments) rewrites the same objects, byte for byte;
    # a batch's counts file and _SUCCESS.json differ in their timings only
    rerun = jobs.run("inputs/spam_nb/large/big.jsonl", parallel=2)
    assert rerun["rows_scored"] == done["rows_scored"]
    again = jobs.outputs(done["outputs"]["prefix"])
    assert sorted(again) == sorted(jsonl_outputs)
    changed = [k for k in again if again[k] != jsonl_outputs[k]]
    assert changed and all(k.endswith(".json") for k in changed)
    for key in changed:
        a, b = json.loads(jsonl_outputs[key]), json.loads(again[key])
        for document in (a, b):
            for volatile in ("timings_ms", "timings", "execution", "map"):
                document.pop(volatile, None)
        assert a == b, key


def test_a_promotion_in_the_middle_of_a_job_leaves_every_output_on_the_version_resolved_at_the_start(
    jobs: Jobs,
) -> None:
    body = "".join(json.dumps(text(i)) + "\n" for i in range(12_000)).encode()
    jobs.put("inputs/spam_nb/large/promoted.jsonl", body)
    moved: list[int] = []

    def promote_after_the_first_batch(spec: FunctionSpec, payload: dict[str, Any]) -> Any:
        answer = batch_run.call_in_process(spec, payload, environments)
        with lock:  # two batches may finish at once: the alias moves once
            if "Items" in payload and not moved:
                moved.append(jobs.registry.set_alias("spam_nb", "production", 2).version)
        return answer

    environments = threading.local()
    lock = threading.Lock()
    try:
        output = jobs.run(
            "inputs/spam_nb/large/promoted.jsonl", parallel=2, invoker=promote_after_the_first_batch
        )
        assert moved == [2]
        outputs = jobs.outputs(output["outputs"]["prefix"])
        predictions = rows_of(outputs, ".predictions.jsonl")
        assert len(predictions) == 12_000 and output["batches"] >= 6
        assert {p["model_version"] for p in predictions} == {"1"}
        assert json.loads(outputs[output["success_object"]])["model_version"] == "1"
        # the promotion did take effect: the next job resolves version 2
        later = jobs.run("inputs/spam_nb/large/promoted.jsonl", parallel=2)
        assert later["model_version"] == "2"
        assert {
            p["model_version"]
            for p in rows_of(jobs.outputs(later["outputs"]["prefix"]), ".predictions.jsonl")
        } == {"2"}
    finally:
        jobs.registry.set_alias("spam_nb", "production", 1)


def test_a_batch_that_fails_once_then_succeeds_on_retry_doubles_no_row(jobs: Jobs) -> None:
    body = "".join(json.dumps({"id": f"t{i}", "instance": text(i)}) + "\n" for i in range(9_000)).encode()
    jobs.put("inputs/spam_nb/large/retried.jsonl", body)
    calls: dict[int, int] = {}
    environments = threading.local()

    def fail_once_after_writing(spec: FunctionSpec, payload: dict[str, Any]) -> Any:
        answer = batch_run.call_in_process(spec, payload, environments)
        if "Items" in payload:
            first = payload["Items"][0]["row"]
            calls[first] = calls.get(first, 0) + 1
            if first == 4000 and calls[first] == 1:  # its objects are written, then it times out
                raise TimeoutError("Task timed out after 300.00 seconds")
        return answer

    output = jobs.run("inputs/spam_nb/large/retried.jsonl", parallel=2, invoker=fail_once_after_writing)
    assert calls[4000] == 2 and all(n == 1 for first, n in calls.items() if first != 4000)
    assert (output["rows_read"], output["rows_scored"], output["rows_refused"]) == (9_000, 9_000, 0)
    predictions = rows_of(jobs.outputs(output["outputs"]["prefix"]), ".predictions.jsonl")
    assert sorted(p["id"] for p in predictions) == sorted(f"t{i}" for i in range(9_000))


def test_a_batch_that_never_succeeds_fails_the_job_at_the_final_count(jobs: Jobs) -> None:
    body = "".join(json.dumps(text(i)) + "\n" for i in range(3_000)).encode()
    jobs.put("inputs/spam_nb/large/lost.jsonl", body)
    spec = state_machine_for_model("spam_nb")
    definition = copy.deepcopy(spec.definition)
    definition["States"]["ScoreJsonl"]["ItemBatcher"]["MaxItemsPerBatch"] = 50  # 60 batches: 1 is 1.7%
    environments = threading.local()

    def lose_one_batch(fn: FunctionSpec, payload: dict[str, Any]) -> Any:
        if "Items" in payload and payload["Items"][0]["row"] == 1000:
            raise ConnectionError("the S3 write failed")
        return batch_run.call_in_process(fn, payload, environments)

    machine = batch_run.LocalStateMachine(
        replace(spec, definition=definition), parallel=2, invoker=lose_one_batch
    )
    event = batch_run.object_created_event(DATA, "inputs/spam_nb/large/lost.jsonl")
    with batch_run.environment(batch_run.function_environment(spec.function, jobs.environ)):
        with pytest.raises(StatesError) as failed:
            machine.start(event)
    assert failed.value.error == "JobIncomplete"
    assert "rows 1000-1049 were scored by no batch" in failed.value.cause
    prefix = "outputs/spam_nb/large/lost.jsonl."
    keys = jobs.outputs(prefix)
    assert not [k for k in keys if k.endswith("_SUCCESS.json")]
    (report,) = [json.loads(v) for k, v in keys.items() if k.endswith("_FAILED.json")]
    assert (report["input_rows"], report["rows_read"]) == (3_000, 2_950)


def test_the_cli_says_it_is_a_stand_in_and_a_wrong_url_is_one_line(jobs: Jobs) -> None:
    body = "".join(json.dumps(text(i)) + "\n" for i in range(500)).encode()
    jobs.put("inputs/spam_nb/large/cli.jsonl", body)
    jobs.put("inputs/spam_nb/cli.jsonl", body)  # the one-invocation prefix: not a batch job's
    env = {**os.environ, **jobs.environ}
    command = [sys.executable, "-m", "ops.cli", "batch", "run", "spam_nb"]
    done = subprocess.run(
        [*command, f"s3://{DATA}/inputs/spam_nb/large/cli.jsonl", "--parallel", "1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "development stand-in for AWS Step Functions" in done.stderr
    assert "500 rows read: 500 scored, 0 refused, by spam_nb version 1" in done.stdout
    wrong = subprocess.run(
        [*command, "inputs/spam_nb/large/cli.jsonl"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert wrong.returncode == 1 and wrong.stderr.strip().splitlines()[-1].startswith("error: ")
    elsewhere = subprocess.run(
        [*command, f"s3://{DATA}/inputs/spam_nb/cli.jsonl"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert elsewhere.returncode == 1 and "error: the job failed: RequestError" in elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr


def test_batch_start_starts_the_deployed_state_machine_with_the_event_s3_would_send(jobs: Jobs) -> None:
    """Against moto's Step Functions (which records executions without running them)."""
    jobs.put("inputs/spam_nb/large/started.jsonl", b'"hello there"\n')
    sfn = boto3.client("stepfunctions")
    definition = json.dumps(state_machine_for_model("spam_nb").definition)
    role = "arn:aws:iam::123456789012:role/maas-spam_nb-batch"
    arn = sfn.create_state_machine(name="teststack-spam_nb-batch", definition=definition, roleArn=role)[
        "stateMachineArn"
    ]
    env = {**os.environ, **jobs.environ}
    url = f"s3://{DATA}/inputs/spam_nb/large/started.jsonl"
    command = [sys.executable, "-m", "ops.cli", "batch", "start", "spam_nb", url, "--no-follow"]
    started = subprocess.run(
        [*command, "--stack", "teststack"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert started.returncode == 0, started.stderr
    execution = started.stdout.strip()
    described = sfn.describe_execution(executionArn=execution)
    assert described["stateMachineArn"] == arn
    event = json.loads(described["input"])
    assert event["detail-type"] == "Object Created" and event["source"] == "aws.s3"
    assert event["detail"]["object"]["key"] == "inputs/spam_nb/large/started.jsonl"
    assert event["detail"]["object"]["version-id"]
    missing = subprocess.run(
        [*command, "--stack", "nostack"],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=300,
    )
    assert missing.returncode == 1
    assert (
        missing.stderr.strip()
        == "error: no state machine named 'nostack-spam_nb-batch': is the stack 'nostack' deployed? (--stack, --state-machine)"
    )


def test_the_s3_notification_of_a_large_input_leaves_it_to_the_batch_job(jobs: Jobs) -> None:
    """The notification covers all of inputs/<model>/; the one-invocation path scores no large/ key."""
    jobs.put("inputs/spam_nb/large/notified.jsonl", b'"hello there"\n')
    jobs.put("inputs/spam_nb/small.jsonl", b'"hello there"\n')
    function = FunctionUnderTest("spam_nb", jobs.environ, None)
    assert function(s3_put_event("spam_nb", DATA, "inputs/spam_nb/large/notified.jsonl")) == {"files": []}
    (scored,) = function(s3_put_event("spam_nb", DATA, "inputs/spam_nb/small.jsonl"))["files"]
    assert scored["status"] == "scored" and scored["rows"] == 1
    assert not jobs.outputs("outputs/spam_nb/notified") and not jobs.outputs("outputs/spam_nb/large/notified")
