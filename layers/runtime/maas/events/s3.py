"""S3 batch scoring: an object under ``inputs/<model>/`` becomes predictions under ``outputs/<model>/``.

The input is streamed and scored in chunks (one ``session.run`` per chunk), and the outputs are
streamed to S3 as multipart uploads, so memory is bounded by a chunk and a part, not by the file.
Output keys derive from the input key and its version id (or ETag), so a redelivered event
rewrites the same objects with the same content, and no row is ever scored into two places::

    outputs/<model>/<rest>.<tag>.predictions.jsonl   one line per input row, in order
    outputs/<model>/<rest>.<tag>.errors.jsonl        the rows that failed, with the reason
    outputs/<model>/<rest>.<tag>._SUCCESS.json       counts, model version, timings (written last)
    outputs/<model>/<rest>.<tag>.error.json          instead of all three, when the input is unreadable
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError

from maas.core import pipeline
from maas.core.deadline import deadline_for
from maas.core.errors import UnreadableInput, record_error
from maas.core.observability import logger, record_batch_file, record_ignored_objects, record_unreadable_input
from maas.core.runtime import ModelRuntime
from maas.core.service import ServedModel
from maas.core.tasks.base import Generator
from maas.events.streams import Row, RowError, input_format, read_rows
from maas.events.writer import ObjectWriter

INPUTS = "inputs"
OUTPUTS = "outputs"
LARGE = "large"  # inputs/<model>/large/: a Step Functions batch job (events/distributed_map.py)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def mapping(parent: Any, key: str) -> dict[str, Any]:
    """``parent[key]`` if both are objects, else ``{}``: event fields read without a KeyError."""
    value = parent.get(key) if isinstance(parent, dict) else None
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class InputObject:
    """One object named by an S3 event record: which bytes exactly are to be scored."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None

    @classmethod
    def from_record(cls, record: Any) -> InputObject:
        """Read defensively: a record of another shape names no object (bucket and key empty)."""
        s3 = mapping(record, "s3")
        obj = mapping(s3, "object")
        return cls(
            bucket=str(mapping(s3, "bucket").get("name", "")),
            key=unquote_plus(str(obj.get("key", ""))),  # event keys are URL-encoded
            version_id=obj.get("versionId") or None,
            etag=(str(obj["eTag"]).strip('"') if obj.get("eTag") else None),
        )

    @property
    def tag(self) -> str:
        """What tells this content apart from other versions at the same key: version id, else ETag."""
        return _UNSAFE.sub("_", self.version_id or self.etag or "unversioned")


@dataclass(frozen=True, slots=True)
class OutputKeys:
    predictions: str
    errors: str
    success: str
    failure: str

    @classmethod
    def for_input(cls, model: str, source: InputObject) -> OutputKeys:
        rest = source.key.removeprefix(f"{INPUTS}/{model}/")
        base = f"{OUTPUTS}/{model}/{rest}.{source.tag}"
        return cls(
            predictions=f"{base}.predictions.jsonl",
            errors=f"{base}.errors.jsonl",
            success=f"{base}._SUCCESS.json",
            failure=f"{base}.error.json",
        )


def _line(document: dict[str, Any]) -> bytes:
    """One output line. Text is written as UTF-8; an id or value holding a lone surrogate (valid
    in JSON as an escape, not in UTF-8) makes the line fall back to ASCII escapes. NaN never gets
    here (the reader refuses it), and ``allow_nan=False`` makes sure a line is always JSON."""
    try:
        text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(document, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")


def chunks(rows: Iterable[Row | RowError], size: int) -> Iterator[list[Row | RowError]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass(slots=True)
class FileResult:
    rows: int = 0
    scored: int = 0
    failed: int = 0
    inference_ms: float = 0.0


def _answers(
    served: ServedModel, rows: list[Row], source: InputObject, deadline: float | None = None
) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]], float]:
    """Predictions and refusals by line: classifiers' valid rows in one ``session.run``, a text
    generator's rows (generation requests, or bare prompts) one decoding loop each, stopped by the
    invocation's ``deadline`` (a row it cuts short says so: ``finish_reason`` "time")."""
    answers: dict[int, dict[str, Any]] = {}
    refused: dict[int, dict[str, Any]] = {}
    total_ms = 0.0
    if not rows:  # a chunk of blank or unparseable lines never reaches the model
        return answers, refused, total_ms
    if isinstance(served.task, Generator):
        for row in rows:
            try:
                seed = pipeline.stable_seed(source.key, source.tag, row.line)
                request = pipeline.decode_generation(served, row.instance, seed, deadline)
                generated = pipeline.generate(served, request)
            except Exception as error:  # any failure of this row is this row's error
                refused[row.line] = record_error(error, "instance").to_dict()
                continue
            answers[row.line] = generated.to_dict()
            total_ms += generated.latency_ms
        return answers, refused, total_ms
    outcome = pipeline.score_each(served, [row.instance for row in rows], "instance")
    answers = {rows[i].line: p for i, p in outcome.predictions.items()}
    refused = {rows[i].line: error.to_dict() for i, error in outcome.errors.items()}
    return answers, refused, outcome.latency_ms


