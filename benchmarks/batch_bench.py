"""Event-driven paths against ``session.run``: S3 batch files and SQS batches, batch memory, and
batch jobs (``maas batch run``, the Distributed Map stand-in) at 1, 2 and 4 batches in parallel.

Rows per second through the real handler (an S3 event for a file of held-out texts, read from
and written to a local S3; an SQS event of ten requests) against ``session.run`` alone on the
same rows in the same chunks, A/B alternating, one thread on both sides. Peak memory: one file
of 10,000 and one of 100,000 rows, each scored by a fresh interpreter, its own ``VmHWM``.

``make bench`` runs this as part of ``benchmarks.run``; ``python -m benchmarks.batch_bench``
runs it on its own. Either way S3 and SQS are a moto server in a separate process.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import boto3
import numpy as np

from benchmarks.batch_child import score_in_child, write_rows
from benchmarks.stats import alternate, ratio, summary, verdict
from maas.core.predictor import Predictor
from ops.event_sources import s3_put_event, sqs_event
from ops.local import (
    LambdaContext,
    create_bucket,
    environment,
    load_function_module,
    local_aws_environment,
    moto_server_process,
)
from ops.registry_admin import RegistryAdmin
from ops.template import function_for_model
from training.models import spam_nb
from training.options import TrainOptions

DATA_BUCKET = "maas-bench-data"
MODELS_BUCKET = "maas-bench-batch-models"
TARGETS = {"s3_batch_vs_session_run": (">=", 0.8), "memory_100k_vs_10k": ("<=", 1.5)}


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _handler(environ: dict[str, str]) -> Callable[[dict[str, Any]], Any]:
    """The spam_nb function's real handler, warm, with its logs and metric records discarded."""
    spec = function_for_model("spam_nb")
    module = load_function_module(spec)
    module.runtime.reset(environ=environ)
    context = LambdaContext(function_name=spec.logical_id, memory_limit_in_mb=spec.memory_mb, timeout_s=900)

    def call(event: dict[str, Any]) -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            return module.lambda_handler(event, context)

    return call


def _session_run_rate(predictor: Predictor, texts: Sequence[str], chunk: int) -> Callable[[], float]:
    array = np.asarray(list(texts), dtype=object).reshape(-1, 1)

    def rate() -> float:
        started = time.perf_counter()
        for start in range(0, len(array), chunk):
            predictor.run({"text": array[start : start + chunk]})
        return len(array) / (time.perf_counter() - started)

    return rate


def bench_s3(
    texts: Sequence[str], model_dir: Path, environ: dict[str, str], repeats: int, chunk: int
) -> dict[str, Any]:
    """One file through the S3 path (read, validate, score, write) against session.run alone."""
    path = write_rows(Path(tempfile.mkdtemp()) / "bench.jsonl", len(texts), texts)
    key = "inputs/spam_nb/bench/bench.jsonl"
    boto3.client("s3").upload_file(str(path), DATA_BUCKET, key)
    event = s3_put_event("spam_nb", DATA_BUCKET, key)
    handler = _handler({**environ, "BATCH_CHUNK_ROWS": str(chunk)})
    handler(event)  # warm: model loaded, connections open

    def s3_rate() -> float:
        started = time.perf_counter()
        outcome = handler(event)["files"][0]
        assert outcome["scored"] == len(texts), outcome
        return len(texts) / (time.perf_counter() - started)

    predictor = Predictor(model_dir / "model.onnx", threads=1)
    s3, run = alternate(s3_rate, _session_run_rate(predictor, texts, chunk), repeats)
    return {
        "rows": len(texts),
        "chunk": chunk,
        "s3_rows_per_s": summary(s3),
        "session_run_rows_per_s": summary(run),
        "ratio": ratio(s3, run),
    }


