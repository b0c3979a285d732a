"""A plain onnxruntime loop over a decoder graph: what the gate measures the ONNX side with.

Prefill feeds an empty cache; each step feeds ``present.*`` back as ``past_key_values.*``. The
layer's ``causal-lm`` task serves with the same contract; this loop is the exporter's own, so the
gate needs nothing from the serving path but the graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maas.core.predictor import Predictor
from training.llm.graph import DecoderGraph, describe


class Decoder:
    def __init__(self, model_file: Path, *, threads: int = 2) -> None:
        self.graph: DecoderGraph = describe(model_file)
        self.predictor = Predictor(model_file, threads=threads)

    def _empty_cache(self) -> dict[str, np.ndarray]:
        shape = (1, self.graph.num_kv_heads, 0, self.graph.head_dim)
        return {
            f"past_key_values.{i}.{part}": np.zeros(shape, dtype=np.float32)
            for i in range(self.graph.num_layers)
            for part in ("key", "value")
        }

    def forward(
        self, ids: Sequence[int], past: dict[str, np.ndarray], past_length: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits [seq_or_1, vocab] of one row, and the grown cache."""
        feeds = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "attention_mask": np.ones((1, past_length + len(ids)), dtype=np.int64),
            **past,
        }
        if self.graph.has_position_ids:
            feeds["position_ids"] = np.arange(past_length, past_length + len(ids), dtype=np.int64)[None]
        result = self.predictor.run(feeds)
        present = {
            f"past_key_values.{i}.{part}": result[f"present.{i}.{part}"]
            for i in range(self.graph.num_layers)
            for part in ("key", "value")
        }
        return result["logits"][0], present

    def greedy(self, prompt: Sequence[int], steps: int) -> tuple[list[int], np.ndarray]:
        """``steps`` greedy token ids, and the prefill's last-position logits."""
        logits, past = self.forward(prompt, self._empty_cache(), 0)
        first = logits[-1]
        tokens: list[int] = []
        length = len(prompt)
        for _ in range(steps):
            token = int(np.argmax(logits[-1]))
            tokens.append(token)
            logits, past = self.forward([token], past, length)
            length += 1
        return tokens, first

    def logprobs(self, ids: Sequence[int]) -> np.ndarray:
        """Log-probabilities of the next token at every position (the full graph only)."""
        logits, _ = self.forward(ids, self._empty_cache(), 0)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        return (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))).astype(np.float32)
