"""Task adapters: turn request instances into model feeds and model outputs into predictions.

The manifest's ``task`` picks the adapter, so one runtime serves every model family. Adapters
never re-implement preprocessing that belongs in the graph: a text classifier's graph takes raw
strings and tokenises them itself; where a step cannot live in the graph (a sequence model's
tokeniser), it is a versioned artifact named in the manifest and applied by the layer's one
implementation of it. Each family's adapter lives in its own module, imported only when a
function's manifest asks for it, so a function imports only what its model needs.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from maas.errors import ConfigurationError, RequestError
from maas.predictor import Predictor
from maas.signature import TensorSpec, cast_batch

Feeds = dict[str, np.ndarray]


def check_instances(instances: Any, max_batch: int, field: str = "instances") -> list[Any]:
    """The batch container itself: a non-empty list no longer than ``max_batch``."""
    if instances is None:
        raise RequestError(f"{field} is required", code="missing_field", field=field)
    if not isinstance(instances, list):
        raise RequestError(
            f"{field} must be a list, got {type(instances).__name__}", code="invalid_type", field=field
        )
    if not instances:
        raise RequestError(f"{field} must not be empty", code="empty_batch", field=field)
    if len(instances) > max_batch:
        raise RequestError(
            f"{field} holds {len(instances)} items, at most {max_batch} are allowed per request",
            code="batch_too_large",
            field=field,
        )
    return instances


class Task:
    """Base adapter: ``prepare`` validates and builds feeds, ``predict`` runs and formats."""

    name: ClassVar[str] = ""

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        self.predictor = predictor
        self.manifest = manifest
        self.io: dict[str, Any] = dict(manifest.get("io", {}))
        self.directory = directory if directory is not None else predictor.model_path.parent
        self.labels: list[str] = [str(label) for label in manifest.get("labels", [])]

    def artifact(self, key: str) -> Path:
        """The verified file the manifest's ``io[key]`` names, next to ``model.onnx``."""
        filename = self.io.get(key)
        if not filename:
            raise ConfigurationError(f"the manifest of task {self.name!r} names no {key!r} artifact")
        return self.directory / str(filename)

    def classified(self, probabilities: np.ndarray, labels: Any = None) -> list[dict[str, Any]]:
        """Predictions with one probability per label; the label is the graph's, else the argmax."""
        if labels is None:
            labels = [self.labels[int(i)] for i in np.argmax(probabilities, axis=1)]
        return [
            {
                "label": str(label),
                "probabilities": {name: round(float(p), 6) for name, p in zip(self.labels, row, strict=True)},
            }
            for label, row in zip(labels, probabilities, strict=True)
        ]

    def request_inputs(self) -> list[TensorSpec]:
        """What a tensor client (the Open Inference Protocol) sends: the graph's own inputs, unless
        preprocessing outside the graph (a tokeniser) makes the request something else (text)."""
        return list(self.predictor.inputs)

    def request_outputs(self) -> list[TensorSpec]:
        """What a tensor client gets back: the graph's own outputs, unless the task answers otherwise."""
        return list(self.predictor.outputs)

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        """Default: a one-input graph takes the request as it is, checked against its signature."""
        if len(self.predictor.inputs) != 1:
            raise ConfigurationError(f"task {self.name!r} must say how to feed a graph of several inputs")
        spec = self.predictor.inputs[0]
        return {spec.name: cast_batch(instances, spec, field)}

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        raise NotImplementedError


class TextClassifier(Task):
    """Raw strings in; a label and one probability per label out."""

    name = "text-classification"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.input_spec = predictor.inputs[0]
        # A graph without a label output (a Keras softmax network) is labelled by argmax here.
        self.label_output: str | None = self.io.get("label_output")
        self.probability_output = str(self.io.get("probability_output", "probabilities"))

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        check_texts(instances, field)
        return {self.input_spec.name: cast_batch(instances, self.input_spec, field)}

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        names = [self.probability_output, *([self.label_output] if self.label_output else [])]
        outputs = self.predictor.run(feeds, names)
        labels = outputs[self.label_output] if self.label_output else None
        return self.classified(outputs[self.probability_output], labels)


def check_texts(instances: list[Any], field: str = "instances") -> list[str]:
    """Every instance a non-empty string, or a 400 naming the first one that is not."""
    for index, text in enumerate(instances):
        where = f"{field}[{index}]"
        if not isinstance(text, str):
            raise RequestError(
                f"{where} must be a string, got {type(text).__name__}", code="invalid_type", field=where
            )
        if not text.strip():
            raise RequestError(
                f"{where} is empty: there is no text to classify", code="empty_text", field=where
            )
    return instances


# Task name -> "module:adapter". Imported on first use: a digits function never imports the
# text generator's code, and the other way round.
TASKS: dict[str, str] = {
    TextClassifier.name: "maas.tasks:TextClassifier",
    "sequence-classification": "maas.sequences:SequenceClassifier",
    "image-classification": "maas.images:ImageClassifier",
    "text-generation": "maas.generation:TextGenerator",
}


def task_for(predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> Task:
    kind = str(manifest.get("task", ""))
    target = TASKS.get(kind)
    if target is None:
        raise ConfigurationError(f"this runtime cannot serve task {kind!r}; it knows {sorted(TASKS)}")
    module, _, name = target.partition(":")
    adapter: type[Task] = getattr(importlib.import_module(module), name)
    return adapter(predictor, manifest, directory)