def bench_sqs(
    texts: Sequence[str], model_dir: Path, environ: dict[str, str], repeats: int, per_message: int = 25
) -> dict[str, Any]:
    """SQS events of ten requests each (validate, one run per batch, ten result objects)."""
    batch = 10 * per_message
    rows = len(texts) - len(texts) % batch
    events = []
    for start in range(0, rows, batch):
        messages = [
            {
                "MessageId": f"bench-{start + i}",
                "ReceiptHandle": f"bench-{start + i}",
                "Body": json.dumps(
                    {
                        "request_id": f"bench-{start + i}",
                        "instances": list(texts[start + i : start + i + per_message]),
                    }
                ),
            }
            for i in range(0, batch, per_message)
        ]
        events.append(sqs_event("spam_nb", messages, "arn:aws:sqs:us-east-1:123456789012:bench"))
    handler = _handler(environ)
    handler(events[0])

    def sqs_rate() -> float:
        started = time.perf_counter()
        for event in events:
            assert handler(event) == {"batchItemFailures": []}
        return rows / (time.perf_counter() - started)

    predictor = Predictor(model_dir / "model.onnx", threads=1)
    sqs, run = alternate(sqs_rate, _session_run_rate(predictor, texts[:rows], batch), repeats)
    return {
        "rows": rows,
        "messages_per_event": 10,
        "instances_per_message": per_message,
        "sqs_rows_per_s": summary(sqs),
        "session_run_rows_per_s": summary(run),
        "ratio": ratio(sqs, run),
    }


def bench_jobs(
    texts: Sequence[str], environ: dict[str, str], repeats: int, parallel: Sequence[int] = (1, 2, 4)
) -> dict[str, Any]:
    """One file as a batch job (``maas batch run``: the template's state machine, real handlers in
    threads) at each parallelism, against the same file through the one-invocation S3 path."""
    from ops.batch_run import run_job

    path = write_rows(Path(tempfile.mkdtemp()) / "jobs.jsonl", len(texts), texts)
    large, small = "inputs/spam_nb/large/bench.jsonl", "inputs/spam_nb/bench/jobs.jsonl"
    for key in (large, small):
        boto3.client("s3").upload_file(str(path), DATA_BUCKET, key)
    event = s3_put_event("spam_nb", DATA_BUCKET, small)
    handler = _handler(environ)
    handler(event)  # warm, as the job's environments are after their first batch
    rates: dict[str, list[float]] = {"s3_path": [], **{str(n): [] for n in parallel}, "child": []}
    batches = 0
    for _ in range(repeats):
        started = time.perf_counter()
        assert handler(event)["files"][0]["scored"] == len(texts)
        rates["s3_path"].append(len(texts) / (time.perf_counter() - started))
        for n in parallel:
            with contextlib.redirect_stdout(io.StringIO()):
                job = run_job("spam_nb", DATA_BUCKET, large, parallel=n, overrides=environ)
            assert job.output["rows_scored"] == len(texts), job.output
            rates[str(n)].append(len(texts) / job.seconds)
            if n == 1:  # the children's own handler time: what a child costs on AWS
                rates["child"].append(len(texts) / (job.output["timings"]["batches_ms"] / 1000.0))
            batches = job.batches
    return {
        "rows": len(texts),
        "batches": batches,
        "rows_per_s": {name: summary(values) for name, values in rates.items()},
        "note": "each job includes its start and final steps and its environments' model loads",
    }


def bench_memory(texts: Sequence[str], environ: dict[str, str], sizes: Sequence[int]) -> dict[str, Any]:
    """Peak RSS of a fresh interpreter scoring files of ``sizes`` rows through the S3 path."""
    work = Path(tempfile.mkdtemp())
    reports = {}
    for rows in sizes:
        path = write_rows(work / f"rows-{rows}.jsonl", rows, texts)
        key = f"inputs/spam_nb/bench/rows-{rows}.jsonl"
        boto3.client("s3").upload_file(str(path), DATA_BUCKET, key)
        reports[str(rows)] = score_in_child("spam_nb", DATA_BUCKET, key, environ)
        path.unlink()
    first, last = reports[str(sizes[0])], reports[str(sizes[-1])]
    return {"runs": reports, "growth": last["peak_rss_mb"] / first["peak_rss_mb"]}


