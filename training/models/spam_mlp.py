"""spam_mlp: TF-IDF features -> ``Dense(relu)`` -> ``Dense(softmax)`` over ham/spam, from raw text.

The vectoriser (scikit-learn, converted by skl2onnx) and the network (Keras, converted by
tf2onnx) are joined into ONE ONNX graph with ``onnx.compose.merge_models``: the served graph
takes raw strings, so nothing of the preprocessing is re-implemented in the handler. The graph and
the answers of scikit-learn + Keras from raw text go to ``maas import``'s own path
(``training.importer.import_model``), whose parity gate compares them with the served graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from maas.core.tasks.text import TextClassifier
from training.importer import ONNX_TOKENS, import_model
from training.keras_common import (
    OPSET,
    compiled,
    export_model,
    fit,
    keras_framework,
    seed_everything,
    tensorflow,
)
from training.models.spam_lstm import load_spam
from training.models.spam_nb import TOKEN_PATTERN, TextData
from training.options import TrainOptions
from training.progress import Progress
from training.text import classification_metrics

NAME = "spam_mlp"
FEATURES = "features"
PARAMETERS: dict[str, Any] = {
    "tfidf": {
        "token_pattern": TOKEN_PATTERN,
        "lowercase": True,
        "min_df": 2,
        "max_df": 0.95,
        "max_features": 5000,
    },
    "hidden_units": 64,
    "dropout": 0.2,
    "batch_size": 64,
    "learning_rate": 0.002,
    "epochs": 4,
}
IO = {"input": "text", "probability_output": "probabilities"}


def build_model(features: int) -> Any:
    import keras

    return compiled(
        [
            keras.Input((features,)),
            keras.layers.Dense(PARAMETERS["hidden_units"], activation="relu"),
            keras.layers.Dropout(PARAMETERS["dropout"]),
            keras.layers.Dense(2, activation="softmax"),
        ],
        learning_rate=PARAMETERS["learning_rate"],
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def export_onnx(vectorizer: Any, model: Any) -> onnx.ModelProto:
    """One graph: skl2onnx's TF-IDF (raw strings -> features) feeding tf2onnx's network."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer

    tfidf = convert_sklearn(
        vectorizer,
        name="tfidf",
        initial_types=[("text", StringTensorType([None, 1]))],
        options={TfidfVectorizer: {"locale": "C.UTF-8", "tokenexp": ONNX_TOKENS}},
        target_opset=OPSET,
    )
    network = export_model(
        model, [len(vectorizer.vocabulary_)], "float32", FEATURES, IO["probability_output"]
    )
    network.ir_version = tfidf.ir_version = min(network.ir_version, tfidf.ir_version)
    align_opsets(tfidf, network)
    merged = onnx.compose.merge_models(tfidf, network, io_map=[(tfidf.graph.output[0].name, FEATURES)])
    onnx.checker.check_model(merged)
    return merged


def align_opsets(first: onnx.ModelProto, second: onnx.ModelProto) -> None:
    """``merge_models`` wants one version per domain: drop the domains a graph declares but never
    uses (tf2onnx declares ai.onnx.ml), then give each shared domain the higher version."""
    for model in (first, second):
        used = {node.domain for node in model.graph.node} | {""}
        kept = [entry for entry in model.opset_import if entry.domain in used or entry.domain == "ai.onnx"]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    versions: dict[str, int] = {}
    for entry in [*first.opset_import, *second.opset_import]:
        versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    for entry in [*first.opset_import, *second.opset_import]:
        entry.version = versions[entry.domain]


@dataclass(frozen=True, slots=True)
class Trained:
    vectorizer: Any
    model: Any
    data: TextData
    manifest: dict[str, Any]
    directory: Path

    def keras_probabilities(self, texts: list[str]) -> np.ndarray:
        """The source frameworks' answer from raw text: scikit-learn's TF-IDF, then Keras."""
        features = self.vectorizer.transform(texts).toarray().astype(np.float32)
        return np.asarray(self.model.predict(features, verbose=0), dtype=np.float64)


def train(options: TrainOptions) -> dict[str, Any]:
    return train_model(options).manifest


def train_model(options: TrainOptions) -> Trained:
    from sklearn.feature_extraction.text import TfidfVectorizer

    progress = Progress(f"train {NAME}", quiet=options.quiet)
    data = load_spam(options, progress)
    train_texts = [e.text for e in data.train]
    vectorizer = TfidfVectorizer(**PARAMETERS["tfidf"]).fit(train_texts)
    width = len(vectorizer.vocabulary_)
    progress(f"TF-IDF: {width} features from {len(train_texts)} training rows; importing TensorFlow")
    tensorflow()
    seed_everything(options.seed)
    model = build_model(width)
    epochs = options.epochs or PARAMETERS["epochs"]
    targets = np.array([data.labels.index(e.label) for e in data.train])
    features = vectorizer.transform(train_texts).toarray().astype(np.float32)
    fit(model, features, targets, epochs=epochs, batch_size=PARAMETERS["batch_size"], progress=progress)
    trained = Trained(vectorizer, model, data, {}, options.out.resolve())
    test_texts = [e.text for e in data.test]
    reference = trained.keras_probabilities(test_texts)
    reference_labels = np.array(data.labels)[np.argmax(reference, axis=1)]
    metrics = classification_metrics(
        [e.label for e in data.test], list(reference_labels), data.labels, "spam"
    )
    progress(f"held-out accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}")
    progress("exporting: skl2onnx TF-IDF + tf2onnx network, merged into one graph")
    # the parity gate and version folder of `maas import`: the path every user takes
    manifest = import_model(
        export_onnx(vectorizer, model),
        name=NAME,
        out=options.out,
        X=test_texts,
        labels=data.labels,
        task=TextClassifier.name,
        io=IO,
        expected=reference,
        metrics=metrics,
        framework={
            **keras_framework("TF-IDF -> Dense(relu) -> Dense(softmax)"),
            "preprocessing": "scikit-learn TfidfVectorizer, converted by skl2onnx, merged with onnx.compose",
        },
        provenance={
            **data.provenance,
            "rows_train": len(data.train),
            "rows_test": len(data.test),
            "parameters": {**PARAMETERS, "epochs": epochs},
            "seed": options.seed,
            "vocabulary_size": width,
        },
        progress=progress,
    )
    return Trained(vectorizer, model, data, manifest, options.out.resolve())
