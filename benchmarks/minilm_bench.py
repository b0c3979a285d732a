"""minilm against sentence-transformers on PyTorch, side by side, one thread on both sides.

- Cold start to the first embedding: a fresh interpreter per run, spawn to first response,
  through our real handler (the version fetched from the local S3, fp32 and int8), against a
  handler that does what a user would do without us (``baselines/st_handler.py``: the model
  folder from the same S3, ``SentenceTransformer`` on PyTorch). The three alternate in turn.
- Warm throughput at batch 1 and batch 32 (``minilm_throughput.py``), alternating too.
- The download rate our handler logged for the weights file (``"downloaded"``, MB/s).

``python -m benchmarks.minilm_bench`` runs it alone; ``make bench`` runs it with the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import ratio, summary
from ops.local import create_bucket, environment, local_aws_environment, moto_server
from ops.registry_admin import RegistryAdmin
from training.data import PROJECT_ROOT
from training.models import minilm
from training.options import TrainOptions
from training.progress import Progress
from training.transformers.environment import export_python

TARGETS = {
    "minilm_cold_start_int8_vs_pytorch": ("<=", 0.25),
    "minilm_cold_start_fp32_vs_pytorch": ("<=", 0.25),
    "minilm_int8_batch32_vs_pytorch": (">=", 2.0),
}
BUCKET = "maas-bench-minilm"
PREFIX = "baselines/minilm"
BENCH = PROJECT_ROOT / "benchmarks"
EVENT = PROJECT_ROOT / "events" / "minilm" / "embed.json"
SIDES = ("int8", "fp32", "pytorch")


def prepare(work: Path, registry: RegistryAdmin) -> dict[str, Path]:
    """Both variants from one export, published (fp32 = 1, int8 = 2); the PyTorch folder uploaded."""
    progress = Progress("bench minilm")
    exported = minilm.export(work / "export", TrainOptions(out=work, limit=100), progress)
    folders = {"fp32": work / "minilm_fp32", "int8": work / "minilm_int8"}
    minilm.write_variant(exported, folders["fp32"], None, progress)
    minilm.write_variant(exported, folders["int8"], "int8", progress)
    for variant in ("fp32", "int8"):
        registry.publish(folders[variant])
    registry.set_alias("minilm", "production", 1)
    source = Path(exported.summary["model_dir"])
    for path in sorted(source.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            registry.s3.upload_file(str(path), BUCKET, f"{PREFIX}/{path.relative_to(source)}")
    folders["pytorch"] = source
    for variant in ("fp32", "int8"):
        parity = json.loads((folders[variant] / "manifest.json").read_text())["parity"]
        progress(
            f"{variant}: min cosine {parity['min_cosine']:.5f}, paraphrase nearer {parity['paraphrase_nearer']}"
        )
    (work / "texts.json").write_text(json.dumps(exported.texts[:32]))
    return folders


def cold_once(side: str, env: dict[str, str], cache: Path) -> dict[str, Any]:
    if side == "pytorch":
        command = [
            str(export_python()),
            str(BENCH / "cold_start_child.py"),
            "st_handler",
            str(BENCH / "baselines"),
            str(EVENT),
        ]
        child_env = {**env, "BASELINE_PREFIX": PREFIX}
    else:
        command = [
            sys.executable,
            str(BENCH / "cold_start_child.py"),
            "onnx",
            str(PROJECT_ROOT / "functions"),
            str(EVENT),
        ]
        command.append(str(PROJECT_ROOT / "layers" / "runtime"))
        child_env = {
            **env,
            "MODEL_NAME": "minilm",
            "MODEL_VERSION": "2" if side == "int8" else "1",
            "MODEL_CACHE_DIR": tempfile.mkdtemp(dir=cache),
            "POWERTOOLS_SERVICE_NAME": "minilm",
        }
    spawned = time.time()
    result = subprocess.run(command, capture_output=True, text=True, env=child_env, check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines or lines[-1].get("status") != 200:
        raise RuntimeError(f"{side} cold start failed: {result.stderr[-2000:]}")
    downloads = [line for line in lines if line.get("message") == "downloaded"]
    biggest = max(downloads, key=lambda d: d["bytes"]) if downloads else None
    return {
        "seconds": lines[-1]["done_at"] - spawned,
        "peak_rss_mb": lines[-1]["peak_rss_mb"],
        "download_mb_per_s": biggest["mb_per_s"] if biggest else None,
        "download_mb": biggest["bytes"] / 1e6 if biggest else None,
    }


def throughput_once(side: str, folder: Path, texts: Path, env: dict[str, str]) -> dict[str, float]:
    python = str(export_python()) if side == "pytorch" else sys.executable
    kind = "st" if side == "pytorch" else "onnx"
    result = subprocess.run(
        [python, str(BENCH / "minilm_throughput.py"), kind, str(folder), str(texts)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{side} throughput failed: {result.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def run(work: Path, registry: RegistryAdmin, env: dict[str, str], repeats: int) -> dict[str, Any]:
    folders = prepare(work, registry)
    cache = work / "cache"
    cache.mkdir()
    cold: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    warm: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    for index in range(repeats):
        order = SIDES[index % 3 :] + SIDES[: index % 3]  # each side goes first in turn
        for side in order:
            cold[side].append(cold_once(side, env, cache))
        for side in order:
            warm[side].append(throughput_once(side, folders[side], work / "texts.json", env))
    seconds = {side: [r["seconds"] for r in cold[side]] for side in SIDES}
    batch = {side: {k: [r[k] for r in warm[side]] for k in ("batch1_ms", "batch32_ms")} for side in SIDES}
    for side in ("int8", "fp32"):
        batch[side]["batch32_one_padded_run_ms"] = [r["batch32_one_padded_run_ms"] for r in warm[side]]
    rates = [
        r["download_mb_per_s"] for side in ("fp32", "int8") for r in cold[side] if r["download_mb_per_s"]
    ]
    results = {
        "cold_start_s": {side: summary(seconds[side]) for side in SIDES},
        "peak_rss_mb": {side: summary([r["peak_rss_mb"] for r in cold[side]]) for side in SIDES},
        "throughput_ms": {side: {k: summary(v) for k, v in batch[side].items()} for side in SIDES},
        "download_mb_per_s": summary(rates),
        "ratios": {
            "minilm_cold_start_int8_vs_pytorch": ratio(seconds["int8"], seconds["pytorch"]),
            "minilm_cold_start_fp32_vs_pytorch": ratio(seconds["fp32"], seconds["pytorch"]),
            # throughput ratio: PyTorch's time a batch over ours
            "minilm_int8_batch32_vs_pytorch": ratio(
                batch["pytorch"]["batch32_ms"], batch["int8"]["batch32_ms"]
            ),
            "minilm_fp32_batch32_vs_pytorch": ratio(
                batch["pytorch"]["batch32_ms"], batch["fp32"]["batch32_ms"]
            ),
            "minilm_int8_batch32_one_padded_run_vs_pytorch": ratio(
                batch["pytorch"]["batch32_ms"], batch["int8"]["batch32_one_padded_run_ms"]
            ),
            "minilm_int8_batch1_vs_pytorch": ratio(batch["pytorch"]["batch1_ms"], batch["int8"]["batch1_ms"]),
            "minilm_fp32_batch1_vs_pytorch": ratio(batch["pytorch"]["batch1_ms"], batch["fp32"]["batch1_ms"]),
        },
    }
    return results


def markdown(results: dict[str, Any]) -> str:
    cold, warm, ratios = results["cold_start_s"], results["throughput_ms"], results["ratios"]
    rows = [
        "| minilm (one thread) | int8 (ours) | fp32 (ours) | sentence-transformers on PyTorch |",
        "| --- | --- | --- | --- |",
        "| cold start to first embedding, s (median) | "
        + " | ".join(f"{cold[s]['median']:.2f}" for s in SIDES)
        + " |",
        "| peak RSS, MB | " + " | ".join(f"{results['peak_rss_mb'][s]['median']:.0f}" for s in SIDES) + " |",
        "| batch 1, ms | " + " | ".join(f"{warm[s]['batch1_ms']['median']:.1f}" for s in SIDES) + " |",
        "| batch 32, ms | " + " | ".join(f"{warm[s]['batch32_ms']['median']:.1f}" for s in SIDES) + " |",
        "| batch 32 in one padded run (no length groups), ms | "
        + " | ".join(f"{warm[s]['batch32_one_padded_run_ms']['median']:.1f}" for s in ("int8", "fp32"))
        + " | |",
    ]
    rows.append("")
    for name, figure in ratios.items():
        target = TARGETS.get(name)
        goal = f" (goal {target[0]} {target[1]})" if target else ""
        rows.append(
            f"- {name}: {figure['median']:.2f} (min {figure['min']:.2f}, max {figure['max']:.2f}){goal}"
        )
    rate = results["download_mb_per_s"]
    rows.append(
        f"- download rate from the local S3 (ranged GETs): {rate['median']:.0f} MB/s (min {rate['min']:.0f})"
    )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SESSION_THREADS": "1"})
    work = Path(tempfile.mkdtemp(prefix="maas-bench-minilm-"))
    with moto_server() as endpoint, environment(local_aws_environment(endpoint)):
        create_bucket(BUCKET)
        env = {**os.environ, "MODEL_BUCKET": BUCKET, "POWERTOOLS_METRICS_NAMESPACE": "MaasBench"}
        results = run(work, RegistryAdmin(BUCKET), env, args.repeats)
    out = PROJECT_ROOT / "benchmarks" / "results" / "minilm-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (PROJECT_ROOT / "benchmarks" / "results" / "minilm-latest.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
