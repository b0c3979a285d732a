"""The parity gate of an embedding model: cosine similarity to the source, and retrieval agreement.

Embeddings have no labels to agree on. What a user of sentence embeddings relies on is the
direction of each vector (cosine) and which neighbours a query finds. So the gate asks two things
of a candidate's vectors against the source model's on held-out texts: every cosine at least
``min_cosine``, and (for a quantised variant) the top-k neighbours of each query over a small
corpus mostly the same (mean overlap at least ``min_overlap``).
"""

from __future__ import annotations

import numpy as np

from training.export import MAX_NAMED_ROWS, ParityReport

FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.99
INT8_MIN_OVERLAP = 0.9
TOP_K = 5
#: the first QUERIES texts search the others (the retrieval set)
QUERIES = 50


def cosines(vectors: np.ndarray, reference: np.ndarray) -> np.ndarray:
    a = np.asarray(vectors, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), np.finfo(np.float64).tiny)
    return np.asarray((a * b).sum(axis=1) / norms)


def top_k_overlap(
    vectors: np.ndarray, reference: np.ndarray, queries: int = QUERIES, k: int = TOP_K
) -> float:
    """Mean share of each query's k nearest corpus texts (by cosine) that both embeddings agree on."""

    def nearest(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=np.float64)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), np.finfo(np.float64).tiny)
        return np.argsort(-(v[:queries] @ v[queries:].T), axis=1, kind="stable")[:, :k]

    mine, theirs = nearest(vectors), nearest(reference)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(mine, theirs, strict=True)]))


def compare_embeddings(
    vectors: np.ndarray,
    reference: np.ndarray,
    *,
    min_cosine: float = FP32_MIN_COSINE,
    min_overlap: float | None = None,
) -> ParityReport:
    """Every row's cosine to the source at least ``min_cosine``; with ``min_overlap``, the top-5
    retrieval overlap too (needs more than ``QUERIES`` rows)."""
    cos = cosines(vectors, reference)
    below = np.flatnonzero(cos < min_cosine)
    details: dict[str, object] = {
        "min_cosine": float(cos.min()),
        "mean_cosine": float(cos.mean()),
        "required_min_cosine": min_cosine,
    }
    if below.size:
        details["differing_rows"] = [int(i) for i in below[:MAX_NAMED_ROWS]]
    unmet: list[str] = []
    if min_overlap is not None:
        overlap = top_k_overlap(vectors, reference)
        details.update(
            {
                f"top{TOP_K}_overlap": overlap,
                f"required_top{TOP_K}_overlap": min_overlap,
                "retrieval_set": {"queries": QUERIES, "corpus": len(cos) - QUERIES},
            }
        )
        if overlap < min_overlap:
            unmet.append(f"top-{TOP_K} neighbour overlap {overlap:.3f} < {min_overlap}")
    return ParityReport(
        rows=len(cos),
        label_disagreements=int(below.size),
        max_abs_diff=float(1.0 - cos.min()),
        tolerance=1.0 - min_cosine,
        measure="1-cosine",
        compared="embeddings",
        details=details,
        unmet=tuple(unmet),
    )
