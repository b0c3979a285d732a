"""Transformer encoders served from raw text: sentence embeddings, and classifiers on them.

The graph takes ``input_ids``, ``attention_mask`` (and ``token_type_ids`` if it has that input);
the version's ``tokenizer.json`` (``io.tokenizer``) makes them here. Pooling, normalisation and a
classification head's softmax live in the graph, so this module only tokenises and formats.
Every answer says whether its text was cut at ``io.max_length`` tokens: a truncated text is
embedded from its beginning only, and the caller should know. A batch runs in groups of similar
length (``length_groups``), so short texts do not pay for a long one's padding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import ConfigurationError
from maas.core.predictor import Predictor
from maas.core.signature import TensorSpec
from maas.core.tasks.base import Classifier, Feeds, check_texts
from maas.core.tasks.length_groups import run_in_length_groups
from maas.core.tasks.subwords import ID_INPUTS, SubwordTokenizer

#: a feed the graph does not take: which rows were truncated (``run_outputs`` drops it)
TRUNCATED = "truncated"
#: nor this: each text's length in tokens, which decides the length groups
LENGTHS = "lengths"
DEFAULT_MAX_LENGTH = 256


class _Tokenized(Classifier):
    """Raw strings in, tokenised with the version's ``tokenizer.json``."""

    purpose = "process"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.tokenizer = SubwordTokenizer(
            self.artifact("tokenizer"), int(self.io.get("max_length", DEFAULT_MAX_LENGTH))
        )
        self.graph_inputs = [spec.name for spec in predictor.inputs]
        unknown = sorted(set(self.graph_inputs) - set(ID_INPUTS))
        if unknown or "input_ids" not in self.graph_inputs:
            raise ConfigurationError(
                f"task {self.name!r} feeds {list(ID_INPUTS)} (input_ids required); the graph takes {unknown}"
            )
        self.dtypes = {spec.name: spec.dtype for spec in predictor.inputs}
        # outputs with one row per text (no sequence axis) can be run in length groups
        self.per_text = {spec.name for spec in predictor.outputs if 1 <= len(spec.shape) <= 2}

    def request_inputs(self) -> list[TensorSpec]:
        """Raw text: the tokeniser runs here, not in the graph, so a tensor client sends strings."""
        return [TensorSpec("text", "object", (None, 1))]

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        texts = check_texts(instances, field, self.purpose)
        encoded = self.tokenizer.encode(texts)
        return {
            **encoded.feeds(self.graph_inputs, self.dtypes),
            TRUNCATED: encoded.truncated,
            LENGTHS: encoded.attention_mask.sum(axis=1),
        }

    def run_outputs(self, feeds: Feeds, outputs: list[str]) -> dict[str, np.ndarray]:
        """The graph's outputs, and ``truncated`` (a BOOL per text) for a tensor client."""
        graph = [name for name in outputs if name != TRUNCATED]
        results = self.run_graph(feeds, graph) if graph else {}
        if TRUNCATED in outputs:
            results[TRUNCATED] = np.asarray(feeds[TRUNCATED], dtype=bool)
        return results

    def graph_feeds(self, feeds: Feeds) -> Feeds:
        return {name: feeds[name] for name in self.graph_inputs}

    def run_graph(self, feeds: Feeds, outputs: list[str]) -> dict[str, np.ndarray]:
        """The graph's named outputs: in length groups when each has one row per text."""
        if set(outputs) <= self.per_text:
            return run_in_length_groups(self.predictor, self.graph_feeds(feeds), feeds[LENGTHS], outputs)
        return self.predictor.run(self.graph_feeds(feeds), outputs)


class TextEmbedder(_Tokenized):
    """Raw strings in, one L2-normalised vector each out (``POST /models/{m}/embed``)."""

    name = "text-embedding"
    verb = "embed"
    purpose = "embed"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.embedding_output = str(self.io.get("embedding_output", "embeddings"))

    def request_outputs(self) -> list[TensorSpec]:
        return [*self.predictor.outputs, TensorSpec(TRUNCATED, "bool", (None,))]

    def embed(self, feeds: Feeds) -> np.ndarray:
        """The (N, dimensions) float32 embeddings of checked feeds."""
        return self.run_graph(feeds, [self.embedding_output])[self.embedding_output]

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        vectors = self.embed(feeds)
        return [
            {"embedding": [float(v) for v in row], "truncated": bool(cut)}
            for row, cut in zip(vectors, feeds[TRUNCATED], strict=True)
        ]


class TransformerClassifier(_Tokenized):
    """Raw strings in, one probability per label out (the softmax is in the graph)."""

    name = "transformer-classification"
    purpose = "classify"

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        self.probability_output = str(self.io.get("probability_output", "probabilities"))

    def request_outputs(self) -> list[TensorSpec]:
        return [*self.predictor.outputs, TensorSpec(TRUNCATED, "bool", (None,))]

    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        probabilities = self.run_graph(feeds, [self.probability_output])
        predictions = self.classified(probabilities[self.probability_output])
        for prediction, cut in zip(predictions, feeds[TRUNCATED], strict=True):
            prediction["truncated"] = bool(cut)
        return predictions
