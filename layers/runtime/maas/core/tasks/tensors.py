"""Raw tensors: a graph served as it is, for tensor clients (the Open Inference Protocol).

No labels and no preprocessing: the request's tensors are checked against the graph's own
signature and fed as they are; the plain route answers every output of each row.
"""

from __future__ import annotations

from typing import Any

from maas.core.tasks.base import Classifier, Feeds


class RawTensors(Classifier):
    name = "tensors"

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        outputs = self.predictor.run(feeds)
        rows = len(next(iter(outputs.values())))
        return [{name: values[row].tolist() for name, values in outputs.items()} for row in range(rows)]
