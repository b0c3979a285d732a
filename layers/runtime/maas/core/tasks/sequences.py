"""Sequence classifiers (an LSTM over token ids): raw text in, the tokeniser applied here.

A recurrent network's graph takes token ids, not strings, so its tokeniser (vocabulary and
sequence length) is a versioned artifact next to ``model.onnx``. This module is the one
implementation that applies it: the trainer imports the same ``Tokenizer`` to encode the
training data, so training and serving cannot drift apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.predictor import Predictor
from maas.core.signature import TensorSpec
from maas.core.tasks.base import Classifier, Feeds, check_texts

PAD = 0
UNKNOWN = 1
RESERVED = ("<pad>", "<unk>")
# Words of letters and digits (any script), with inner apostrophes: "don't", "it's".
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@dataclass(frozen=True, slots=True)
class Tokenizer:
    """Lower-cased words -> ids (0 pads, 1 is unknown); the first ``sequence_length`` words,
    padded at the front so the recurrent state ends on the text, not on padding."""

    vocabulary: tuple[str, ...]
    sequence_length: int
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # built once per loaded version, not per request (10,000 words cost ~1 ms to index)
        object.__setattr__(self, "index", {word: i for i, word in enumerate(self.vocabulary)})

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Tokenizer:
        return cls(tuple(document["vocabulary"]), int(document["sequence_length"]))

    @classmethod
    def from_file(cls, path: Path) -> Tokenizer:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def to_json(self) -> bytes:
        document = {
            "kind": "words",
            "pattern": WORD.pattern,
            "lowercase": True,
            "padding": "pre",
            "truncation": "post",
            "sequence_length": self.sequence_length,
            "vocabulary": list(self.vocabulary),
        }
        return json.dumps(document, ensure_ascii=False).encode("utf-8")

    @staticmethod
    def words(text: str) -> list[str]:
        return WORD.findall(text.lower())

    def encode(self, texts: list[str], dtype: str = "int32") -> np.ndarray:
        index = self.index
        batch = np.full((len(texts), self.sequence_length), PAD, dtype=np.dtype(dtype))
        for row, text in enumerate(texts):
            ids = [index.get(word, UNKNOWN) for word in self.words(text)[: self.sequence_length]]
            if ids:
                batch[row, -len(ids) :] = ids
        return batch


def binary_probabilities(positive: np.ndarray) -> np.ndarray:
    """A sigmoid output (N, 1) as two columns: P(first label), P(second label)."""
    p = np.asarray(positive, dtype=np.float64).reshape(-1)
    return np.stack([1.0 - p, p], axis=1)


class SequenceClassifier(Classifier):
    """Raw strings in, tokenised with the version's own vocabulary; one sigmoid output."""

    name = "sequence-classification"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.tokenizer = Tokenizer.from_file(self.artifact("tokenizer"))
        self.input_spec = predictor.inputs[0]
        self.probability_output = str(self.io.get("probability_output", "probability"))

    def request_inputs(self) -> list[TensorSpec]:
        """Raw text: the tokeniser runs here, not in the graph, so a tensor client sends strings."""
        return [TensorSpec("text", "object", (None, 1))]

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        texts = check_texts(instances, field)
        return {self.input_spec.name: self.tokenizer.encode(texts, self.input_spec.dtype)}

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        positive = self.predictor.run(feeds, [self.probability_output])[self.probability_output]
        return self.classified(binary_probabilities(positive))
