"""The one export -> parity check -> write path every trainer goes through.

A trainer hands over an ONNX graph, what it knows about it, and a parity function that compares
the ONNX answers with the source framework's on held-out data. Nothing is written unless parity
holds; what is written is a folder ``maas publish`` can upload as a version.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime

from maas.core.errors import ParityError
from maas.core.predictor import Predictor
from maas.core.registry import MANIFEST_NAME, MODEL_FILE, sha256_file
from training.data import PROJECT_ROOT
from training.progress import Progress

PROBABILITY_TOLERANCE = 1e-4


@dataclass(frozen=True, slots=True)
class ParityReport:
    """ONNX against the source model: discrete disagreements (labels, or greedy tokens for a
    generator) must be zero, and the largest difference of ``measure`` within ``tolerance``."""

    rows: int
    label_disagreements: int
    max_abs_diff: float
    tolerance: float = PROBABILITY_TOLERANCE
    measure: str = "probability"
    compared: str = "labels"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.label_disagreements == 0 and self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        figures = {"max_abs_probability_diff": self.max_abs_diff} if self.measure == "probability" else {}
        return {
            "rows": self.rows,
            "compared": self.compared,
            "label_disagreements": self.label_disagreements,
            "measure": self.measure,
            "max_abs_diff": self.max_abs_diff,
            **figures,
            "tolerance": self.tolerance,
            "passed": self.passed,
            **self.details,
        }


def compare_classifier(
    onnx_labels: np.ndarray, onnx_probabilities: np.ndarray, labels: np.ndarray, probabilities: np.ndarray
) -> ParityReport:
    return ParityReport(
        rows=len(labels),
        label_disagreements=int(
            np.sum(np.asarray(onnx_labels).astype(str) != np.asarray(labels).astype(str))
        ),
        max_abs_diff=float(np.max(np.abs(np.asarray(onnx_probabilities, dtype=np.float64) - probabilities))),
    )


@dataclass
class Candidate:
    """A trained model, exported, waiting for the parity gate."""

    name: str
    task: str
    onnx_bytes: bytes
    labels: list[str]
    io: dict[str, Any]
    metrics: dict[str, Any]
    framework: dict[str, Any]
    provenance: dict[str, Any]
    request_schema: dict[str, Any]
    opsets: dict[str, int]
    artifacts: dict[str, bytes] = field(default_factory=dict)


def code_revision() -> str:
    """The git commit the model was trained from, marked ``-dirty`` when the tree had changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def write_version(
    candidate: Candidate,
    out_dir: Path,
    parity: Callable[[Predictor], ParityReport],
    progress: Progress,
) -> dict[str, Any]:
    """Check parity on the exported graph and, only if it holds, write the version folder."""
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (staging / MODEL_FILE).write_bytes(candidate.onnx_bytes)
        for filename, content in candidate.artifacts.items():
            (staging / filename).write_bytes(content)
        predictor = Predictor(staging / MODEL_FILE)
        progress("parity check: ONNX against the source model on the held-out split")
        report = parity(predictor)
        progress(
            f"parity: {report.label_disagreements} of {report.rows} {report.compared} differ, "
            f"max |Δ{report.measure}| {report.max_abs_diff:.2e} (tolerance {report.tolerance:.0e})"
        )
        if not report.passed:
            raise ParityError(
                f"refusing to write {candidate.name}: ONNX disagrees with the source model on "
                f"{report.label_disagreements} of {report.rows} {report.compared}, max {report.measure} "
                f"difference {report.max_abs_diff:.3e} (tolerance {report.tolerance:.0e})"
            )
        manifest = {
            "name": candidate.name,
            "task": candidate.task,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "framework": candidate.framework,
            "onnx": {"opsets": candidate.opsets, "onnxruntime": onnxruntime.__version__},
            "model": {"file": MODEL_FILE, **_file_entry(staging / MODEL_FILE)},
            "artifacts": {name: _file_entry(staging / name) for name in candidate.artifacts},
            "signature": {
                "inputs": [spec.to_dict() for spec in predictor.inputs],
                "outputs": [spec.to_dict() for spec in predictor.outputs],
            },
            "io": candidate.io,
            "labels": candidate.labels,
            "request_schema": candidate.request_schema,
            "metrics": candidate.metrics,
            "parity": report.to_dict(),
            "provenance": {**candidate.provenance, "code_revision": code_revision()},
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        progress(f"wrote {out_dir} ({manifest['model']['size'] / 1e6:.1f} MB model)")
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
