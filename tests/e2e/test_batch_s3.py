"""S3 batch scoring through the real handler against a moto server, with the stored s3_put event."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.batch_child import score_in_child, write_rows
from maas.core.observability import logger
from ops.event_sources import s3_put_event
from tests.conftest import FunctionUnderTest, load_event
from tests.e2e.conftest import Stack, http_predictions
from tests.unit.test_metrics import emf_records
from training.data import PROJECT_ROOT

INPUTS = PROJECT_ROOT / "events" / "spam_nb" / "inputs"


def drop(stack: Stack, key: str, body: bytes) -> dict[str, Any]:
    """Put an input object and return the S3 event AWS would send for it."""
    stack.s3().put_object(Bucket=stack.data_bucket, Key=key, Body=body)
    return s3_put_event("spam_nb", stack.data_bucket, key)


def object_versions(stack: Stack, prefix: str) -> dict[str, int]:
    """How many S3 versions each object under ``prefix`` has."""
    listed = stack.s3().list_object_versions(Bucket=stack.data_bucket, Prefix=prefix).get("Versions", [])
    return {key: sum(v["Key"] == key for v in listed) for key in {v["Key"] for v in listed}}


def outputs_of(response: dict[str, Any]) -> dict[str, Any]:
    (outcome,) = response["files"]
    return dict(outcome)


def test_the_stored_event_scores_the_sample_file_in_order_with_error_rows(
    stack: Stack, spam_nb_function: FunctionUnderTest, capsys: pytest.CaptureFixture[str]
) -> None:
    content = (INPUTS / "sample.jsonl").read_bytes()
    stack.s3().put_object(Bucket=stack.data_bucket, Key="inputs/spam_nb/sample.jsonl", Body=content)
    outcome = outputs_of(spam_nb_function(load_event("spam_nb", "s3_put.json")))
    (record,) = [r for r in emf_records(capsys.readouterr().out) if "BatchFiles" in r]
    assert (record["model"], record["model_version"]) == ("spam_nb", str(stack.version))
    assert record["BatchFiles"] == [1.0] and record["BatchRowsScored"] == [5.0]
    assert record["BatchRowsFailed"] == [3.0]

    assert outcome["status"] == "scored"
    lines = content.decode().splitlines()
    predictions = stack.read_lines(outcome["outputs"]["predictions"])
    assert [p["line"] for p in predictions] == list(range(1, len(lines) + 1))
    assert {p["model_version"] for p in predictions} == {str(stack.version)}
    assert [p["id"] for p in predictions] == [1, "msg-002", "msg-003", 4, 5, "msg-006", "msg-007", 8]

    errors = stack.read_lines(outcome["outputs"]["errors"])
    assert [(e["line"], e["error"]["code"]) for e in errors] == [
        (3, "invalid_type"),
        (5, "invalid_json"),
        (6, "empty_text"),
    ]
    assert errors[0]["error"]["field"] == "instance" and "must be a string" in errors[0]["error"]["message"]
    assert [p["error"] for p in predictions if p["prediction"] is None] == [
        e["error"]["code"] for e in errors
    ]

    texts = [json.loads(lines[i - 1]) for i in (1, 4, 8)]
    texts[1:1] = [json.loads(lines[1])["instance"]]
    texts.insert(3, json.loads(lines[6])["instance"])
    scored = [p["prediction"] for p in predictions if p["prediction"] is not None]
    assert scored == http_predictions(spam_nb_function, texts)
    assert scored[0]["label"] == "spam" and scored[1]["label"] == "ham"

    summary = json.loads(stack.read(outcome["success_object"]))
    assert (summary["rows"], summary["scored"], summary["failed"]) == (8, 5, 3)
    assert summary["model_version"] == str(stack.version)
    assert (
        summary["input"]["etag"] == load_event("spam_nb", "s3_put.json")["Records"][0]["s3"]["object"]["eTag"]
    )
    assert summary["timings_ms"]["total"] >= summary["timings_ms"]["inference"] > 0


def test_csv_with_id_and_text_columns_and_a_gzipped_jsonl_of_id_instance_objects(
    stack: Stack, spam_nb_function: FunctionUnderTest, session_runs: list[int]
) -> None:
    csv_outcome = outputs_of(
        spam_nb_function(drop(stack, "inputs/spam_nb/csv/sample.csv", (INPUTS / "sample.csv").read_bytes()))
    )
    rows = stack.read_lines(csv_outcome["outputs"]["predictions"])
    assert [(r["id"], r["line"]) for r in rows] == [("c-1", 2), ("c-2", 3), ("c-3", 5), ("c-4", 6)]
    assert [r["prediction"] is None for r in rows] == [False, False, True, False]
    assert rows[0]["prediction"]["label"] == "spam"
    assert [e["id"] for e in stack.read_lines(csv_outcome["outputs"]["errors"])] == ["c-3"]

    texts = [f"message number {i}: meeting notes and the project plan for week {i}" for i in range(300)]
    lines = "".join(json.dumps({"id": f"g{i}", "instance": t}) + "\n" for i, t in enumerate(texts))
    gz_outcome = outputs_of(
        spam_nb_function(drop(stack, "inputs/spam_nb/gz/many.jsonl.gz", gzip.compress(lines.encode())))
    )
    assert gz_outcome["status"] == "scored" and (gz_outcome["rows"], gz_outcome["failed"]) == (300, 0)
    assert session_runs[-2:] == [256, 44]  # BATCH_CHUNK_ROWS rows per session.run
    scored = stack.read_lines(gz_outcome["outputs"]["predictions"])
    assert [r["id"] for r in scored] == [f"g{i}" for i in range(300)]
    assert [r["prediction"] for r in scored[:5]] == http_predictions(spam_nb_function, texts[:5])
    assert stack.read(gz_outcome["outputs"]["errors"]) == b""


def test_a_redelivered_event_rewrites_the_same_keys_with_the_same_content(
    stack: Stack, spam_nb_function: FunctionUnderTest
) -> None:
    event = drop(stack, "inputs/spam_nb/redelivery/sample.jsonl", (INPUTS / "sample.jsonl").read_bytes())
    first = outputs_of(spam_nb_function(event))
    prefix = "outputs/spam_nb/redelivery/"
    before = {key: stack.read(key) for key in stack.keys(prefix)}
    written_before = object_versions(stack, prefix)
    second = outputs_of(FunctionUnderTest("spam_nb", stack.environ, None)(event))  # another environment
    after = {key: stack.read(key) for key in stack.keys(prefix)}
    # rewritten, not skipped: each of the three outputs has one S3 version more
    assert object_versions(stack, prefix) == {key: n + 1 for key, n in written_before.items()}

    assert sorted(after) == sorted(before) and len(after) == 3
    assert first["outputs"] == second["outputs"]
    for key in after:
        if key.endswith("._SUCCESS.json"):
            a, b = json.loads(before[key]), json.loads(after[key])
            a.pop("timings_ms"), b.pop("timings_ms")
            assert a == b
        else:
            assert after[key] == before[key]
    version_id = event["Records"][0]["s3"]["object"]["versionId"]
    assert all(version_id in key for key in after)


@pytest.mark.parametrize(
    ("name", "body", "code"),
    [
        ("not-gzip.jsonl.gz", b'"plain text, not gzip"\n', "not_gzip"),
        ("latin1.jsonl", '"caf\u00e9 cr\u00e8me"\n'.encode("latin-1"), "not_utf8"),
        ("damaged.csv.gz", gzip.compress(b"id,text\n1,hello there\n")[:-12] + b"garbage!", "bad_gzip"),
        ("notes.txt", b"hello\n", "unknown_format"),
        ("no-text-column.csv", b"id,body\n1,hello\n", "missing_column"),
    ],
)
def test_an_unreadable_input_gets_an_error_object_and_no_crash(
    stack: Stack,
    spam_nb_function: FunctionUnderTest,
    name: str,
    body: bytes,
    code: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = io.StringIO()  # the Powertools logger holds the stdout of its import time: read it here
    monkeypatch.setattr(logger.logger_handler, "stream", log)
    key = f"inputs/spam_nb/unreadable/{name}"
    outcome = outputs_of(spam_nb_function(drop(stack, key, body)))
    assert outcome["status"] == "unreadable"
    output = capsys.readouterr().out
    (line,) = [json.loads(x) for x in log.getvalue().splitlines() if "batch input unreadable" in x]
    assert line["level"] == "ERROR" and line["input"]["key"] == key and line["error"]["code"] == code
    unreadable = [r["BatchUnreadableInputs"] for r in emf_records(output) if "BatchUnreadableInputs" in r]
    assert unreadable == [[1.0]]
    written = stack.keys(f"outputs/spam_nb/unreadable/{name}.")
    assert written == [outcome["error_object"]]
    error = json.loads(stack.read(outcome["error_object"]))
    assert error["error"]["code"] == code and name in error["error"]["message"]
    assert error["input"]["key"] == key


def test_objects_outside_the_models_input_prefix_are_left_alone(
    stack: Stack, spam_nb_function: FunctionUnderTest
) -> None:
    event = drop(stack, "inputs/other_model/sample.jsonl", (INPUTS / "sample.jsonl").read_bytes())
    assert spam_nb_function(event) == {"files": []}
    assert stack.keys("outputs/other_model/") == []


def test_peak_memory_does_not_grow_with_the_number_of_rows(
    stack: Stack, tmp_path: Path, trained_spam_nb: Any
) -> None:
    texts = [" ".join(e.text.split())[:400] for e in trained_spam_nb.data.test[:500]]
    reports = {}
    for rows in (10_000, 100_000):
        path = write_rows(tmp_path / f"rows-{rows}.jsonl", rows, texts)
        key = f"inputs/spam_nb/memory/rows-{rows}.jsonl"
        stack.s3().upload_file(str(path), stack.data_bucket, key)
        environ = {**stack.environ, "MODEL_CACHE_DIR": str(tmp_path / "cache")}
        reports[rows] = score_in_child("spam_nb", stack.data_bucket, key, environ)
        assert reports[rows]["rows"] == rows and reports[rows]["scored"] == rows
    small, large = reports[10_000]["peak_rss_mb"], reports[100_000]["peak_rss_mb"]
    print(f"peak RSS: 10,000 rows {small:.1f} MB, 100,000 rows {large:.1f} MB, ratio {large / small:.3f}")
    assert large / small < 1.5, (small, large)
