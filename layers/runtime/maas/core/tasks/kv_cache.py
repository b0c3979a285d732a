"""A decoder graph with a KV cache: prefill the prompt once, then one token per row per run.

The names come from the manifest's ``io`` (``past_key_values.{i}.key`` ... ``present.{i}.value``
for an onnxruntime-genai or optimum export). Each run's ``present`` is the next run's ``past``:
the graph is built with ``windowed_kv_cache=false``, so the cache simply grows by one position
per token. The rows of one request share the prompt's prefill: its cache is repeated once per
row, and a row that has finished is dropped from the batch.

Plain ``session.run``, not I/O binding, because binding measured no faster: on a builder graph of
Gemma 3 270M's cache geometry (18 layers, 1 KV head of 256; int4, accuracy level 4, one thread,
2 loaded cores, 9 alternating rounds of 32 decode steps), the minimum per step was 8.39 ms plain
against 8.79 ms bound at a 64-token prompt, 11.89 against 11.51 ms at 512, and 38.65 against
42.78 ms for 4 rows (medians alike within noise). Binding the previous ``present`` OrtValues as
the next ``past`` saves no copy that ``run`` makes: onnxruntime allocates every ``present`` afresh
either way, since with ``windowed_kv_cache=false`` it grows by a position each step (a buffer
shared between past and present needs the builder's windowed layout, which a plain loop cannot
grow).

A prompt that starts like the last one prefilled (a chat's next turn re-sends the conversation; a
client repeats a prompt) reuses that prompt's cache for what they share, as llama.cpp's server
does: ``Prefix`` keeps the last prompt's cache of one row (36 KiB a token for Gemma 3 270M), and
the new prompt's prefill runs from where they part. At least ``MIN_TAIL`` tokens are prefilled
again: a one-token run takes the kernels' one-row path, whose int8-activation products differ
slightly from the multi-row path a prefill takes, while a run of two or more gives the full
prefill's logits exactly (max difference 0.0 on Gemma 3 270M's lossless-mixed and fp32 graphs,
prompts split in halves).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maas.core.errors import ConfigurationError
from maas.core.predictor import Predictor

#: tokens a reuse must save to be worth it, and tokens always prefilled again (see above)
MIN_REUSE = 4
MIN_TAIL = 2


@dataclass(frozen=True, slots=True)
class Prefix:
    """The last prompt prefilled (BOS included) and its cache, one row, ``[1, heads, len, dim]``."""

    ids: tuple[int, ...]
    cache: tuple[np.ndarray, ...]

    def shared(self, prompt_ids: list[int]) -> int:
        """How many leading positions of ``prompt_ids`` this cache answers (0: none worth it)."""
        common = 0
        for mine, theirs in zip(self.ids, prompt_ids, strict=False):
            if mine != theirs:
                break
            common += 1
        usable = min(common, len(prompt_ids) - MIN_TAIL)
        return usable if usable >= MIN_REUSE else 0


@dataclass(frozen=True, slots=True)
class CacheLayout:
    """The graph's names and cache geometry, read from the manifest's ``io``."""

    input_ids: str
    attention_mask: str
    position_ids: str | None
    logits: str
    past: tuple[str, ...]
    present: tuple[str, ...]
    num_kv_heads: int
    head_dim: int
    kv_dtype: np.dtype[Any]

    @classmethod
    def from_io(cls, io: dict[str, Any], predictor: Predictor) -> CacheLayout:
        try:
            layers = int(io["num_layers"])
            layout = cls(
                input_ids=str(io.get("input_ids", "input_ids")),
                attention_mask=str(io.get("attention_mask", "attention_mask")),
                position_ids=str(io["position_ids"]) if io.get("position_ids") else None,
                logits=str(io.get("logits", "logits")),
                past=_per_layer(io, layers, "past", "past_key_values.{i}"),
                present=_per_layer(io, layers, "present", "present.{i}"),
                num_kv_heads=int(io["num_kv_heads"]),
                head_dim=int(io["head_dim"]),
                kv_dtype=np.dtype(str(io.get("kv_dtype", "float32"))),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigurationError(f"the manifest's io does not describe a KV cache: {error}") from None
        inputs, outputs = set(predictor.input_names), {spec.name for spec in predictor.outputs}
        wanted_in = {layout.input_ids, layout.attention_mask, *layout.past}
        if layout.position_ids:
            wanted_in.add(layout.position_ids)
        missing = sorted((wanted_in - inputs) | ({layout.logits, *layout.present} - outputs))
        if missing:
            raise ConfigurationError(f"the graph lacks the inputs/outputs its manifest names: {missing}")
        return layout

    @property
    def bytes_per_token(self) -> int:
        """The cache of one position of one row: keys and values of every layer."""
        return len(self.past) * self.num_kv_heads * self.head_dim * self.kv_dtype.itemsize


def _per_layer(io: dict[str, Any], layers: int, kind: str, default: str) -> tuple[str, ...]:
    """Each layer's key then value name, from ``io["<kind>_key"]`` / ``io["<kind>_value"]``."""
    patterns = [str(io.get(f"{kind}_{part}", f"{default}.{part}")) for part in ("key", "value")]
    return tuple(pattern.format(i=i) for i in range(layers) for pattern in patterns)


