"""Text classifiers whose graph takes raw strings and tokenises them itself (TF-IDF pipelines)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maas.core.predictor import Predictor
from maas.core.signature import cast_batch
from maas.core.tasks.base import Classifier, Feeds, check_texts


class TextClassifier(Classifier):
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