def run(trained: spam_nb.Trained, model_dir: Path, repeats: int = 5, rows: int = 20_000) -> dict[str, Any]:
    """All three, against a moto server of their own with ``model_dir`` published to it."""
    with moto_server_process() as endpoint, environment(local_aws_environment(endpoint)):
        create_bucket(MODELS_BUCKET)
        create_bucket(DATA_BUCKET)
        registry = RegistryAdmin(MODELS_BUCKET)
        registry.set_alias("spam_nb", "production", registry.publish(model_dir).version)
        environ = {
            "MODEL_BUCKET": MODELS_BUCKET,
            "DATA_BUCKET": DATA_BUCKET,
            "MODEL_CACHE_DIR": tempfile.mkdtemp(),
        }
        held_out = [e.text for e in trained.data.test]
        texts = (held_out * (rows // len(held_out) + 1))[:rows]
        _log(f"S3 batch path: {rows} rows per file against session.run, alternating")
        s3 = bench_s3(texts, model_dir, environ, repeats, chunk=256)
        _log("SQS path: batches of 10 requests against session.run, alternating")
        sqs = bench_sqs(texts[:4000], model_dir, environ, repeats)
        _log("batch memory: 10,000 and 100,000 rows, each in a fresh interpreter")
        short = [" ".join(t.split())[:400] for t in held_out[:500]]
        memory = bench_memory(short, environ, (10_000, 100_000))
        _log("batch jobs: maas batch run at 1, 2 and 4 batches in parallel against the S3 path")
        jobs = bench_jobs(texts * 2, environ, max(3, repeats // 2))
    return {
        "s3": s3,
        "sqs": sqs,
        "memory": memory,
        "jobs": jobs,
        "s3_server": "moto server in a separate process",
    }


def _verdict(name: str, value: float) -> str:
    """The one verdict format of the bench: a miss says by how much."""
    op, target = TARGETS[name]
    return verdict(value, op, target)


def markdown_rows(results: dict[str, Any]) -> list[str]:
    """Rows for the benchmark table (same columns as ``benchmarks.run.markdown``)."""

    def spread(s: dict[str, Any], fmt: str) -> str:
        return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"

    s3, sqs, memory = results["s3"], results["sqs"], results["memory"]
    small, large = (memory["runs"][k]["peak_rss_mb"] for k in ("10000", "100000"))
    return [
        f"| S3 batch file spam_nb, rows/s ({s3['rows']} rows, chunks of {s3['chunk']}) | "
        f"{spread(s3['s3_rows_per_s'], '{:.0f}')} S3 path | {spread(s3['session_run_rows_per_s'], '{:.0f}')} "
        f"session.run | {spread(s3['ratio'], '{:.2f}')} | {_verdict('s3_batch_vs_session_run', s3['ratio']['median'])} |",
        f"| SQS batches spam_nb, rows/s (10 requests × {sqs['instances_per_message']}) | "
        f"{spread(sqs['sqs_rows_per_s'], '{:.0f}')} SQS path | {spread(sqs['session_run_rows_per_s'], '{:.0f}')} "
        f"session.run | {spread(sqs['ratio'], '{:.2f}')} | |",
        f"| S3 batch peak RSS, MB (10,000 / 100,000 rows) | {small:.1f} / {large:.1f} | | "
        f"{memory['growth']:.3f} | {_verdict('memory_100k_vs_10k', memory['growth'])} |",
        *_job_rows(results.get("jobs"), spread),
    ]


def _job_rows(jobs: dict[str, Any] | None, spread: Callable[[dict[str, Any], str], str]) -> list[str]:
    if not jobs:
        return []
    rates = jobs["rows_per_s"]
    one = rates["1"]["median"]
    counts = [n for n in rates if n not in {"s3_path", "child"}]
    parallel = ", ".join(f"{n}: {spread(rates[n], '{:.0f}')}" for n in counts)
    scaling = " / ".join(f"{rates[n]['median'] / one:.2f}" for n in counts)
    return [
        f"| batch job spam_nb (maas batch run, {jobs['rows']} rows, {jobs['batches']} batches), rows/s "
        f"at 1, 2, 4 parallel | {parallel} | {spread(rates['s3_path'], '{:.0f}')} S3 path (one invocation) | "
        f"{scaling} (vs 1 parallel) | |",
        f"| batch job spam_nb, one child's handler, rows/s (the per-child rate of the cost page's AWS "
        f"arithmetic) | {spread(rates['child'], '{:.0f}')} | | | |",
    ]


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="maas-batch-bench-"))
    with environment({"OMP_NUM_THREADS": "1"}):
        _log("training spam_nb (full corpus)")
        trained = spam_nb.train_model(TrainOptions(out=work / "spam_nb", quiet=True))
        results = run(trained, work / "spam_nb")
    print(json.dumps(results, indent=2))
    print("\n".join(markdown_rows(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