class KVDecoder:
    """One request's decoding state: the cache of its live rows and their length so far."""

    def __init__(self, predictor: Predictor, layout: CacheLayout) -> None:
        self.predictor = predictor
        self.layout = layout
        self.cache: list[np.ndarray] = []
        self.length = 0
        #: prompt tokens the last prefill took from a ``Prefix``, and the prefix it leaves
        self.reused = 0
        self.prefix: Prefix | None = None

    def prefill(self, prompt_ids: list[int], rows: int, reuse: Prefix | None = None) -> np.ndarray:
        """Run the prompt once (from where ``reuse``'s prompt parts from it); the next-token logits
        [rows, vocab], the cache repeated per row. ``reused`` and ``prefix`` say what it did."""
        layout = self.layout
        self.reused = reuse.shared(prompt_ids) if reuse is not None else 0
        if reuse is not None and self.reused:
            past = [np.ascontiguousarray(kv[:, :, : self.reused, :]) for kv in reuse.cache]
        else:
            empty = np.zeros((1, layout.num_kv_heads, 0, layout.head_dim), dtype=layout.kv_dtype)
            past = [empty] * len(layout.past)
        self.length = self.reused
        ids = np.asarray([prompt_ids[self.reused :]], dtype=np.int64)
        positions = np.arange(self.reused, len(prompt_ids), dtype=np.int64)[None, :]
        logits = self._run(ids, past, positions)
        self.prefix = Prefix(tuple(prompt_ids), tuple(self.cache))
        if rows > 1:
            self.cache = [np.repeat(kv, rows, axis=0) for kv in self.cache]
            logits = np.repeat(logits, rows, axis=0)
        return logits

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """One token per live row in, the next-token logits [rows, vocab] out."""
        ids = tokens.astype(np.int64).reshape(-1, 1)
        positions = np.full_like(ids, self.length)
        return self._run(ids, self.cache, positions)

    def keep(self, rows: np.ndarray) -> None:
        """Only these rows (indices among the live ones) decode on: the others have finished."""
        self.cache = [kv[rows] for kv in self.cache]

    def _run(self, ids: np.ndarray, past: list[np.ndarray], positions: np.ndarray) -> np.ndarray:
        layout = self.layout
        total = self.length + ids.shape[1]
        feeds: dict[str, np.ndarray] = {
            layout.input_ids: ids,
            layout.attention_mask: np.ones((ids.shape[0], total), dtype=np.int64),
        }
        if layout.position_ids:
            feeds[layout.position_ids] = positions
        feeds.update(zip(layout.past, past, strict=True))
        results = self.predictor.run(feeds, [layout.logits, *layout.present])
        self.cache = [results[name] for name in layout.present]
        self.length = total
        logits = results[layout.logits]
        # a graph pruned to the last position answers [rows, 1, vocab]; a full one [rows, seq, vocab]
        return np.asarray(logits[:, -1, :])
