"""Choosing the next token of each row from its logits, on numpy: penalties, then the warpers.

The order is Hugging Face ``generate``'s: repetition penalty (over the prompt and the tokens so
far), presence and frequency penalties (over the generated tokens, as OpenAI and vLLM count them),
then temperature, top-k, top-p and min-p. Temperature 0 is greedy: the argmax of the penalised
logits, which with the default penalties is the model's own argmax (the parity tests' reference).

A vocabulary of 262,144 makes a full sort per token costly (~15 ms); top-p first looks for its
nucleus among the 1,024 most likely tokens, and sorts everything only when they do not hold it.
One seeded generator serves all rows of a request, drawn in row order: the same seed, the same
rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: how many of the most likely tokens top-p searches before it sorts the whole vocabulary
NUCLEUS_CANDIDATES = 1024


@dataclass(frozen=True, slots=True)
class Sampling:
    """The decoding settings of one request (each checked by the task's ``parse``)."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


class Sampler:
    """The next token of each live row; remembers what each row has seen for the penalties."""

    def __init__(self, sampling: Sampling, rows: int, vocab_size: int, prompt_ids: list[int]) -> None:
        self.sampling = sampling
        self.rng = np.random.default_rng(None if sampling.seed is None else sampling.seed % 2**64)
        self.seen: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        if sampling.repetition_penalty != 1.0:
            self.seen = np.zeros((rows, vocab_size), dtype=bool)
            known = [i for i in prompt_ids if 0 <= i < vocab_size]
            self.seen[:, known] = True
        if sampling.presence_penalty != 0.0 or sampling.frequency_penalty != 0.0:
            self.counts = np.zeros((rows, vocab_size), dtype=np.int32)

    def observe(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        """The tokens just chosen for ``rows`` (indices into the request's rows)."""
        if self.seen is not None:
            self.seen[rows, tokens] = True
        if self.counts is not None:
            self.counts[rows, tokens] += 1

    def penalised(self, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        s = self.sampling
        if self.seen is None and self.counts is None:
            return logits
        out = logits.astype(np.float32, copy=True)
        if self.seen is not None:
            seen = self.seen[rows]
            scaled = np.where(out > 0, out / s.repetition_penalty, out * s.repetition_penalty)
            out = np.where(seen, scaled, out)
        if self.counts is not None:
            counts = self.counts[rows]
            out -= s.frequency_penalty * counts + s.presence_penalty * (counts > 0)
        return out

    def choose(self, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """One token per row of ``logits`` [len(rows), vocab] (the rows' indices in ``rows``)."""
        scores = self.penalised(logits, rows)
        greedy = np.argmax(scores, axis=1)
        if self.sampling.greedy:
            return greedy
        return np.array([self._draw(row, int(best)) for row, best in zip(scores, greedy, strict=True)])

    def _draw(self, scores: np.ndarray, best: int) -> int:
        """A sample from one row; a row that is no distribution (NaN logits) decodes greedily."""
        s = self.sampling
        vocab = scores.shape[0]
        candidates = np.arange(vocab)
        if 0 < s.top_k < vocab:
            candidates = np.argpartition(scores, -s.top_k)[-s.top_k :]
        values = scores[candidates].astype(np.float64)
        # shifted to a maximum of 0 BEFORE dividing: a tiny temperature gives 0 or -inf, never NaN
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            weights = np.exp((values - values.max()) / s.temperature)
        if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
            return best
        if s.top_p < 1.0:
            candidates, weights = _nucleus(candidates, weights, s.top_p)
        if s.min_p > 0.0:
            keep = weights >= s.min_p * weights.max()
            candidates, weights = candidates[keep], weights[keep]
        cumulative = np.cumsum(weights)
        drawn = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        return int(candidates[min(drawn, len(candidates) - 1)])


def _nucleus(candidates: np.ndarray, weights: np.ndarray, top_p: float) -> tuple[np.ndarray, np.ndarray]:
    """The smallest set of most likely candidates whose mass reaches ``top_p`` (at least one)."""
    total = weights.sum()
    head = min(NUCLEUS_CANDIDATES, len(weights))
    order = np.argpartition(-weights, head - 1)[:head] if head < len(weights) else np.arange(len(weights))
    order = order[np.argsort(-weights[order], kind="stable")]
    cumulative = np.cumsum(weights[order])
    if cumulative[-1] < top_p * total and head < len(weights):
        order = np.argsort(-weights, kind="stable")
        cumulative = np.cumsum(weights[order])
    cut = int(np.searchsorted(cumulative, top_p * total, side="left")) + 1
    kept = order[: min(cut, len(order))]
    return candidates[kept], weights[kept]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of each row (the model's own distribution: what ``logprobs`` report)."""
    values = logits.astype(np.float64)
    values -= values.max(axis=-1, keepdims=True)
    return values - np.log(np.exp(values).sum(axis=-1, keepdims=True))
