"""The Keras families: cold start against a TensorFlow SavedModel handler, generation cost per
token, warm handler overhead over ``session.run``, and ONNX sizes.

``make bench`` runs it as part of ``benchmarks.run``; ``python -m benchmarks.keras_bench`` runs it
alone (it builds the layer, starts a moto server and trains small versions itself).

- Cold start (digits_cnn, spam_lstm): a fresh interpreter per run, spawn to first response,
  through the real handler with the model fetched from the local S3, against the AWS-samples way
  (a SavedModel zip from the same S3, loaded with TensorFlow, Powertools Logger and Metrics) and
  the same handler without Powertools. The sides rotate, one thread on each, median/min/max and
  peak RSS. The TensorFlow side finds TensorFlow in this virtual
  environment's site-packages (a TensorFlow layer would not fit Lambda's 250 MB limit anyway).
- Generation (moby_gen): tokens per second, and time(400 new tokens) / time(100 new tokens);
  with a one-step graph that ratio stays near 4 (the prompt is a fixed cost), a model that
  re-reads its whole text at every step would approach 16.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import sysconfig
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cold_start import cold_start_bound, cold_starts, compare_cold_starts
from benchmarks.handlers import warm_handler
from benchmarks.stats import alternate, percentile, ratio, summary
from benchmarks.stats import verdict as checked
from maas.core.predictor import Predictor
from ops.local import (
    create_bucket,
    environment,
    local_aws_environment,
    moto_server,
)
from ops.registry_admin import RegistryAdmin
from training.data import PROJECT_ROOT
from training.options import TrainOptions

COLD_START_MODELS = ("digits_cnn", "spam_lstm")
TRAINING: dict[str, dict[str, Any]] = {
    "digits_cnn": {"epochs": 10},
    "spam_lstm": {"epochs": 2},
    "spam_mlp": {"epochs": 3},
    "moby_gen": {"epochs": 1, "limit": 200_000},
}
TARGETS = {"cold_start_keras": ("<=", 0.1), "generation_400_vs_100": ("<=", 4.4)}
#: the TensorFlow baselines: the samples' handler (Powertools Logger + Metrics; the target's), and
#: the same without Powertools
TF_BASELINES = {
    "keras_handler": "TensorFlow SavedModel + Powertools",
    "keras_plain_handler": "TensorFlow SavedModel, no Powertools",
}


def log(message: str) -> None:
    print(f"[bench keras] {message}", file=sys.stderr, flush=True)


def train_and_publish(work: Path, registry: RegistryAdmin) -> dict[str, Any]:
    """Train each Keras model (small epochs), publish it and point ``production`` at it."""
    import importlib

    trained: dict[str, Any] = {}
    for model, options in TRAINING.items():
        log(f"training {model} {options}")
        module = importlib.import_module(f"training.models.{model}")
        trained[model] = module.train_model(replace(TrainOptions(out=work / model, quiet=True), **options))
        version = registry.publish(work / model).version
        registry.set_alias(model, "production", version)
    return trained


def publish_saved_models(trained: dict[str, Any], work: Path, registry: RegistryAdmin) -> dict[str, str]:
    """The baseline's artifacts: each model as a TensorFlow SavedModel zip in the same bucket."""
    keys: dict[str, str] = {}
    for model in COLD_START_MODELS:
        folder = work / f"{model}-savedmodel"
        trained[model].model.export(str(folder), verbose=False)
        archive = work / f"{model}-savedmodel.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in folder.rglob("*"):
                bundle.write(path, path.relative_to(folder))
        keys[model] = f"baselines/{model}/saved_model.zip"
        registry.s3.upload_file(str(archive), registry.bucket, keys[model])
    registry.s3.upload_file(
        str(trained["spam_lstm"].directory / "tokenizer.json"),
        registry.bucket,
        "baselines/spam_lstm/tokenizer.json",
    )
    return keys


def bench_cold_starts(
    env: dict[str, str], repeats: int, onnx_paths: list[Path], keys: dict[str, str]
) -> dict[str, Any]:
    site_packages = Path(sysconfig.get_paths()["purelib"])
    tf_paths = [PROJECT_ROOT / "benchmarks" / "baselines", site_packages]
    paths = {"onnx": onnx_paths, **dict.fromkeys(TF_BASELINES, tf_paths)}
    results: dict[str, Any] = {}
    for model in COLD_START_MODELS:
        event = PROJECT_ROOT / "events" / model / "predict.json"
        handler_dir = PROJECT_ROOT / "functions"  # the one code folder every function shares
        model_env = {
            **env,
            "MODEL_NAME": model,
            "POWERTOOLS_SERVICE_NAME": model,
            "BASELINE_KEY": keys[model],
            **(
                {"BASELINE_TOKENIZER_KEY": "baselines/spam_lstm/tokenizer.json"}
                if model == "spam_lstm"
                else {}
            ),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "TF_NUM_INTRAOP_THREADS": "1",
            "TF_NUM_INTEROP_THREADS": "1",
        }
        log(f"cold start {model}: {repeats} fresh interpreters per side, rotating")
        runs = cold_starts(["onnx", *TF_BASELINES], handler_dir, event, model_env, paths, repeats)
        results[model] = compare_cold_starts(runs)
    return results


