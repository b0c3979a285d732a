"""``make bench``: cold start, warm overhead, batch throughput and sizes, measured side by side.

Everything runs on this machine in one go against a local S3 (a moto server), through the real
handlers. Each figure is a median of repeated runs with min and max; each comparison is a ratio
measured A/B alternating, with one thread on both sides (what a Lambda function under 1,769 MB
has). Results: ``benchmarks/results/<date>.json``, a Markdown table that the documentation's
Benchmarks page embeds between its ``bench`` markers, and that page's charts (``benchmarks.plots``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from benchmarks import batch_bench, keras_bench, llm_bench, minilm_bench, openai_bench, plots
from benchmarks.cold_start import cold_start_bound, cold_starts, compare_cold_starts
from benchmarks.handlers import warm_handler
from benchmarks.stats import alternate, percentile, ratio, rotate, summary
from benchmarks.stats import verdict as checked
from maas.core import pipeline
from maas.core.predictor import Predictor
from ops.local import (
    create_bucket,
    environment,
    local_aws_environment,
    moto_server,
)
from ops.registry_admin import RegistryAdmin
from training.data import PROJECT_ROOT
from training.models import spam_nb
from training.options import TrainOptions

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
BUCKET = "maas-bench-models"
BASELINE_KEY = "baselines/spam_nb/model.joblib"
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "SESSION_THREADS": "1",
}
BOTO3 = "1.44.5"  # Lambda's runtime ships its own boto3; this pin matches pyproject.toml
SKLEARN = "1.9.1"
JOBLIB = "1.6.0"
POWERTOOLS = "3.37.0"  # the layer's pin (layers/runtime/requirements.txt), for the samples' handler
#: the cold-start baselines of spam_nb: the AWS samples' handler (Powertools Logger + Metrics), and
#: the same without Powertools, so the comparison is fair both ways; the first one is the target's
SKLEARN_BASELINES = {
    "sklearn_handler": "scikit-learn + Powertools",
    "sklearn_plain_handler": "scikit-learn, no Powertools",
}
TARGETS = {
    "cold_start_spam_nb": ("<=", 0.30),
    "warm_p50_overhead_ms": ("<=", 0.12),
    "batch_vs_sklearn_spam_nb": (">=", 1.0),
    "layer_mb": ("<=", 150.0),
    **keras_bench.TARGETS,  # Keras cold start <= 0.1x TensorFlow's; 400 vs 100 new tokens <= 4.4x
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pip_target(target: Path, *requirements: str) -> Path:
    """A folder holding exactly these packages, as a Lambda layer or runtime would."""
    if not (target / ".complete").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(target), *requirements],
            check=True,
            capture_output=True,
            timeout=900,
        )
        (target / ".complete").touch()
    return target


def lambda_like_paths(built: Path, cache: Path) -> dict[str, list[Path]]:
    """What each side finds on ``sys.path`` in Lambda, and nothing else (the child runs ``-I -S``).

    Both get boto3 alone, as Lambda's python3.12 runtime ships it (no awscrt). Ours gets the layer
    ``sam build`` made; the baselines a scikit-learn layer with Powertools, as the AWS samples
    deploy it (the handler without Powertools finds it there and does not import it).
    """
    boto = pip_target(cache / "lambda-runtime", f"boto3=={BOTO3}")
    sklearn_layer = pip_target(
        cache / "sklearn-powertools-layer",
        f"scikit-learn=={SKLEARN}",
        f"joblib=={JOBLIB}",
        f"aws-lambda-powertools=={POWERTOOLS}",
    )
    baseline = [PROJECT_ROOT / "benchmarks" / "baselines", sklearn_layer, boto]
    return {"onnx": [built / "RuntimeLayer" / "python", boto], **dict.fromkeys(SKLEARN_BASELINES, baseline)}


def bench_cold_start(env: dict[str, str], repeats: int, paths: dict[str, list[Path]]) -> dict[str, Any]:
    event = PROJECT_ROOT / "events" / "spam_nb" / "predict.json"
    handler_dir = PROJECT_ROOT / "functions"  # the one code folder every function shares
    runs = cold_starts(["onnx", *SKLEARN_BASELINES], handler_dir, event, env, paths, repeats)
    return {"model": "spam_nb", **compare_cold_starts(runs)}


def bench_warm_overhead(model_dir: Path, env: dict[str, str], requests: int) -> dict[str, Any]:
    """One-instance requests through the full handler against ``session.run`` on the same input,
    and (what bounds the overhead) the pipeline alone: the task's validation, pre- and
    post-processing around the same ``session.run``, without HTTP, logging or metrics.

    The handler is called directly (event parsing, validation, inference, metrics, logging), as
    Lambda calls it in a warm environment; its EMF output goes to an in-memory sink.
    """
    event = json.loads((PROJECT_ROOT / "events" / "spam_nb" / "predict_base64.json").read_text())
    text = json.loads(json.loads((PROJECT_ROOT / "events" / "spam_nb" / "predict.json").read_text())["body"])
    feeds = {"text": np.asarray(text["instances"][:1], dtype=object).reshape(-1, 1)}
    predictor = Predictor(model_dir / "model.onnx", threads=1)
    call, module = warm_handler("spam_nb", env)
    call(event)  # loads the version: the pipeline side then serves the same one
    served = module.runtime.service.current("spam_nb")
    instances = text["instances"][:1]

    def handler() -> float:
        return call(event)

    def session_run() -> float:
        started = time.perf_counter()
        predictor.run(feeds)
        return (time.perf_counter() - started) * 1000

    def pipeline_alone() -> float:
        started = time.perf_counter()
        pipeline.predict(served, instances)
        return (time.perf_counter() - started) * 1000

    for _ in range(20):  # warm all three: load, allocate, fill caches
        handler()
        session_run()
        pipeline_alone()
    through_handler, alone, through_pipeline = rotate([handler, session_run, pipeline_alone], requests)

    def p(values: list[float]) -> dict[str, float]:
        return {"p50": percentile(values, 50), "p99": percentile(values, 99)}

    handler_ms, session_ms, pipeline_ms = p(through_handler), p(alone), p(through_pipeline)
    return {
        "requests": requests,
        "handler_ms": handler_ms,
        "session_run_ms": session_ms,
        "pipeline_ms": pipeline_ms,
        "overhead_ms": {q: handler_ms[q] - session_ms[q] for q in ("p50", "p99")},
        "p50_ratio": handler_ms["p50"] / session_ms["p50"],
        "p99_ratio": handler_ms["p99"] / session_ms["p99"],
        "ratio_per_pair": ratio(through_handler, alone),
    }


def bench_batch(
    trained: spam_nb.Trained, model_dir: Path, repeats: int, rows: int = 2000, chunk: int = 256
) -> dict[str, Any]:
    """Instances per second: ``session.run`` in chunks against scikit-learn's ``predict_proba``."""
    texts = [e.text for e in trained.data.test] * (rows // max(1, len(trained.data.test)) + 1)
    texts = texts[:rows]
    predictor = Predictor(model_dir / "model.onnx", threads=1)
    array = np.asarray(texts, dtype=object).reshape(-1, 1)

    def onnx_rate() -> float:
        started = time.perf_counter()
        for start in range(0, rows, chunk):
            predictor.run({"text": array[start : start + chunk]})
        return rows / (time.perf_counter() - started)

    def sklearn_rate() -> float:
        started = time.perf_counter()
        for start in range(0, rows, chunk):
            trained.pipeline.predict_proba(texts[start : start + chunk])
        return rows / (time.perf_counter() - started)

    onnx, sklearn = alternate(onnx_rate, sklearn_rate, repeats)
    return {
        "rows": rows,
        "chunk": chunk,
        "session_run_rows_per_s": summary(onnx),
        "sklearn_predict_proba_rows_per_s": summary(sklearn),
        "ratio": ratio(onnx, sklearn),
    }


def tree_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


def sam_build(build: Path) -> Path:
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(
        [str(Path(sys.executable).parent / "sam"), "build", "--build-dir", str(build)],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return build


def bench_sizes(built: Path, model_dir: Path) -> dict[str, Any]:
    functions = {p.name: tree_mb(p) for p in built.iterdir() if p.is_dir() and p.name != "RuntimeLayer"}
    return {
        "layer_mb": tree_mb(built / "RuntimeLayer"),
        "functions_mb": functions,
        "onnx_mb": {"spam_nb": (model_dir / "model.onnx").stat().st_size / 1e6},
    }


def verdict(name: str, value: float, unit: str = "") -> str:
    op, target = TARGETS[name]
    return checked(value, op, target, unit)


def target_lines(results: dict[str, Any]) -> list[str]:
    """Each target: met, or missed by how much and what bounds it (the figures of this run)."""
    cold, warm = results["cold_start"], results["warm_overhead"]
    lines = []
    baseline = cold["baselines"]["sklearn_handler"]
    target = TARGETS["cold_start_spam_nb"][1]
    lines.append(
        f"- cold start spam_nb / {SKLEARN_BASELINES['sklearn_handler']}: {baseline['ratio']['median']:.3f}, "
        f"{verdict('cold_start_spam_nb', baseline['ratio']['median'])}; {cold_start_bound(cold['ours'], baseline, target)}"
    )
    if "keras" in results:
        lines.extend(keras_bench.target_lines(results["keras"]))
    overhead = warm["overhead_ms"]
    pipeline_over = warm["pipeline_ms"]["p50"] - warm["session_run_ms"]["p50"]
    lines.append(
        f"- warm p50 overhead over session.run, spam_nb: {overhead['p50']:.3f} ms (p99 {overhead['p99']:.3f} ms), "
        f"{verdict('warm_p50_overhead_ms', overhead['p50'], ' ms')}; of it the task's validation, pre- and "
        f"post-processing {pipeline_over:.3f} ms, HTTP routing, logging and metrics "
        f"{overhead['p50'] - pipeline_over:.3f} ms"
    )
    return lines


def markdown(results: dict[str, Any]) -> str:
    cold, warm, batch, sizes = (
        results["cold_start"],
        results["warm_overhead"],
        results["batch"],
        results["sizes"],
    )

    def spread(s: dict[str, Any], fmt: str = "{:.3f}") -> str:
        return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"

    ours = cold["ours"]
    rows = [
        "| measurement | ours (ONNX) | baseline | ratio, median (min–max) | target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, label in SKLEARN_BASELINES.items():
        baseline = cold["baselines"][kind]
        target = (
            verdict("cold_start_spam_nb", baseline["ratio"]["median"]) if kind == "sklearn_handler" else ""
        )
        rows.append(
            f"| cold start spam_nb, s (n={ours['s']['n']}) | {spread(ours['s'])} | {spread(baseline['s'])} "
            f"{label} | {spread(baseline['ratio'], '{:.2f}')} | {target} |"
        )
    powertools = cold["baselines"]["sklearn_handler"]
    rows += [
        f"| peak RSS at first response, MB | {ours['peak_rss_mb']['median']:.0f} | "
        f"{powertools['peak_rss_mb']['median']:.0f} | {ours['peak_rss_mb']['median'] / powertools['peak_rss_mb']['median']:.2f} | |",
        f"| warm one-instance p50 / p99, ms (n={warm['requests']}) | {warm['handler_ms']['p50']:.3f} / "
        f"{warm['handler_ms']['p99']:.3f} handler | {warm['session_run_ms']['p50']:.3f} / {warm['session_run_ms']['p99']:.3f} "
        f"session.run | overhead p50 +{warm['overhead_ms']['p50']:.3f} ms, p99 +{warm['overhead_ms']['p99']:.3f} ms "
        f"(p50 {warm['p50_ratio']:.2f}x) | {verdict('warm_p50_overhead_ms', warm['overhead_ms']['p50'], ' ms')} |",
        f"| batch spam_nb, rows/s ({batch['rows']} rows, chunks of {batch['chunk']}) | "
        f"{spread(batch['session_run_rows_per_s'], '{:.0f}')} session.run | "
        f"{spread(batch['sklearn_predict_proba_rows_per_s'], '{:.0f}')} predict_proba | {spread(batch['ratio'], '{:.2f}')} | "
        f"{verdict('batch_vs_sklearn_spam_nb', batch['ratio']['median'])} |",
        f"| built layer, unzipped MB | {sizes['layer_mb']:.1f} | | | {verdict('layer_mb', sizes['layer_mb'])} |",
        f"| spam_nb model.onnx, MB | {sizes['onnx_mb']['spam_nb']:.2f} | | | |",
        *(keras_bench.markdown_rows(results["keras"]) if "keras" in results else []),
    ]
    if "events" in results:  # S3 batch files and SQS batches (benchmarks/batch_bench.py)
        rows.extend(batch_bench.markdown_rows(results["events"]))
    machine = results["machine"]
    header = (
        f"Measured {results['date']} on {machine['cpus']} CPUs ({machine['platform']}, Python {machine['python']}), "
        "one thread on both sides, local S3 (moto server)."
    )
    targets = "Targets, and what bounds each one (this run's figures):\n\n" + "\n".join(target_lines(results))
    return header + "\n\n" + "\n".join(rows) + "\n\n" + targets + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cold = results["cold_start"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["ONNX handler", *(label.replace(", ", "\n") for label in SKLEARN_BASELINES.values())]
    stats = [cold["ours"]["s"], *(cold["baselines"][kind]["s"] for kind in SKLEARN_BASELINES)]
    medians = [s["median"] for s in stats]
    errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
    left.bar(names, medians, yerr=errors, capsize=6, color=["tab:blue", "tab:gray", "tab:olive"])
    left.set(title="spam_nb cold start (spawn to first response)", ylabel="seconds")
    warm = results["warm_overhead"]
    labels = ["p50", "p99"]
    x = np.arange(len(labels))
    right.bar(x - 0.2, [warm["handler_ms"][k] for k in labels], 0.4, label="full handler")
    right.bar(x + 0.2, [warm["session_run_ms"][k] for k in labels], 0.4, label="session.run alone")
    right.set_xticks(x, labels)
    right.set(title="warm one-instance request", ylabel="ms")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def embed_in_docs(table: str) -> None:
    """The Benchmarks page's table, between its markers (the charts beside it are redrawn apart)."""
    page = PROJECT_ROOT / "docs" / "benchmarks.md"
    text = page.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    page.write_text(head + f"{start}\n{table}\n{end}" + rest.split(end, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="cold starts per side (at least 15)")
    parser.add_argument("--requests", type=int, default=400, help="warm requests per side")
    args = parser.parse_args(argv)
    os.environ.update(ONE_THREAD)
    # the work folder holds the SAM build, every trained and published version and gemma's (GBs)
    work = Path(tempfile.mkdtemp(prefix="maas-bench-"))
    try:
        return run_all(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_all(args: argparse.Namespace, work: Path) -> int:
    """Every bench in one run, in ``work``; the results and charts under benchmarks/results and docs."""
    started = time.perf_counter()
    cache = PROJECT_ROOT / "build" / "bench"
    log("sam build (the layer the cold start imports, and the sizes)")
    built = sam_build(work / "sam")
    log("Lambda-like sys.path folders: boto3 alone; a scikit-learn layer for the baseline")
    paths = lambda_like_paths(built, cache)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's access log
    with moto_server() as endpoint, environment(local_aws_environment(endpoint)):
        create_bucket(BUCKET)
        log("training spam_nb (full corpus)")
        trained = spam_nb.train_model(TrainOptions(out=work / "spam_nb", quiet=True))
        registry = RegistryAdmin(BUCKET)
        published = registry.publish(work / "spam_nb")
        registry.set_alias("spam_nb", "production", published.version)
        joblib.dump(trained.pipeline, work / "model.joblib")
        registry.s3.upload_file(str(work / "model.joblib"), BUCKET, BASELINE_KEY)
        env = {
            **os.environ,
            "MODEL_BUCKET": BUCKET,
            "BASELINE_KEY": BASELINE_KEY,
            "MODEL_NAME": "spam_nb",
            "POWERTOOLS_SERVICE_NAME": "spam_nb",
            "POWERTOOLS_METRICS_NAMESPACE": "MaasBench",
        }
        log(f"cold start: {args.repeats} fresh interpreters per side, alternating")
        cold = bench_cold_start(env, args.repeats, paths)
        log(f"warm overhead: {args.requests} one-instance requests per side, alternating")
        warm = bench_warm_overhead(
            work / "spam_nb", {"MODEL_BUCKET": BUCKET, "MODEL_CACHE_DIR": str(work / "cache")}, args.requests
        )
        log("batch throughput: session.run against predict_proba")
        batch = bench_batch(trained, work / "spam_nb", repeats=max(5, args.repeats))
        events = batch_bench.run(trained, work / "spam_nb", repeats=max(5, args.repeats))
        log("Keras families: cold start against TensorFlow, generation, warm overhead, sizes")
        keras = keras_bench.run_keras_benchmarks(
            work, registry, env, paths["onnx"], args.repeats, args.requests
        )
        log("minilm: cold start and throughput against sentence-transformers on PyTorch, download rate")
        create_bucket(minilm_bench.BUCKET)
        (work / "minilm").mkdir()
        minilm = minilm_bench.run(
            work / "minilm",
            RegistryAdmin(minilm_bench.BUCKET),
            {**env, "MODEL_BUCKET": minilm_bench.BUCKET},
            max(3, args.repeats // 2),
        )
        log("gemma: decode, prefill, first token, RSS, size, perplexity against llama.cpp and PyTorch")
        create_bucket(llm_bench.BUCKET)
        (work / "llm").mkdir()
        llm = llm_bench.run(
            work / "llm", RegistryAdmin(llm_bench.BUCKET), {**env, "MODEL_BUCKET": llm_bench.BUCKET}, 3
        )
        log("gemma's OpenAI API through maas serve against llama.cpp's server, streamed and not")
        create_bucket(openai_bench.BUCKET)
        (work / "openai").mkdir()
        served_openai = openai_bench.run(work / "openai", RegistryAdmin(openai_bench.BUCKET), env, 5)
    sizes = bench_sizes(built, work / "spam_nb")
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    results = {
        "date": date,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "cold_start": cold,
        "warm_overhead": warm,
        "batch": batch,
        "events": events,
        "sizes": sizes,
        "keras": keras,
        "minilm": minilm,
        "elapsed_s": time.perf_counter() - started,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{date}.json").write_text(json.dumps(results, indent=2) + "\n")
    table = (
        markdown(results)
        + "\n"
        + minilm_bench.markdown(minilm)
        + "\n"
        + llm_bench.write(llm)
        + "\n"
        + openai_bench.write(served_openai)
    )
    (RESULTS / "latest.md").write_text(table)
    plot_name = f"{date}.png"
    plot(results, RESULTS / plot_name)
    embed_in_docs(table)
    stored = plots.latest_results()
    plots.draw(stored)  # every family's chart on the Benchmarks page
    plots.embed_headline(stored)  # the README's headline table
    print(table)
    log(f"done in {results['elapsed_s']:.0f} s: {RESULTS / (date + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
