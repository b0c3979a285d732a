"""The task types: what a served version does with a request, decided by the manifest's task.

Two kinds, two types, never mixed: a ``Classifier`` turns a batch of instances into one
prediction each (``POST /models/{m}/predict``); a ``Generator`` turns one prompt into text, one
``session.run`` per token (``POST /models/{m}/generate``). ``isinstance`` on these two is the one
way the layer tells them apart. Adapters never re-implement preprocessing that belongs in the
graph; where a step cannot live in the graph (a tokeniser), it is a versioned artifact named in
the manifest and applied by the task's one implementation of it.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from maas.core.errors import ConfigurationError, RequestError
from maas.core.predictor import Predictor
from maas.core.signature import TensorSpec, cast_batch, is_unicode

Feeds = dict[str, np.ndarray]


class ServedTask:
    """What every task knows: its graph, its manifest, its artifacts and its request tensors."""

    name: ClassVar[str] = ""
    #: the plain route that answers this task: ``predict`` or ``generate``
    verb: ClassVar[str] = ""

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

    @property
    def feature_names(self) -> list[str] | None:
        """The named columns of a tabular model (a CSV batch's header names them), else None."""
        return None

    @property
    def string_features(self) -> frozenset[str]:
        """The features of a table that hold strings: a CSV batch's cells there stay text."""
        return frozenset()

    def request_inputs(self) -> list[TensorSpec]:
        """What a tensor client (the Open Inference Protocol) sends: the graph's own inputs, unless
        preprocessing outside the graph (a tokeniser) makes the request something else (text)."""
        return list(self.predictor.inputs)

    def request_outputs(self) -> list[TensorSpec]:
        """What a tensor client gets back: the graph's own outputs, unless the task answers otherwise."""
        return list(self.predictor.outputs)

    def run_outputs(self, feeds: Feeds, outputs: list[str]) -> dict[str, np.ndarray]:
        """The named ``request_outputs`` for checked feeds (a tensor client's answer)."""
        return self.predictor.run(feeds, outputs)


class Classifier(ServedTask):
    """Instances in, one prediction each out: ``prepare`` validates and builds feeds, ``predict``
    runs the session and formats."""

    verb = "predict"

    def prepare(self, instances: list[Any], field: str = "instances") -> Feeds:
        """Default: a one-input graph takes the request as it is, checked against its signature."""
        if len(self.predictor.inputs) != 1:
            raise ConfigurationError(f"task {self.name!r} must say how to feed a graph of several inputs")
        spec = self.predictor.inputs[0]
        return {spec.name: cast_batch(instances, spec, field)}

    @abstractmethod
    def predict(self, feeds: Feeds) -> list[dict[str, Any]]:
        """One prediction per row of ``feeds``."""

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


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """What every generator takes; a task's own request type may add fields (``causal_lm``)."""

    prompt: str
    max_new_tokens: int
    num_return_sequences: int = 1
    temperature: float = 1.0
    top_k: int = 0
    seed: int | None = None
    #: ``time.monotonic()`` by which the answer must be on its way (None: no deadline): a
    #: generator that reaches it stops and answers what it has (``finish_reason`` "time")
    deadline: float | None = None

    def parameters(self) -> dict[str, Any]:
        """The decoding settings as answered back to the caller (what was applied, defaults included)."""
        hidden = {"prompt", "prompt_ids", "deadline"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}


#: why a sequence ended: its stop string or end-of-sequence token, its length limit, or the deadline
FINISH_REASONS = ("stop", "length", "time")


@dataclass(frozen=True, slots=True)
class Continuation:
    """One generated sequence: its text (the prompt not repeated), its token count, why it ended."""

    text: str
    tokens: int
    finish_reason: str = "length"


class Generator(ServedTask):
    """One prompt in, ``num_return_sequences`` continuations out: ``parse`` checks the request,
    ``encode`` the prompt, ``generate`` decodes."""

    verb = "generate"
    #: the request fields a generation takes besides the prompt (the protocol's ``parameters``)
    parameters: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def parse(self, body: dict[str, Any], deadline: float | None = None) -> GenerationRequest:
        """The request's fields, each checked (the prompt readable by the model too): a
        ``RequestError`` names the first one that is wrong. ``deadline``: see ``GenerationRequest``."""

    @abstractmethod
    def encode(self, prompt: str, field: str = "prompt") -> list[int]:
        """The prompt's token ids, or a ``RequestError`` naming what the model cannot read."""

    @abstractmethod
    def generate(self, request: GenerationRequest) -> list[Continuation]:
        """The continuations of the prompt, one per requested sequence."""


def check_texts(instances: list[Any], field: str = "instances", purpose: str = "classify") -> list[str]:
    """Every instance a non-empty string, or a 400 naming the first one that is not."""
    for index, text in enumerate(instances):
        where = f"{field}[{index}]"
        if not isinstance(text, str):
            raise RequestError(
                f"{where} must be a string, got {type(text).__name__}", code="invalid_type", field=where
            )
        if not text.strip():
            raise RequestError(
                f"{where} is empty: there is no text to {purpose}", code="empty_text", field=where
            )
        if not is_unicode(text):
            raise RequestError(
                f"{where} holds text that is not valid Unicode (a lone surrogate)",
                code="invalid_text",
                field=where,
            )
    return instances