def _event(model: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((PROJECT_ROOT / "events" / model / name).read_text())
    if body is not None:
        event = {**event, "body": json.dumps(body), "isBase64Encoded": False}
    return event


def bench_generation(env: dict[str, str], repeats: int) -> dict[str, Any]:
    call, _ = warm_handler("moby_gen", env)
    base = {"prompt": "Call me Ishmael", "num_return_sequences": 1, "temperature": 0}
    short = _event("moby_gen", "generate.json", {**base, "max_new_tokens": 100})
    long = _event("moby_gen", "generate.json", {**base, "max_new_tokens": 400})
    for _ in range(2):
        call(short)
        call(long)
    t400, t100 = alternate(lambda: call(long), lambda: call(short), repeats)
    return {
        "prompt_chars": len(base["prompt"]),
        "ms_100_tokens": summary(t100),
        "ms_400_tokens": summary(t400),
        "tokens_per_s_400": summary([400 / (t / 1000) for t in t400]),
        "ratio_400_vs_100": ratio(t400, t100),
    }


def bench_warm_overhead(trained: dict[str, Any], env: dict[str, str], requests: int) -> dict[str, Any]:
    """Per model: the full handler on a one-instance request against ``session.run`` on the same
    input (for the generator, the same number of one-step runs), alternating."""
    results: dict[str, Any] = {}
    for model in ("digits_cnn", "spam_lstm", "spam_mlp", "moby_gen"):
        call, _ = warm_handler(model, env)
        predictor = Predictor(trained[model].directory / "model.onnx", threads=1)
        manifest = trained[model].manifest
        if model == "moby_gen":
            body = {"prompt": "Call me Ishmael", "max_new_tokens": 20, "temperature": 0}
            event = _event(model, "generate.json", body)
            units = manifest["provenance"]["parameters"]["gru_units"]
            steps = len(body["prompt"]) + body["max_new_tokens"] - 1
            feeds = {"token": np.array([3], np.int32), "state": np.zeros((1, units), np.float32)}

            def session(
                feeds: dict[str, np.ndarray] = feeds, steps: int = steps, p: Predictor = predictor
            ) -> float:
                started = time.perf_counter()
                for _ in range(steps):
                    p.run(feeds)
                return (time.perf_counter() - started) * 1000
        else:
            sample = _event(model, "predict.json")
            instance = json.loads(sample["body"])["instances"][:1]
            event = _event(model, "predict.json", {"instances": instance})
            from maas.core.tasks import task_for

            feeds = task_for(predictor, manifest, trained[model].directory).prepare(instance)

            def session(feeds: dict[str, np.ndarray] = feeds, p: Predictor = predictor) -> float:
                started = time.perf_counter()
                p.run(feeds)
                return (time.perf_counter() - started) * 1000

        for _ in range(20):
            call(event)
            session()
        handler, alone = alternate(lambda call=call, event=event: call(event), session, requests)
        results[model] = {
            "requests": requests,
            "handler_ms_p50": percentile(handler, 50),
            "session_run_ms_p50": percentile(alone, 50),
            "overhead_ms_p50": percentile(handler, 50) - percentile(alone, 50),
            "handler_ms_p99": percentile(handler, 99),
            "session_run_ms_p99": percentile(alone, 99),
            "overhead_ms_p99": percentile(handler, 99) - percentile(alone, 99),
        }
    return results


def run_keras_benchmarks(
    work: Path,
    registry: RegistryAdmin,
    env: dict[str, str],
    onnx_paths: list[Path],
    repeats: int,
    requests: int,
) -> dict[str, Any]:
    """Everything above, inside a running moto server (``env`` points the handlers at it)."""
    trained = train_and_publish(work, registry)
    keys = publish_saved_models(trained, work, registry)
    cache = {**env, "MODEL_CACHE_DIR": str(work / "cache")}
    cold = bench_cold_starts(env, repeats, onnx_paths, keys)
    log("generation: 400 against 100 new tokens, alternating")
    generation = bench_generation(cache, max(5, repeats))
    log(f"warm overhead: {requests} one-instance requests per side and model")
    warm = bench_warm_overhead(trained, cache, requests)
    sizes = {model: t.manifest["model"]["size"] / 1e6 for model, t in trained.items()}
    return {"cold_start": cold, "generation": generation, "warm_overhead": warm, "onnx_mb": sizes}


def verdict(name: str, value: float) -> str:
    op, target = TARGETS[name]
    return checked(value, op, target)


def target_lines(keras: dict[str, Any]) -> list[str]:
    """The Keras cold-start targets: met, or missed by how much and what bounds it."""
    target = TARGETS["cold_start_keras"][1]
    lines = []
    for model, cold in keras["cold_start"].items():
        baseline = cold["baselines"]["keras_handler"]
        lines.append(
            f"- cold start {model} / {TF_BASELINES['keras_handler']}: {baseline['ratio']['median']:.3f}, "
            f"{verdict('cold_start_keras', baseline['ratio']['median'])}; "
            f"{cold_start_bound(cold['ours'], baseline, target)}"
        )
    return lines


def markdown_rows(keras: dict[str, Any]) -> list[str]:
    """Rows for the Benchmarks page's table (same columns as ``benchmarks.run.markdown``)."""

    def spread(s: dict[str, Any], fmt: str = "{:.3f}") -> str:
        return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"

    rows = []
    for model, cold in keras["cold_start"].items():
        ours = cold["ours"]
        for kind, label in TF_BASELINES.items():
            baseline = cold["baselines"][kind]
            median = baseline["ratio"]["median"]
            target = verdict("cold_start_keras", median) if kind == "keras_handler" else ""
            rows.append(
                f"| cold start {model}, s (n={ours['s']['n']}) | {spread(ours['s'])} | "
                f"{spread(baseline['s'])} {label} | {spread(baseline['ratio'], '{:.2f}')} | {target} |"
            )
        tf_rss = cold["baselines"]["keras_handler"]["peak_rss_mb"]["median"]
        rows.append(
            f"| {model} peak RSS at first response, MB | {ours['peak_rss_mb']['median']:.0f} | "
            f"{tf_rss:.0f} | {ours['peak_rss_mb']['median'] / tf_rss:.2f} | |"
        )
    generation = keras["generation"]
    rows.append(
        f"| moby_gen greedy, ms for 100 / 400 new tokens (n={generation['ms_400_tokens']['n']}) | "
        f"{spread(generation['ms_100_tokens'], '{:.1f}')} / {spread(generation['ms_400_tokens'], '{:.1f}')} | "
        f"{generation['tokens_per_s_400']['median']:.0f} tokens/s | 400 vs 100: {spread(generation['ratio_400_vs_100'], '{:.2f}')} | "
        f"{verdict('generation_400_vs_100', generation['ratio_400_vs_100']['median'])} |"
    )
    for model, warm in keras["warm_overhead"].items():
        rows.append(
            f"| {model} warm one-instance p50 / p99, ms (n={warm['requests']}) | {warm['handler_ms_p50']:.3f} / "
            f"{warm['handler_ms_p99']:.3f} handler | {warm['session_run_ms_p50']:.3f} / {warm['session_run_ms_p99']:.3f} "
            f"session.run | overhead p50 +{warm['overhead_ms_p50']:.3f} ms, p99 +{warm['overhead_ms_p99']:.3f} ms | |"
        )
    sizes = ", ".join(f"{m} {mb:.2f}" for m, mb in keras["onnx_mb"].items())
    rows.append(f"| Keras model.onnx, MB | {sizes} | | | |")
    return rows


def main(argv: list[str] | None = None) -> int:
    from benchmarks import run

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15, help="cold starts per side and model")
    parser.add_argument("--requests", type=int, default=200, help="warm requests per side and model")
    args = parser.parse_args(argv)
    os.environ.update(run.ONE_THREAD)
    work = Path(tempfile.mkdtemp(prefix="maas-bench-keras-"))
    log("sam build (the layer the cold start imports)")
    built = run.sam_build(work / "sam")
    paths = run.lambda_like_paths(built, PROJECT_ROOT / "build" / "bench")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with moto_server() as endpoint, environment(local_aws_environment(endpoint)):
        create_bucket(run.BUCKET)
        registry = RegistryAdmin(run.BUCKET)
        env = {**os.environ, "MODEL_BUCKET": run.BUCKET, "POWERTOOLS_METRICS_NAMESPACE": "MaasBench"}
        results = run_keras_benchmarks(work, registry, env, paths["onnx"], args.repeats, args.requests)
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    (run.RESULTS / "keras-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join([*markdown_rows(results), "", *target_lines(results)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
