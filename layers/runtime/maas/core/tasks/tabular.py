"""Tabular models: a row of numeric features in; a label with probabilities, or a value, out.

An instance is a list of numbers in the manifest's feature order, or an object keyed by feature
name (``manifest["features"]``); a missing, extra or non-numeric feature is a 400 naming it. The
graph's one input is a float matrix (batch, features), fed float32: onnxruntime refuses float64
for a float32 model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import ConfigurationError, RequestError
from maas.core.predictor import Predictor
from maas.core.tasks.base import Classifier, Feeds


class TabularTask(Classifier):
    """What tabular classifiers and regressors share: turning instances into a feature matrix."""

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        if len(predictor.inputs) != 1 or len(predictor.inputs[0].shape) != 2:
            raise ConfigurationError(
                f"task {self.name!r} takes a graph with one (batch, features) input, got "
                f"{[spec.to_dict() for spec in predictor.inputs]}"
            )
        self.input_spec = predictor.inputs[0]
        width = self.input_spec.shape[1]
        names = [str(n) for n in manifest.get("features") or []]
        if width is None and not names:
            raise ConfigurationError(
                f"task {self.name!r}: the graph's feature count is free and no features are named"
            )
        self.features: list[str] = names or [f"f{i}" for i in range(int(width or 0))]
        if width is not None and len(self.features) != width:
            raise ConfigurationError(
                f"the manifest names {len(self.features)} features, the graph takes {width}"
            )
        self.positions = {name: index for index, name in enumerate(self.features)}
        self.dtype = np.dtype(self.input_spec.dtype if self.input_spec.dtype != "object" else "float32")

    @property
    def feature_names(self) -> list[str] | None:
        return self.features

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        rows = [self._row(value, f"{field}[{index}]") for index, value in enumerate(instances)]
        matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.features))
        return {self.input_spec.name: matrix.astype(self.dtype)}

    def _row(self, value: Any, field: str) -> list[float]:
        if isinstance(value, dict):
            missing = [name for name in self.features if name not in value]
            if missing:
                raise RequestError(
                    f"{field} has no feature {missing[0]!r}; the model takes {self.features}",
                    code="missing_feature",
                    field=f"{field}.{missing[0]}",
                )
            extra = [str(name) for name in value if name not in self.positions]
            if extra:
                raise RequestError(
                    f"{field} has feature {extra[0]!r}, which the model does not take; it takes {self.features}",
                    code="unknown_feature",
                    field=f"{field}.{extra[0]}",
                )
            return [self._number(value[name], f"{field}.{name}", name) for name in self.features]
        if isinstance(value, list | tuple):
            if len(value) != len(self.features):
                raise RequestError(
                    f"{field} has {len(value)} values, the model takes {len(self.features)} features "
                    f"{self.features}",
                    code="invalid_shape",
                    field=field,
                )
            return [
                self._number(item, f"{field}[{i}]", name)
                for i, (item, name) in enumerate(zip(value, self.features, strict=True))
            ]
        raise RequestError(
            f"{field} must be a list of {len(self.features)} numbers or an object keyed by feature name, "
            f"got {type(value).__name__}",
            code="invalid_type",
            field=field,
        )

    @staticmethod
    def _number(value: Any, field: str, feature: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(
                f"feature {feature!r} ({field}) must be a number, got {value!r}",
                code="invalid_type",
                field=field,
            )
        number = float(value)
        if not math.isfinite(number):
            raise RequestError(
                f"feature {feature!r} ({field}) must be a finite number, got {value!r}",
                code="invalid_value",
                field=field,
            )
        return number


class TabularClassifier(TabularTask):
    """Features in; a label and one probability per label out (the graph's label, else the argmax)."""

    name = "tabular-classification"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.label_output: str | None = self.io.get("label_output")
        self.probability_output = str(self.io.get("probability_output", "probabilities"))

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        names = [self.probability_output, *([self.label_output] if self.label_output else [])]
        outputs = self.predictor.run(feeds, names)
        labels = outputs[self.label_output] if self.label_output else None
        probabilities = outputs[self.probability_output]
        if probabilities.ndim == 2 and probabilities.shape[1] == 1 and len(self.labels) == 2:
            probabilities = np.hstack([1.0 - probabilities, probabilities])  # one sigmoid column
        return self.classified(probabilities, labels)


class Regressor(TabularTask):
    """Features in; ``{"value": x}`` per row, or ``{"values": [...]}`` for a multi-output model."""

    name = "regression"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.value_output = str(self.io.get("value_output", predictor.outputs[0].name))

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        values = self.predictor.run(feeds, [self.value_output])[self.value_output]
        matrix = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
        if matrix.shape[1] == 1:
            return [{"value": float(row[0])} for row in matrix]
        return [{"values": [float(v) for v in row]} for row in matrix]
