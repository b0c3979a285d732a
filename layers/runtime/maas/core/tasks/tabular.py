"""Tabular models: a row of features in; a label with probabilities, or a value, out.

An instance is a list in the manifest's feature order, or an object keyed by feature name
(``manifest["features"]``); a missing, extra or mistyped feature is a 400 naming it. The
signature's ``features`` (``signature.features``) say each feature's type (``number`` or
``string``), whether it may be missing (``null``) and, where the model refuses others, the
categories it takes; a version without them takes numbers only, none missing.

The graph takes either one float matrix (batch, features), fed float32 with NaN for a gap, or one
(batch, 1) input per feature named after it (a ``ColumnTransformer`` pipeline): strings as string
tensors, a gap in a string feature as the empty string (the importer checked the source model
answers it as it answers a missing value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import ConfigurationError, RequestError
from maas.core.predictor import Predictor
from maas.core.signature import is_unicode
from maas.core.tasks.base import Classifier, Feeds

NUMBER, STRING = "number", "string"


@dataclass(frozen=True, slots=True)
class Feature:
    """One feature of a table, as the signature describes it."""

    name: str
    kind: str = NUMBER
    missing: bool = False
    categories: frozenset[str] | None = None

    @classmethod
    def from_dict(cls, doc: Any) -> Feature:
        if not isinstance(doc, dict) or doc.get("type") not in (NUMBER, STRING):
            raise ConfigurationError(f"signature.features holds {doc!r}: each needs a name and a type")
        categories = doc.get("categories")
        return cls(
            name=str(doc["name"]),
            kind=str(doc["type"]),
            missing=bool(doc.get("missing", False)),
            categories=None if categories is None else frozenset(str(c) for c in categories),
        )


class TabularTask(Classifier):
    """What tabular classifiers and regressors share: turning instances into the graph's feeds."""

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        names = [str(n) for n in manifest.get("features") or []]
        described = (manifest.get("signature") or {}).get("features")
        specs = [Feature.from_dict(d) for d in described] if described else [Feature(n) for n in names]
        inputs = {spec.name: spec for spec in predictor.inputs}
        self.by_column = (
            len(specs) > 0
            and set(inputs) == {f.name for f in specs}
            and (len(inputs) > 1 or specs[0].kind == STRING)
        )
        if not self.by_column and (len(predictor.inputs) != 1 or len(predictor.inputs[0].shape) != 2):
            raise ConfigurationError(
                f"task {self.name!r} takes a graph with one (batch, features) input or one input per "
                f"feature, got {[spec.to_dict() for spec in predictor.inputs]}"
            )
        self.input_spec = predictor.inputs[0]
        width = None if self.by_column else self.input_spec.shape[1]
        if width is None and not specs:
            raise ConfigurationError(
                f"task {self.name!r}: the graph's feature count is free and no features are named"
            )
        self.columns: list[Feature] = specs or [Feature(f"f{i}") for i in range(int(width or 0))]
        self.features: list[str] = [f.name for f in self.columns]
        if width is not None and len(self.features) != width:
            raise ConfigurationError(
                f"the manifest names {len(self.features)} features, the graph takes {width}"
            )
        self.positions = {name: index for index, name in enumerate(self.features)}
        self.inputs = inputs
        self.dtype = np.dtype(self.input_spec.dtype if self.input_spec.dtype != "object" else "float32")

    @property
    def feature_names(self) -> list[str] | None:
        return self.features

    @property
    def string_features(self) -> frozenset[str]:
        return frozenset(f.name for f in self.columns if f.kind == STRING)

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        rows = [self._row(value, f"{field}[{index}]") for index, value in enumerate(instances)]
        if not self.by_column:
            matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(self.features))
            return {self.input_spec.name: matrix.astype(self.dtype)}
        feeds: Feeds = {}
        for position, feature in enumerate(self.columns):
            values = [row[position] for row in rows]
            spec = self.inputs[feature.name]
            if spec.dtype == "object":
                feeds[feature.name] = np.asarray(values, dtype=object).reshape(len(rows), 1)
            else:
                feeds[feature.name] = np.asarray(values, dtype=np.dtype(spec.dtype)).reshape(len(rows), 1)
        return feeds

    def _row(self, value: Any, field: str) -> list[Any]:
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
            return [self._value(value[f.name], f"{field}.{f.name}", f) for f in self.columns]
        if isinstance(value, list | tuple):
            if len(value) != len(self.features):
                raise RequestError(
                    f"{field} has {len(value)} values, the model takes {len(self.features)} features "
                    f"{self.features}",
                    code="invalid_shape",
                    field=field,
                )
            return [
                self._value(item, f"{field}[{i}]", feature)
                for i, (item, feature) in enumerate(zip(value, self.columns, strict=True))
            ]
        raise RequestError(
            f"{field} must be a list of {len(self.features)} values or an object keyed by feature name, "
            f"got {type(value).__name__}",
            code="invalid_type",
            field=field,
        )

    @staticmethod
    def _value(value: Any, field: str, feature: Feature) -> Any:
        if value is None:
            if not feature.missing:
                raise RequestError(
                    f"feature {feature.name!r} ({field}) is null, but the model cannot take it missing",
                    code="missing_value",
                    field=field,
                )
            return "" if feature.kind == STRING else math.nan
        if feature.kind == STRING:
            if not isinstance(value, str):
                raise RequestError(
                    f"feature {feature.name!r} ({field}) must be a string, got {type(value).__name__} "
                    f"{value!r}"[:300],
                    code="invalid_type",
                    field=field,
                )
            if not is_unicode(value):
                raise RequestError(
                    f"feature {feature.name!r} ({field}) holds text that is not valid Unicode (a lone surrogate)",
                    code="invalid_text",
                    field=field,
                )
            if feature.categories is not None and value not in feature.categories:
                raise RequestError(
                    f"feature {feature.name!r} ({field}) is {value[:80]!r}, a category the model was not "
                    f"fitted on; it takes {sorted(feature.categories)[:20]}",
                    code="unknown_category",
                    field=field,
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RequestError(
                f"feature {feature.name!r} ({field}) must be a number, got {type(value).__name__} {value!r}"[
                    :300
                ],
                code="invalid_type",
                field=field,
            )
        number = float(value)
        if not math.isfinite(number):
            raise RequestError(
                f"feature {feature.name!r} ({field}) must be a finite number, got {value!r}",
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
