"""Warm throughput of one MiniLM side, one thread: batch 1 and batch 32, median ms a batch.

``python benchmarks/minilm_throughput.py onnx VERSION_DIR TEXTS`` (the project's Python: the
layer's task on the version folder, which runs a batch in length groups; and, for comparison, the
graph on the batch padded to its longest text in one run) or ``... st MODEL_DIR TEXTS`` (the export environment's:
sentence-transformers on PyTorch). Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROUNDS = {1: 40, 32: 8}


def embedders(
    kind: str, folder: Path
) -> tuple[Callable[[list[str]], Any], Callable[[list[str]], Any] | None]:
    """How a side embeds a batch, and (ours only) the graph on the batch padded to its longest text
    in one run: the task without its length groups, which says what the int8 kernels give alone."""
    if kind == "st":
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        model = SentenceTransformer(str(folder), device="cpu")
        return lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True), None
    from maas.core.predictor import Predictor
    from maas.core.tasks.transformer import TextEmbedder

    manifest = json.loads((folder / "manifest.json").read_text())
    task = TextEmbedder(Predictor(folder / "model.onnx", threads=1), manifest, folder)
    return (
        lambda texts: task.embed(task.prepare(texts)),
        lambda texts: task.predictor.run(task.graph_feeds(task.prepare(texts)), [task.embedding_output]),
    )


def main() -> None:
    kind, folder, texts_file = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    texts = json.loads(texts_file.read_text())[:32]
    embed, padded = embedders(kind, folder)
    embed(texts)  # warm
    figures = {}
    for batch, rounds in ROUNDS.items():
        times = []
        for i in range(rounds):
            chunk = texts[:batch] if batch > 1 else [texts[i % len(texts)]]
            started = time.perf_counter()
            embed(chunk)
            times.append((time.perf_counter() - started) * 1000.0)
        figures[f"batch{batch}_ms"] = statistics.median(times)
    if padded is not None:
        padded(texts)
        times = []
        for _ in range(ROUNDS[32]):
            started = time.perf_counter()
            padded(texts)
            times.append((time.perf_counter() - started) * 1000.0)
        figures["batch32_one_padded_run_ms"] = statistics.median(times)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
