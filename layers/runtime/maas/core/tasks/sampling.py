"""Choosing the next token of each row from its logits, on numpy: penalties, then the warpers.

The order is Hugging Face ``generate``'s: repetition penalty (over the prompt and the tokens so
far), presence and frequency penalties (over the generated tokens, as OpenAI and vLLM count them),
then temperature, top-k, top-p and min-p. Temperature 0 is greedy: the argmax of the penalised
logits, which with the default penalties is the model's own argmax (the parity tests' reference).

A vocabulary of 262,144 makes an exp and a sort per token costly (19 and 130 ms measured for a
flat row): a draw first drops the tokens that cannot matter (below 1e-10 of the best one), so a
peaked row, what a trained model gives, samples among a few hundred. One seeded generator serves all rows of a request, drawn in row order: the same seed, the same
rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: ln(1e10): a token this far (times the temperature) below the best one is never drawn
NEGLIGIBLE_LOG = math.log(1e10)
#: how many of the heaviest candidates top-p sorts first (more only when they fall short)
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
        self.vocab_size = vocab_size
        known = {i for i in prompt_ids if 0 <= i < vocab_size}
        #: per row, the tokens of the prompt and the output (repetition) and the output's counts
        #: (presence, frequency): a few thousand at most, so the penalties touch only those logits
        self.seen: list[set[int]] = [set(known) for _ in range(rows)]
        self.counts: list[dict[int, int]] = [{} for _ in range(rows)]

    def observe(self, rows: np.ndarray, tokens: np.ndarray) -> None:
        """The tokens just chosen for ``rows`` (indices into the request's rows)."""
        for row, token in zip(rows.tolist(), tokens.tolist(), strict=True):
            self.seen[row].add(token)
            self.counts[row][token] = self.counts[row].get(token, 0) + 1

    def penalised(self, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        s = self.sampling
        repetition = s.repetition_penalty != 1.0
        counted = s.presence_penalty != 0.0 or s.frequency_penalty != 0.0
        if not repetition and not counted:
            return logits
        out = np.array(logits, dtype=np.float32)
        for position, row in enumerate(rows.tolist()):
            if repetition and self.seen[row]:
                ids = np.fromiter(self.seen[row], dtype=np.int64)
                values = out[position, ids]
                out[position, ids] = np.where(
                    values > 0, values / s.repetition_penalty, values * s.repetition_penalty
                )
            if counted and self.counts[row]:
                ids = np.fromiter(self.counts[row].keys(), dtype=np.int64)
                times = np.fromiter(self.counts[row].values(), dtype=np.float32)
                out[position, ids] -= s.frequency_penalty * times + s.presence_penalty
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
        top = float(scores[best])
        if not np.isfinite(top):
            return best
        # A token less likely than 1e-10 of the best one cannot change a draw (together at most
        # vocab x 1e-10 of the mass): dropped before exp, so a peaked row costs one comparison
        # per token instead of an exp and a sort of 262,144.
        candidates = np.flatnonzero(scores >= top - s.temperature * NEGLIGIBLE_LOG)
        if 0 < s.top_k < len(candidates):
            candidates = candidates[np.argpartition(scores[candidates], -s.top_k)[-s.top_k :]]
        # shifted to a maximum of 0 BEFORE dividing: a tiny temperature gives 0 or -inf, never NaN;
        # float32 (the model's own precision) down to e^-23, summed in float64
        with np.errstate(over="ignore", divide="ignore", invalid="ignore", under="ignore"):
            weights = np.exp((scores[candidates] - np.float32(top)) / np.float32(s.temperature))
        if not np.all(np.isfinite(weights)) or weights.sum(dtype=np.float64) <= 0:
            return best
        if s.top_p < 1.0:
            kept = _nucleus(weights, s.top_p)
            candidates, weights = candidates[kept], weights[kept]
        if s.min_p > 0.0:
            keep = weights >= s.min_p * weights.max()
            candidates, weights = candidates[keep], weights[keep]
        cumulative = np.cumsum(weights, dtype=np.float64)
        drawn = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        return int(candidates[min(drawn, len(candidates) - 1)])


def _nucleus(weights: np.ndarray, top_p: float) -> np.ndarray:
    """The indices of the smallest set of most likely weights whose mass reaches ``top_p``, most
    likely first: the 1,024 heaviest are sorted first, eight times more while they fall short,
    everything only when that is still not enough (a flat row)."""
    need = top_p * weights.sum(dtype=np.float64)
    size = NUCLEUS_CANDIDATES
    while True:
        if size >= len(weights):
            order = np.argsort(-weights, kind="stable")
        else:
            order = np.argpartition(-weights, size - 1)[:size]
            order = order[np.argsort(-weights[order], kind="stable")]
        cumulative = np.cumsum(weights[order], dtype=np.float64)
        if cumulative[-1] >= need or size >= len(weights):
            break
        size *= 8
    return order[: int(np.searchsorted(cumulative, need, side="left")) + 1]


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities of each row (the model's own distribution: what ``logprobs`` report)."""
    values = logits.astype(np.float64)
    values -= values.max(axis=-1, keepdims=True)
    return values - np.log(np.exp(values).sum(axis=-1, keepdims=True))