def score_chunk(
    chunk: list[Row | RowError],
    source: InputObject,
    served: ServedModel,
    predictions: ObjectWriter,
    errors: ObjectWriter,
    result: FileResult,
    deadline: float | None = None,
) -> None:
    """Score the chunk's readable rows in one ``session.run``; write every row's line in order."""
    rows = [entry for entry in chunk if isinstance(entry, Row)]
    answers, refused, latency_ms = _answers(served, rows, source, deadline)
    result.inference_ms += latency_ms
    version = str(served.version)
    for entry in chunk:
        result.rows += 1
        line = {"line": entry.line, "id": entry.id, "model_version": version}
        prediction = answers.get(entry.line) if isinstance(entry, Row) else None
        if prediction is not None:
            result.scored += 1
            predictions.write(_line({**line, "prediction": prediction}))
            continue
        result.failed += 1
        reason = (
            refused[entry.line]
            if isinstance(entry, Row)
            else {"code": entry.code, "message": entry.message, "field": entry.field}
        )
        predictions.write(_line({**line, "prediction": None, "error": reason["code"]}))
        errors.write(_line({"line": entry.line, "id": entry.id, "error": reason}))


def put_json(s3: Any, bucket: str, key: str, document: dict[str, Any]) -> None:
    body = json.dumps(document, indent=2, sort_keys=True).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def _open_body(s3: Any, source: InputObject) -> Any:
    """The exact bytes the event named: that version, or that ETag (a newer object is not ours)."""
    extra: dict[str, str] = {}
    if source.version_id:
        extra["VersionId"] = source.version_id
    elif source.etag:
        extra["IfMatch"] = f'"{source.etag}"'
    try:
        return s3.get_object(Bucket=source.bucket, Key=source.key, **extra)["Body"]
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in {"NoSuchKey", "NoSuchVersion", "404", "PreconditionFailed", "412"}:
            raise UnreadableInput(
                f"{source.key!r} (version {source.tag}) is gone or was replaced before it was scored: {code}",
                code="input_missing",
                field="key",
            ) from None
        raise


def score_object(
    runtime: ModelRuntime, source: InputObject, served: ServedModel, deadline: float | None = None
) -> dict[str, Any]:
    """Score one input object into its output objects; an unreadable one gets an error object."""
    started = time.perf_counter()
    s3 = runtime.data_s3
    model = runtime.model_name
    keys = OutputKeys.for_input(model, source)
    described = {
        "bucket": source.bucket,
        "key": source.key,
        "version_id": source.version_id,
        "etag": source.etag,
    }
    predictions = ObjectWriter(s3, source.bucket, keys.predictions)
    errors = ObjectWriter(s3, source.bucket, keys.errors)
    result = FileResult()
    try:
        fmt = input_format(source.key)
        body = _open_body(s3, source)
        for chunk in chunks(
            read_rows(
                body,
                source.key,
                runtime.settings.max_body_bytes,
                served.task.feature_names,
                served.task.string_features,
            ),
            runtime.settings.batch_chunk_rows,
        ):
            score_chunk(chunk, source, served, predictions, errors, result, deadline)
        predictions.close()
        errors.close()
    except UnreadableInput as error:
        predictions.abort()
        errors.abort()
        logger.error(
            "batch input unreadable: no predictions written",
            extra={"input": described, "error": error.to_dict(), "error_object": keys.failure},
        )
        failure = {
            "input": described,
            "model_name": model,
            "error": error.to_dict(),
            "rows_read": result.rows,
        }
        put_json(s3, source.bucket, keys.failure, failure)
        return {"status": "unreadable", "error_object": keys.failure, **failure}
    except BaseException:
        predictions.abort()
        errors.abort()
        raise
    summary = {
        "input": {**described, "format": fmt},
        "model_name": model,
        "model_version": str(served.version),
        "rows": result.rows,
        "scored": result.scored,
        "failed": result.failed,
        "chunk_rows": runtime.settings.batch_chunk_rows,
        "outputs": {"predictions": keys.predictions, "errors": keys.errors},
        "timings_ms": {
            "total": round((time.perf_counter() - started) * 1000.0, 1),
            "inference": round(result.inference_ms, 1),
        },
    }
    put_json(s3, source.bucket, keys.success, summary)
    logger.info("batch input scored", extra={"summary": summary})
    return {"status": "scored", "success_object": keys.success, **summary}


def handle_s3_event(event: dict[str, Any], runtime: ModelRuntime, context: Any = None) -> dict[str, Any]:
    """Every object the event names under this model's input prefix; others are logged and left."""
    deadline = deadline_for(context, http=False)
    prefix = f"{INPUTS}/{runtime.model_name}/"
    data_bucket = runtime.data_bucket
    files: list[dict[str, Any]] = []
    served: ServedModel | None = None
    totals = FileResult()
    ignored = 0
    records = event.get("Records")
    for record in records if isinstance(records, list) else []:
        source = InputObject.from_record(record)
        if source.bucket == data_bucket and source.key.startswith(f"{prefix}{LARGE}/"):
            # the notification covers the whole prefix; EventBridge starts the batch job for these
            logger.info("S3 event for a large input: left to its batch job", extra={"key": source.key})
            continue
        if source.bucket != data_bucket or not source.key.startswith(prefix) or source.key.endswith("/"):
            logger.warning(
                "S3 event for an object this function does not score",
                extra={"bucket": source.bucket, "key": source.key},
            )
            ignored += 1
            continue
        served = served or runtime.service.current(runtime.model_name)
        outcome = score_object(runtime, source, served, deadline)
        files.append(outcome)
        if outcome["status"] == "unreadable":
            record_unreadable_input(runtime.model_name, outcome["error"]["code"])
        else:
            totals.scored += outcome["scored"]
            totals.failed += outcome["failed"]
            totals.inference_ms += outcome["timings_ms"]["inference"]
    if ignored:
        record_ignored_objects(runtime.model_name, ignored)
    scored_files = sum(1 for f in files if f["status"] == "scored")
    if served is not None and scored_files:
        record_batch_file(
            served.name,
            served.version,
            totals.scored,
            totals.failed,
            totals.inference_ms,
            files=scored_files,
        )
    return {"files": files}
