"""Task adapters: turn request instances into model feeds and model outputs into predictions.

The manifest's ``task`` picks the adapter, so one runtime serves every model family. Adapters
never re-implement preprocessing that belongs in the graph: a text classifier's graph takes raw
strings and tokenises them itself.
"""

from __future__ import annotations

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

    def __init__(self, predictor: Predictor, manifest: dict[str, Any]) -> None:
        self.predictor = predictor
        self.manifest = manifest
        self.labels: list[str] = [str(label) for label in manifest.get("labels", [])]

    def request_inputs(self) -> list[TensorSpec]:
        """What a tensor client (the Open Inference Protocol) sends: the graph's own inputs, unless
        preprocessing outside the graph (a tokeniser) makes the request something else (text)."""
        return list(self.predictor.inputs)

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

    def __init__(self, predictor: Predictor, manifest: dict[str, Any]) -> None:
        super().__init__(predictor, manifest)
        io = manifest.get("io", {})
        self.input_spec = predictor.inputs[0]
        self.label_output = str(io.get("label_output", "label"))
        self.probability_output = str(io.get("probability_output", "probabilities"))

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
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
        return {self.input_spec.name: cast_batch(instances, self.input_spec, field)}

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        outputs = self.predictor.run(feeds, [self.label_output, self.probability_output])
        labels = outputs[self.label_output]
        probabilities = outputs[self.probability_output]
        return [
            {
                "label": str(label),
                "probabilities": {name: round(float(p), 6) for name, p in zip(self.labels, row, strict=True)},
            }
            for label, row in zip(labels, probabilities, strict=True)
        ]


TASKS: dict[str, type[Task]] = {TextClassifier.name: TextClassifier}


def task_for(predictor: Predictor, manifest: dict[str, Any]) -> Task:
    kind = str(manifest.get("task", ""))
    adapter = TASKS.get(kind)
    if adapter is None:
        raise ConfigurationError(f"this runtime cannot serve task {kind!r}; it knows {sorted(TASKS)}")
    return adapter(predictor, manifest)
