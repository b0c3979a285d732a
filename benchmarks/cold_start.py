"""Cold starts in fresh interpreters, the sides rotated, and the comparison of ours with baselines.

Shared by ``benchmarks.run`` (spam_nb against scikit-learn) and ``benchmarks.keras_bench`` (the
Keras models against TensorFlow).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import ratio, rotate, summary
from training.data import PROJECT_ROOT


def one_cold_start(
    kind: str, handler_dir: Path, event: Path, env: dict[str, str], paths: list[Path]
) -> dict[str, float]:
    """Spawn a fresh interpreter, time spawn -> first response (and the part of it that the
    handler's import took), and read its peak RSS."""
    with tempfile.TemporaryDirectory() as cache:
        started = time.time()
        result = subprocess.run(
            [
                sys.executable,
                "-I",  # no PYTHON* variables, no user site
                "-S",  # no site-packages: only the folders Lambda would have
                "-B",  # /opt is read-only in Lambda: no .pyc is written, so none is reused
                str(PROJECT_ROOT / "benchmarks" / "cold_start_child.py"),
                kind,
                str(handler_dir),
                str(event),
                *map(str, paths),
            ],
            env={**env, "MODEL_CACHE_DIR": cache},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    report = next(
        (json.loads(line) for line in reversed(result.stdout.splitlines()) if '"done_at"' in line), None
    )
    if result.returncode != 0 or report is None or report["status"] != 200:
        raise RuntimeError(f"{kind} cold start failed: {result.stderr[-2000:]}")
    return {
        "seconds": report["done_at"] - started,
        "import_s": report["imported_at"] - started,
        "first_request_s": report["done_at"] - report["imported_at"],
        "peak_rss_mb": report["peak_rss_mb"],
    }


def cold_starts(
    kinds: list[str],
    handler_dir: Path,
    event: Path,
    env: dict[str, str],
    paths: dict[str, list[Path]],
    repeats: int,
) -> dict[str, list[dict[str, float]]]:
    """``repeats`` cold starts of each kind (the first is ours), rotating which one goes first."""
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}

    def side(kind: str) -> Any:
        def timed() -> float:
            run = one_cold_start(kind, handler_dir, event, env, paths[kind])
            runs[kind].append(run)
            return run["seconds"]

        return timed

    rotate([side(kind) for kind in kinds], repeats)
    return runs


def compare_cold_starts(runs: dict[str, list[dict[str, float]]], ours: str = "onnx") -> dict[str, Any]:
    """Our side's figures (spawn to response, the import's share, peak RSS), and per baseline
    its figures and the per-pair ratio ours / baseline."""

    def figures(kind: str) -> dict[str, Any]:
        return {
            "s": summary([r["seconds"] for r in runs[kind]]),
            "import_s": summary([r["import_s"] for r in runs[kind]]),
            "first_request_s": summary([r["first_request_s"] for r in runs[kind]]),
            "peak_rss_mb": summary([r["peak_rss_mb"] for r in runs[kind]]),
        }

    seconds = [r["seconds"] for r in runs[ours]]
    baselines = {
        kind: {**figures(kind), "ratio": ratio(seconds, [r["seconds"] for r in runs[kind]])}
        for kind in runs
        if kind != ours
    }
    return {"ours": figures(ours), "baselines": baselines}


def cold_start_bound(ours: dict[str, Any], baseline: dict[str, Any], target: float) -> str:
    """What bounds a cold-start ratio, measured: our time split into the handler's import and the
    first request, and the time the target allows."""
    total, imported = ours["s"]["median"], ours["import_s"]["median"]
    return (
        f"ours {total:.3f} s = interpreter + import {imported:.3f} s + first request "
        f"{ours['first_request_s']['median']:.3f} s; {target:g}x of the baseline's "
        f"{baseline['s']['median']:.3f} s is {target * baseline['s']['median']:.3f} s"
    )
