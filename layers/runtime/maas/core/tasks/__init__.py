"""Which task type serves a version: the manifest's ``task`` names it.

Each family lives in its own module, imported on first use: a digits function never imports the
text generator's code, and the other way round. This module imports neither numpy nor
onnxruntime, so the registry function can tell a servable task from an unknown one cheaply.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maas.core.errors import ConfigurationError

if TYPE_CHECKING:
    from maas.core.predictor import Predictor
    from maas.core.tasks.base import ServedTask

# Task name -> "module:type".
TASKS: dict[str, str] = {
    "text-classification": "maas.core.tasks.text:TextClassifier",
    "sequence-classification": "maas.core.tasks.sequences:SequenceClassifier",
    "image-classification": "maas.core.tasks.images:ImageClassifier",
    "text-generation": "maas.core.tasks.generation:TextGenerator",
    "causal-lm": "maas.core.tasks.causal_lm:CausalLM",
    "tabular-classification": "maas.core.tasks.tabular:TabularClassifier",
    "regression": "maas.core.tasks.tabular:Regressor",
    "tensors": "maas.core.tasks.tensors:RawTensors",
    "text-embedding": "maas.core.tasks.transformer:TextEmbedder",
    "transformer-classification": "maas.core.tasks.transformer:TransformerClassifier",
}


def unservable_task(manifest: dict[str, Any]) -> str | None:
    """Why this runtime cannot serve the manifest's task, or None when it can."""
    kind = str(manifest.get("task", ""))
    if kind in TASKS:
        return None
    return f"this runtime cannot serve task {kind!r}; it serves {sorted(TASKS)}"


def task_for(predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> ServedTask:
    reason = unservable_task(manifest)
    if reason is not None:
        raise ConfigurationError(reason)
    module, _, name = TASKS[str(manifest["task"])].partition(":")
    adapter: type[ServedTask] = getattr(importlib.import_module(module), name)
    return adapter(predictor, manifest, directory)
