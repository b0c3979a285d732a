"""Batch jobs: one large S3 object scored by a Step Functions Distributed Map, one version throughout.

The state machine (``ops/state_machine.py``, in ``template.yaml``) sends this function three events:

- ``{"BatchJob": "start", "event": <EventBridge "Object Created">}``: check the object, resolve
  the alias ONCE and return the job (model, version, job id, output prefix);
- ``{"Items": [...], "BatchInput": {...}}``: one batch of the Distributed Map, scored with the
  job's version (never the alias's, which may move mid-job) through the same pipeline as every
  other adapter, a refusal per bad row;
- ``{"BatchJob": "finish", ...}``: count the input's rows again, check that the batches account
  for every one of them exactly once, and write ``_SUCCESS.json``, or fail the job.

A batch's objects are named by the job and the batch's first row, so a retried batch rewrites
the same objects and no row is ever counted twice::

    outputs/<model>/large/<rest>.<tag>/part-<first row>.predictions.jsonl   one line per row
    outputs/<model>/large/<rest>.<tag>/part-<first row>.errors.jsonl        the refused rows
    outputs/<model>/large/<rest>.<tag>/part-<first row>.json                the batch's counts (last)
    outputs/<model>/large/<rest>.<tag>/_SUCCESS.json                        the job's counts
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from maas.core.deadline import deadline_for
from maas.core.errors import JobIncomplete, RequestError, UnreadableInput
from maas.core.observability import logger, record_batch_file
from maas.core.runtime import ModelRuntime
from maas.events.s3 import (
    INPUTS,
    LARGE,
    OUTPUTS,
    FileResult,
    InputObject,
    chunks,
    mapping,
    put_json,
    score_chunk,
)
from maas.events.streams import Row, RowError, count_rows, input_format, item_row, read_rows
from maas.events.writer import ObjectWriter

HEADER_BYTES = 2 * 1024 * 1024  # enough for a CSV header and its first row
READERS = 8  # summaries read at once by the final step


@dataclass(frozen=True, slots=True)
class Job:
    """What every step of one batch job agrees on; the state machine carries it as ``$.job``."""

    model: str
    version: int
    job_id: str
    bucket: str
    key: str
    version_id: str
    format: str
    prefix: str
    map_prefix: str

    @classmethod
    def of(cls, document: Any) -> Job:
        """The job from a step's input; a missing field is the state machine's mistake, not a row's."""
        values = document if isinstance(document, dict) else {}
        try:
            return cls(
                model=str(values["model"]),
                version=int(values["version"]),
                job_id=str(values.get("job_id", values.get("job"))),
                bucket=str(values["bucket"]),
                key=str(values["key"]),
                version_id=str(values["version_id"]),
                format=str(values["format"]),
                prefix=str(values["prefix"]),
                map_prefix=str(values.get("map_prefix", f"{values['prefix']}/map")),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RequestError(
                f"not a batch job's input: {error!r} is missing or wrong", code="bad_job"
            ) from None

    @property
    def source(self) -> InputObject:
        return InputObject(self.bucket, self.key, self.version_id, None)


def _own(runtime: ModelRuntime, job: Job) -> None:
    if job.model != runtime.model_name:
        raise RequestError(
            f"this function serves model {runtime.model_name!r}, not {job.model!r}",
            code="model_not_found",
            field="model",
        )


def start_job(event: dict[str, Any], runtime: ModelRuntime) -> dict[str, Any]:
    """Check the object and resolve the alias once: the returned version is the whole job's."""
    model = runtime.model_name
    detail = mapping(event.get("event"), "detail")
    bucket = str(mapping(detail, "bucket").get("name", ""))
    obj = mapping(detail, "object")
    key = str(obj.get("key", ""))
    prefix = f"{INPUTS}/{model}/{LARGE}/"
    if bucket != runtime.data_bucket or not key.startswith(prefix) or key.endswith("/"):
        raise RequestError(
            f"s3://{bucket}/{key} is not a large input of {model} (s3://{runtime.data_bucket}/{prefix}...)",
            code="not_a_batch_input",
            field="key",
        )
    fmt = input_format(key)
    if key.lower().endswith(".gz"):
        raise UnreadableInput(
            f"{key!r}: a batch job reads plain CSV or JSON Lines (Step Functions' ItemReader); "
            f"drop gzip files under {INPUTS}/{model}/ for one invocation",
            code="unsupported_compression",
            field="key",
        )
    s3 = runtime.data_s3
    version_id = str(obj.get("version-id") or s3.head_object(Bucket=bucket, Key=key).get("VersionId") or "")
    if not version_id or version_id == "null":
        raise UnreadableInput(
            f"{key!r} has no version id: the data bucket must be versioned", code="unversioned", field="key"
        )
    served = runtime.service.current(model)
    if fmt == "csv":  # a header without the columns the model needs fails the job before any batch
        head = s3.get_object(
            Bucket=bucket, Key=key, VersionId=version_id, Range=f"bytes=0-{HEADER_BYTES - 1}"
        )
        next(iter(read_rows(head["Body"], key, features=served.task.feature_names)), None)
    source = InputObject(bucket, key, version_id, None)
    output = f"{OUTPUTS}/{model}/{LARGE}/{key.removeprefix(prefix)}.{source.tag}"
    job = Job(
        model,
        served.version,
        output.rsplit("/", 1)[-1],
        bucket,
        key,
        version_id,
        fmt,
        output,
        f"{output}/map",
    )
    logger.info("batch job started", extra={"job": asdict(job)})
    return {**asdict(job), "resolved_at": datetime.now(UTC).isoformat()}


def part_key(job: Job, first_row: int, suffix: str) -> str:
    return f"{job.prefix}/part-{first_row:012d}{suffix}"


def _rows(
    items: list[Any], job: Job, features: Any, strings: frozenset[str] = frozenset()
) -> tuple[int, list[Row | RowError]]:
    """The batch's rows in file order, and its first row's index (its name)."""
    offset = 2 if job.format == "csv" else 1  # the line of row 0: after the header, or the first
    entries: list[tuple[int, Any]] = []
    for entry in items:
        if (
            not isinstance(entry, dict)
            or isinstance(entry.get("row"), bool)
            or not isinstance(entry.get("row"), int)
        ):
            raise RequestError(
                "a batch item is not {'row': index, 'item': value}", code="bad_job", field="Items"
            )
        entries.append((entry["row"], entry.get("item")))
    entries.sort(key=lambda pair: pair[0])
    if not entries:
        raise RequestError("a batch without items", code="bad_job", field="Items")
    rows: list[Row | RowError] = [
        item_row(row + offset, value, job.format, features, strings) for row, value in entries
    ]
    return entries[0][0], rows


def score_batch(event: dict[str, Any], runtime: ModelRuntime, context: Any = None) -> dict[str, Any]:
    """One child of the Distributed Map: its rows scored by the job's version, into its own objects
    (a generator's rows stopped by the invocation's deadline, each answered with what it has)."""
    deadline = deadline_for(context, http=False)
    started = time.perf_counter()
    job = Job.of(event.get("BatchInput"))
    _own(runtime, job)
    served = runtime.service.load(job.model, job.version)
    items = event.get("Items")
    first, rows = _rows(
        items if isinstance(items, list) else [],
        job,
        served.task.feature_names,
        served.task.string_features,
    )
    s3 = runtime.data_s3
    keys = {
        "predictions": part_key(job, first, ".predictions.jsonl"),
        "errors": part_key(job, first, ".errors.jsonl"),
    }
    predictions = ObjectWriter(s3, job.bucket, keys["predictions"])
    errors = ObjectWriter(s3, job.bucket, keys["errors"])
    result = FileResult()
    try:
        for chunk in chunks(rows, runtime.settings.batch_chunk_rows):
            score_chunk(chunk, job.source, served, predictions, errors, result, deadline)
        predictions.close()
        errors.close()
    except BaseException:
        predictions.abort()
        errors.abort()
        raise
    summary = {
        "job": job.job_id,
        "first_row": first,
        "rows": result.rows,
        "scored": result.scored,
        "refused": result.failed,
        "model_version": str(served.version),
        "outputs": keys,
        "timings_ms": {
            "total": round((time.perf_counter() - started) * 1000.0, 1),
            "inference": round(result.inference_ms, 1),
        },
    }
    put_json(s3, job.bucket, part_key(job, first, ".json"), summary)  # last: the batch is done
    record_batch_file(served.name, served.version, result.scored, result.failed, result.inference_ms, files=0)
    return summary


def _summaries(runtime: ModelRuntime, job: Job) -> list[dict[str, Any]]:
    s3 = runtime.data_s3
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=job.bucket, Prefix=f"{job.prefix}/part-")
    keys = [obj["Key"] for page in pages for obj in page.get("Contents", []) if obj["Key"].endswith(".json")]

    def read(key: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(s3.get_object(Bucket=job.bucket, Key=key)["Body"].read())
        return document

    with ThreadPoolExecutor(READERS) as pool:
        return sorted(pool.map(read, keys), key=lambda s: int(s["first_row"]))


def _problems(job: Job, summaries: list[dict[str, Any]], input_rows: int) -> list[str]:
    """Everything that keeps the batches from accounting for each input row exactly once."""
    problems: list[str] = []
    expected = 0
    for summary in summaries:
        first, rows = int(summary["first_row"]), int(summary["rows"])
        if first > expected:
            problems.append(f"rows {expected}-{first - 1} were scored by no batch")
        elif first < expected:
            problems.append(f"rows {first}-{min(expected, first + rows) - 1} were scored by two batches")
        if int(summary["scored"]) + int(summary["refused"]) != rows:
            problems.append(
                f"the batch at row {first} scored {summary['scored']} + refused {summary['refused']} of {rows} rows"
            )
        if summary["model_version"] != str(job.version):
            problems.append(
                f"the batch at row {first} used version {summary['model_version']}, not {job.version}"
            )
        expected = max(expected, first + rows)
    if expected < input_rows:
        problems.append(f"rows {expected}-{input_rows - 1} were scored by no batch")
    read = sum(int(s["rows"]) for s in summaries)
    if read != input_rows:
        problems.append(f"the batches read {read} rows, the input has {input_rows}")
    return problems


def finish_job(event: dict[str, Any], runtime: ModelRuntime) -> dict[str, Any]:
    """The final step: every input row accounted for once, by the job's version, or the job fails."""
    job = Job.of(event.get("job"))
    _own(runtime, job)
    s3 = runtime.data_s3
    body = s3.get_object(Bucket=job.bucket, Key=job.key, VersionId=job.version_id)["Body"]
    input_rows = count_rows(body, job.key)
    summaries = _summaries(runtime, job)
    problems = _problems(job, summaries, input_rows)
    started_at = str(event.get("started_at") or "")
    finished = datetime.now(UTC)
    try:
        elapsed: float | None = (
            finished - datetime.fromisoformat(started_at.replace("Z", "+00:00"))
        ).total_seconds()
    except ValueError:
        elapsed = None
    report = {
        "input": {"bucket": job.bucket, "key": job.key, "version_id": job.version_id, "format": job.format},
        "model_name": job.model,
        "model_version": str(job.version),
        "job": job.job_id,
        "input_rows": input_rows,
        "rows_read": sum(int(s["rows"]) for s in summaries),
        "rows_scored": sum(int(s["scored"]) for s in summaries),
        "rows_refused": sum(int(s["refused"]) for s in summaries),
        "batches": len(summaries),
        "outputs": {"prefix": f"{job.prefix}/", "parts": f"{job.prefix}/part-<first row>.predictions.jsonl"},
        "execution": event.get("execution"),
        "map": event.get("map"),
        "timings": {
            "started_at": started_at,
            "finished_at": finished.isoformat(),
            "total_s": None if elapsed is None else round(elapsed, 3),
            "batches_ms": round(sum(float(s["timings_ms"]["total"]) for s in summaries), 1),
            "inference_ms": round(sum(float(s["timings_ms"]["inference"]) for s in summaries), 1),
        },
    }
    if problems:
        put_json(s3, job.bucket, f"{job.prefix}/_FAILED.json", {**report, "problems": problems})
        logger.error("batch job incomplete", extra={"job": job.job_id, "problems": problems})
        raise JobIncomplete(f"batch job {job.job_id}: " + "; ".join(problems[:5]))
    put_json(s3, job.bucket, f"{job.prefix}/_SUCCESS.json", report)
    logger.info("batch job finished", extra={"summary": report})
    return {"status": "scored", "success_object": f"{job.prefix}/_SUCCESS.json", **report}


def handle_job_event(event: dict[str, Any], runtime: ModelRuntime) -> dict[str, Any]:
    """``start`` or ``finish`` of a batch job, by the event's ``BatchJob``."""
    step = event.get("BatchJob")
    if step == "start":
        return start_job(event, runtime)
    if step == "finish":
        return finish_job(event, runtime)
    raise RequestError(f"unknown batch job step {step!r} (start or finish)", code="bad_job", field="BatchJob")
