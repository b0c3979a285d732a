"""Raw tensors: a graph served as it is, for tensor clients (the Open Inference Protocol).

No labels and no preprocessing: the request's tensors are checked against the graph's own
signature and fed as they are; the plain route answers every output of each row, by name. An
instance of a one-input graph is that input's row; for a graph of several inputs it is an object
keyed by input name (a missing or unknown name is a 400 naming it).
"""

from __future__ import annotations

from typing import Any

from maas.core.errors import RequestError
from maas.core.signature import cast_batch
from maas.core.tasks.base import Classifier, Feeds


class RawTensors(Classifier):
    name = "tensors"

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        inputs = self.predictor.inputs
        if len(inputs) == 1 and not any(isinstance(instance, dict) for instance in instances):
            return super().prepare(instances, field)
        names = [spec.name for spec in inputs]
        for index, instance in enumerate(instances):
            where = f"{field}[{index}]"
            if not isinstance(instance, dict):
                raise RequestError(
                    f"{where} must be an object keyed by the graph's inputs {names}",
                    code="invalid_type",
                    field=where,
                )
            missing = [name for name in names if name not in instance]
            if missing:
                raise RequestError(
                    f"{where} has no input {missing[0]!r}; the graph takes {names}",
                    code="missing_input",
                    field=f"{where}.{missing[0]}",
                )
            unknown = [str(name) for name in instance if name not in names]
            if unknown:
                raise RequestError(
                    f"{where} has input {unknown[0]!r}, which the graph does not take; it takes {names}",
                    code="unknown_input",
                    field=f"{where}.{unknown[0]}",
                )
        return {
            spec.name: cast_batch(
                [instance[spec.name] for instance in instances], spec, f"{field}[].{spec.name}"
            )
            for spec in inputs
        }

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        outputs = self.predictor.run(feeds)
        rows = len(next(iter(outputs.values())))
        return [{name: values[row].tolist() for name, values in outputs.items()} for row in range(rows)]
