"""The one export -> parity check -> write path every trainer goes through.

A trainer hands over an ONNX graph, what it knows about it, and a parity function that compares
the ONNX answers with the source framework's on held-out data. Nothing is written unless parity
holds; what is written is a folder ``maas publish`` can upload as a version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime

from maas.core.errors import ParityError
from maas.core.manifest import Manifest
from maas.core.predictor import Predictor
from maas.core.registry import MANIFEST_NAME, MODEL_FILE, sha256_file
from training.data import PROJECT_ROOT
from training.progress import Progress

if TYPE_CHECKING:
    from training.quantize import Quantisation

PROBABILITY_TOLERANCE = 1e-4
#: a large graph's weights, as ONNX external data next to ``model.onnx`` (memory-mapped on load)
WEIGHTS_FILE = "model.onnx.data"


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
    #: further requirements of the gate that were not met, each said in words (a retrieval overlap)
    unmet: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.label_disagreements == 0 and self.max_abs_diff <= self.tolerance and not self.unmet

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
            **({"unmet": list(self.unmet)} if self.unmet else {}),
        }


MAX_NAMED_ROWS = 20


def compare_classifier(
    onnx_labels: np.ndarray, onnx_probabilities: np.ndarray, labels: np.ndarray, probabilities: np.ndarray
) -> ParityReport:
    """Labels must agree on every row and probabilities within ``PROBABILITY_TOLERANCE``; the
    report names the first rows (0-based, in sample order) that do not."""
    wrong_label = np.asarray(onnx_labels).astype(str).ravel() != np.asarray(labels).astype(str).ravel()
    diff = np.abs(
        np.asarray(onnx_probabilities, dtype=np.float64) - np.asarray(probabilities, dtype=np.float64)
    )
    per_row = diff.reshape(len(diff), -1).max(axis=1) if diff.size else np.zeros(len(wrong_label))
    differing = np.flatnonzero(wrong_label | (per_row > PROBABILITY_TOLERANCE))
    return ParityReport(
        rows=len(labels),
        label_disagreements=int(np.sum(wrong_label)),
        max_abs_diff=float(per_row.max()) if per_row.size else 0.0,
        details={"differing_rows": [int(i) for i in differing[:MAX_NAMED_ROWS]]} if differing.size else {},
    )


# A regressor's value may be large: each ONNX value must lie within
# VALUE_ATOL + VALUE_RTOL * |source value| of the source model's (numpy.isclose's rule).
VALUE_RTOL = 1e-4
VALUE_ATOL = 1e-5


def compare_values(onnx_values: np.ndarray, values: np.ndarray) -> ParityReport:
    """Regressor parity: every value within 1e-4 relative + 1e-5 absolute of the source's.

    The measure is the largest |Δ| / (atol + rtol·|source|), so the tolerance is 1; the report
    also carries the largest absolute and relative differences and names the rows outside."""
    got = np.asarray(onnx_values, dtype=np.float64).reshape(len(values), -1)
    want = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    diff = np.abs(got - want)
    scaled = (diff / (VALUE_ATOL + VALUE_RTOL * np.abs(want))).max(axis=1) if diff.size else np.zeros(0)
    outside = np.flatnonzero(scaled > 1.0)
    relative = diff / np.maximum(np.abs(want), np.finfo(np.float64).tiny)
    details: dict[str, Any] = {
        "rtol": VALUE_RTOL,
        "atol": VALUE_ATOL,
        "max_abs_value_diff": float(diff.max()) if diff.size else 0.0,
        "max_rel_value_diff": float(relative.max()) if relative.size else 0.0,
    }
    if outside.size:
        details["differing_rows"] = [int(i) for i in outside[:MAX_NAMED_ROWS]]
    return ParityReport(
        rows=len(want),
        label_disagreements=int(outside.size),
        max_abs_diff=float(scaled.max()) if scaled.size else 0.0,
        tolerance=1.0,
        measure="value/(atol+rtol·|value|)",
        compared="values",
        details=details,
    )


#: a generator's logits, graph against source, at every position of prompt + continuation
LOGIT_TOLERANCE = 1e-4


def compare_generations(
    texts: Sequence[str],
    expected: Sequence[str],
    logits: Sequence[np.ndarray] = (),
    expected_logits: Sequence[np.ndarray] = (),
) -> ParityReport:
    """Generator parity: each prompt's greedy continuation equal to the source's token by token,
    and, where the source's logits are given, every logit within ``LOGIT_TOLERANCE``; the report
    names the prompts (0-based) that differ."""
    wrong = [
        sum(a != b for a, b in zip(got, want, strict=False)) + abs(len(got) - len(want))
        for got, want in zip(texts, expected, strict=True)
    ]
    worst = [
        float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64)), initial=0.0))
        for got, want in zip(logits, expected_logits, strict=True)
    ] or [0.0] * len(wrong)
    differing = [i for i, (n, w) in enumerate(zip(wrong, worst, strict=True)) if n or w > LOGIT_TOLERANCE]
    return ParityReport(
        rows=sum(len(want) for want in expected),
        label_disagreements=sum(wrong),
        max_abs_diff=max(worst, default=0.0),
        tolerance=LOGIT_TOLERANCE,
        measure="logit",
        compared="greedy tokens",
        details={
            "prompts": len(expected),
            "logit_positions": sum(len(want) for want in expected_logits),
            **({"differing_rows": differing[:MAX_NAMED_ROWS]} if differing else {}),
        },
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
    #: feature names of a tabular model, in the graph's column order
    features: list[str] | None = None
    #: a table's features with their type and missingness (the signature's ``features``)
    columns: list[dict[str, Any]] | None = None
    #: a few request instances, stored with what this graph answered for them: an alias never
    #: moves to a version that cannot load and answer them again (``maas models promote``)
    sample: list[Any] | None = None
    #: artifacts that hold the graph's weights (ONNX external data), dropped when quantised
    external_data: tuple[str, ...] = ()


SAMPLE_ROWS = 3


def answered_sample(predictor: Predictor, manifest: dict[str, Any], instances: list[Any]) -> dict[str, Any]:
    """The sample instances and the served answers of this graph (the runtime's own task type)."""
    from maas.core.tasks import task_for
    from maas.core.tasks.base import Classifier

    task = task_for(predictor, manifest)
    if not isinstance(task, Classifier):
        return {"instances": instances}
    return {"instances": instances, "predictions": task.predict(task.prepare(list(instances)))}


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


def externalised(model: Any) -> tuple[bytes, bytes]:
    """A ModelProto as the graph without its weights, and the weights as one external-data file
    (``WEIGHTS_FILE``): onnxruntime memory-maps it, where inline weights are copied on load."""
    import onnx

    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / MODEL_FILE
        onnx.save_model(
            model,
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=WEIGHTS_FILE,
        )
        return target.read_bytes(), (Path(folder) / WEIGHTS_FILE).read_bytes()


def _file_entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def _refuse(name: str, report: ParityReport, what: str = "ONNX disagrees with the source model") -> None:
    if report.passed:
        return
    differing = report.details.get("differing_rows")
    raise ParityError(
        f"refusing to write {name}: {what} on "
        f"{report.label_disagreements} of {report.rows} {report.compared}, max {report.measure} "
        f"difference {report.max_abs_diff:.3e} (tolerance {report.tolerance:.0e})"
        + (f"; rows that differ: {differing}" if differing else "")
        + (f"; {'; '.join(report.unmet)}" if report.unmet else "")
    )


def _said(progress: Progress, label: str, report: ParityReport) -> None:
    progress(
        f"{label}: {report.label_disagreements} of {report.rows} {report.compared} differ, "
        f"max |Δ{report.measure}| {report.max_abs_diff:.2e} (tolerance {report.tolerance:.0e})"
        + (f"; {'; '.join(report.unmet)}" if report.unmet else "")
    )


def _quantise(
    candidate: Candidate, staging: Path, quantisation: Quantisation, fp32: ParityReport, progress: Progress
) -> tuple[Predictor, ParityReport, dict[str, Any]]:
    """Replace the staged fp32 graph by its quantised form, which must pass its own gate."""
    model = staging / MODEL_FILE
    fp32_bytes = model.stat().st_size + sum((staging / n).stat().st_size for n in candidate.external_data)
    progress(f"quantising to {quantisation.scheme}")
    quantised = staging / f".{quantisation.scheme}.onnx"
    progress(f"quantisation gate: {quantisation.scheme} against the source model on the held-out split")
    result = quantisation.apply(model, quantised)
    description, report = result.description, result.report
    for name in candidate.external_data:  # the quantised graph holds its weights inline
        (staging / name).unlink()
    os.replace(quantised, model)
    predictor = Predictor(model)
    _said(progress, f"{quantisation.scheme} gate", report)
    _refuse(f"{candidate.name} ({quantisation.scheme})", report, "the quantised graph misses its gate")
    return (
        predictor,
        report,
        {
            **description,
            "fp32_parity": fp32.to_dict(),
            "fp32_bytes": fp32_bytes,
            "bytes": model.stat().st_size,
        },
    )


def write_version(
    candidate: Candidate,
    out_dir: Path,
    parity: Callable[[Predictor], ParityReport],
    progress: Progress,
    quantisation: Quantisation | None = None,
) -> dict[str, Any]:
    """Check parity on the exported graph and, only if it holds, write the version folder.

    With ``quantisation``, the fp32 graph that passed is quantised and the version is the
    quantised graph, which must pass the quantisation's own gate; ``parity`` in the manifest is
    then that gate's result, and ``quantisation`` says how, with the fp32 figures beside it.
    """
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
        _said(progress, "parity", report)
        _refuse(candidate.name, report)
        quantised: dict[str, Any] | None = None
        if quantisation is not None:
            predictor, report, quantised = _quantise(candidate, staging, quantisation, report, progress)
        artifacts = [name for name in candidate.artifacts if (staging / name).is_file()]
        manifest = {
            "name": candidate.name,
            "task": candidate.task,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "framework": candidate.framework,
            "onnx": {"opsets": candidate.opsets, "onnxruntime": onnxruntime.__version__},
            "model": {"file": MODEL_FILE, **_file_entry(staging / MODEL_FILE)},
            "artifacts": {name: _file_entry(staging / name) for name in artifacts},
            "signature": {
                "inputs": [spec.to_dict() for spec in predictor.inputs],
                "outputs": [spec.to_dict() for spec in predictor.outputs],
                **({"features": candidate.columns} if candidate.columns is not None else {}),
            },
            "io": candidate.io,
            "labels": candidate.labels,
            **({"features": candidate.features} if candidate.features is not None else {}),
            "request_schema": candidate.request_schema,
            "metrics": candidate.metrics,
            "parity": report.to_dict(),
            **({"quantisation": quantised} if quantised is not None else {}),
            "provenance": {**candidate.provenance, "code_revision": code_revision()},
        }
        if candidate.sample:
            manifest["sample"] = answered_sample(predictor, manifest, candidate.sample[:SAMPLE_ROWS])
        # the one schema every reader relies on (maas.core.manifest); a writer bug fails here
        manifest = Manifest.from_dict(manifest).to_dict()
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
        total = manifest["model"]["size"] + sum(
            manifest["artifacts"][n]["size"] for n in candidate.external_data if n in manifest["artifacts"]
        )
        progress(f"wrote {out_dir} ({total / 1e6:.1f} MB model)")
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)
