"""Text generation with a one-step ONNX graph: (token, state) -> (logits, new state).

The graph computes one step of a recurrent network, so every new token costs one ``session.run``
of the same size, however long the text already is. Decoding (greedy at temperature 0, else
temperature + top-k sampling with a seeded generator) runs here on numpy, for all requested
sequences at once: ``num_return_sequences`` rows share every ``session.run``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import RequestError, shown
from maas.core.predictor import Predictor
from maas.core.signature import TensorSpec
from maas.core.tasks.base import Continuation, GenerationRequest, Generator

__all__ = ["LIMITS", "GenerationRequest", "TextGenerator"]

#: the request limits a manifest's ``io`` may set, and what they are when it does not
LIMITS = {"max_new_tokens": 512, "max_prompt_chars": 1000, "max_return_sequences": 8}


def _integer(body: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be an integer, got {shown(value)}", code="invalid_type", field=name)
    if not low <= value <= high:
        raise RequestError(
            f"{name} is {shown(value)}; it must be between {low} and {high}", code="out_of_range", field=name
        )
    return value


class TextGenerator(Generator):
    name = "text-generation"
    parameters = ("max_new_tokens", "num_return_sequences", "temperature", "top_k", "seed")

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        vocabulary = json.loads(self.artifact("vocabulary").read_text(encoding="utf-8"))
        self.characters: list[str] = list(vocabulary["characters"])
        self.index = {ch: i for i, ch in enumerate(self.characters)}
        self.state_size = int(vocabulary["state_size"])
        names = {spec.name: spec for spec in predictor.inputs}
        self.token_input = names[str(self.io.get("token_input", "token"))]
        self.state_input = str(self.io.get("state_input", "state"))
        self.logits_output = str(self.io.get("logits_output", "logits"))
        self.state_output = str(self.io.get("state_output", "state_out"))
        self.max_new_tokens = int(self.io.get("max_new_tokens", LIMITS["max_new_tokens"]))
        self.max_prompt_chars = int(self.io.get("max_prompt_chars", LIMITS["max_prompt_chars"]))
        self.max_return_sequences = int(self.io.get("max_return_sequences", LIMITS["max_return_sequences"]))

    def request_inputs(self) -> list[TensorSpec]:
        """A tensor client sends one prompt (``parse``'s other fields travel as ``parameters``)."""
        return [TensorSpec("prompt", "object", (1,))]

    def request_outputs(self) -> list[TensorSpec]:
        """And gets one text per returned sequence."""
        return [TensorSpec("text", "object", (None,))]

    def parse(self, body: dict[str, Any], deadline: float | None = None) -> GenerationRequest:
        """The request's fields, each checked: a 400 names the first one that is wrong."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise RequestError("prompt is required and must be a string", code="invalid_type", field="prompt")
        if not prompt:
            raise RequestError(
                "prompt is empty: there is nothing to continue", code="empty_text", field="prompt"
            )
        if len(prompt) > self.max_prompt_chars:
            raise RequestError(
                f"prompt has {len(prompt)} characters, at most {self.max_prompt_chars} are accepted",
                code="prompt_too_long",
                field="prompt",
            )
        temperature = body.get("temperature", 1.0)
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise RequestError("temperature must be a number", code="invalid_type", field="temperature")
        # compared as given (NaN fails both): float() of a 400-digit integer overflows
        if not 0 <= temperature <= 5:
            raise RequestError(
                f"temperature is {shown(temperature)}; it must be between 0 (greedy) and 5",
                code="out_of_range",
                field="temperature",
            )
        self.encode(prompt)
        return GenerationRequest(
            prompt=prompt,
            max_new_tokens=int(_integer(body, "max_new_tokens", 100, 1, self.max_new_tokens) or 0),
            num_return_sequences=int(
                _integer(body, "num_return_sequences", 1, 1, self.max_return_sequences) or 1
            ),
            temperature=float(temperature),
            top_k=int(_integer(body, "top_k", 0, 0, len(self.characters)) or 0),
            seed=_integer(body, "seed", None, 0, 2**32 - 1),
            deadline=deadline,
        )

    def encode(self, prompt: str, field: str = "prompt") -> list[int]:
        unknown = sorted({ch for ch in prompt if ch not in self.index})
        if unknown:
            raise RequestError(
                f"{field} holds characters the model has never seen: {shown(''.join(unknown))}",
                code="unknown_characters",
                field=field,
            )
        return [self.index[ch] for ch in prompt]

    def step(self, tokens: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feeds = {self.token_input.name: tokens.astype(self.token_input.dtype), self.state_input: state}
        outputs = self.predictor.run(feeds, [self.logits_output, self.state_output])
        return outputs[self.logits_output], outputs[self.state_output]

    def generate(self, request: GenerationRequest) -> list[Continuation]:
        """Continuations of the prompt, one per requested sequence (the prompt not repeated)."""
        rows = request.num_return_sequences
        state = np.zeros((rows, self.state_size), dtype=np.float32)
        logits = np.empty(0)
        for token in self.encode(request.prompt):
            logits, state = self.step(np.full(rows, token), state)
        rng = np.random.default_rng(request.seed)
        produced: list[np.ndarray] = []
        reason = "length"
        for position in range(request.max_new_tokens):
            chosen = self.choose(logits, request, rng)
            produced.append(chosen)
            if position + 1 < request.max_new_tokens:
                if request.deadline is not None and time.monotonic() >= request.deadline:
                    reason = "time"
                    break
                logits, state = self.step(chosen, state)
        columns = np.stack(produced, axis=1)
        return [
            Continuation("".join(self.characters[int(i)] for i in row), len(produced), reason)
            for row in columns
        ]

    @staticmethod
    def choose(logits: np.ndarray, request: GenerationRequest, rng: np.random.Generator) -> np.ndarray:
        """Greedy at temperature 0, else a sample of softmax(logits / temperature) (top-k first).

        The logits are shifted so that their maximum is 0 BEFORE dividing: however small the
        temperature (5e-324), the quotients are 0 or -inf, never inf - inf, so the weights hold
        no NaN. Should a row still not be a distribution (a NaN logit), it is decoded greedily.
        """
        greedy = np.argmax(logits, axis=1)
        if request.temperature == 0.0:
            return greedy
        shifted = logits.astype(np.float64)
        shifted -= shifted.max(axis=1, keepdims=True)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            scaled = shifted / request.temperature
        if 0 < request.top_k < scaled.shape[1]:
            kth = np.partition(scaled, -request.top_k, axis=1)[:, -request.top_k][:, None]
            scaled = np.where(scaled < kth, -np.inf, scaled)
        weights = np.exp(scaled)
        totals = weights.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            weights = weights / totals
        chosen = [
            int(rng.choice(len(row), p=row)) if np.all(np.isfinite(row)) and total > 0 else int(best)
            for row, total, best in zip(weights, totals[:, 0], greedy, strict=True)
        ]
        return np.array(chosen)
