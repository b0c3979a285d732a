"""spam_lstm: Keras ``Embedding -> LSTM -> Dense(sigmoid)`` on the SpamAssassin corpus.

The graph takes token ids; the tokeniser (vocabulary and sequence length) is an artifact of the
version, ``tokenizer.json``, applied by the layer's ``maas.sequences.Tokenizer``. The trainer
encodes its data with that same class, and hands the exported graph, the tokeniser and Keras'
answers from raw text to ``maas import``'s own path (``training.importer.import_model``), whose
parity gate compares them with the served path (the runtime's task adapter on the written graph).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import TrainingError
from maas.core.tasks.sequences import RESERVED, SequenceClassifier, Tokenizer, binary_probabilities
from training.importer import import_model
from training.keras_common import compiled, export_model, fit, keras_framework, seed_everything, tensorflow
from training.models.spam_nb import TextData, load_data
from training.options import TrainOptions
from training.progress import Progress
from training.text import classification_metrics

NAME = "spam_lstm"
TOKENIZER_FILE = "tokenizer.json"
PARAMETERS: dict[str, Any] = {
    "vocabulary_size": 10000,
    "min_count": 2,
    "sequence_length": 200,
    "embedding_dim": 32,
    "lstm_units": 32,
    "batch_size": 64,
    "learning_rate": 0.003,
    "epochs": 3,
}
IO = {"tokenizer": TOKENIZER_FILE, "input": "tokens", "probability_output": "probability"}


def load_spam(options: TrainOptions, progress: Progress) -> TextData:
    data = load_data(options, progress)
    if data.labels != ["ham", "spam"]:
        raise TrainingError(f"{NAME} is a binary ham/spam model; dataset {data.name!r} is not")
    return data


def build_tokenizer(texts: list[str]) -> Tokenizer:
    counts = Counter(word for text in texts for word in Tokenizer.words(text))
    size = PARAMETERS["vocabulary_size"] - len(RESERVED)
    frequent = [
        w for w, n in sorted(counts.items(), key=lambda i: (-i[1], i[0])) if n >= PARAMETERS["min_count"]
    ]
    return Tokenizer((*RESERVED, *frequent[:size]), PARAMETERS["sequence_length"])


def build_model(vocabulary: int) -> Any:
    import keras

    return compiled(
        [
            keras.Input((PARAMETERS["sequence_length"],), dtype="int32"),
            keras.layers.Embedding(vocabulary, PARAMETERS["embedding_dim"]),
            keras.layers.LSTM(PARAMETERS["lstm_units"]),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        learning_rate=PARAMETERS["learning_rate"],
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )


def export_onnx(model: Any) -> Any:
    return export_model(
        model, [PARAMETERS["sequence_length"]], "int32", IO["input"], IO["probability_output"]
    )


@dataclass(frozen=True, slots=True)
class Trained:
    model: Any
    tokenizer: Tokenizer
    data: TextData
    manifest: dict[str, Any]
    directory: Path

    def keras_probabilities(self, texts: list[str]) -> np.ndarray:
        """The source framework's answer from raw text: Keras fed by the version's tokeniser."""
        return binary_probabilities(self.model.predict(self.tokenizer.encode(texts), verbose=0))


def train(options: TrainOptions) -> dict[str, Any]:
    return train_model(options).manifest


def train_model(options: TrainOptions) -> Trained:
    progress = Progress(f"train {NAME}", quiet=options.quiet)
    data = load_spam(options, progress)
    progress(f"{len(data.train)} training rows, {len(data.test)} held-out rows; importing TensorFlow")
    tensorflow()
    seed_everything(options.seed)
    train_texts = [e.text for e in data.train]
    tokenizer = build_tokenizer(train_texts)
    progress(f"tokeniser: {len(tokenizer.vocabulary)} words, sequences of {tokenizer.sequence_length}")
    model = build_model(len(tokenizer.vocabulary))
    epochs = options.epochs or PARAMETERS["epochs"]
    targets = np.array([e.label == "spam" for e in data.train], dtype=np.float32)
    fit(
        model,
        tokenizer.encode(train_texts),
        targets,
        epochs=epochs,
        batch_size=PARAMETERS["batch_size"],
        progress=progress,
    )
    test_texts = [e.text for e in data.test]
    trained = Trained(model, tokenizer, data, {}, options.out.resolve())
    reference = trained.keras_probabilities(test_texts)
    reference_labels = np.array(data.labels)[np.argmax(reference, axis=1)]
    metrics = classification_metrics(
        [e.label for e in data.test], list(reference_labels), data.labels, "spam"
    )
    progress(f"held-out accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}")
    progress("exporting to ONNX with tf2onnx")
    # the parity gate, artifacts and version folder of `maas import`: the path every user takes
    manifest = import_model(
        export_onnx(model),
        name=NAME,
        out=options.out,
        X=test_texts,  # raw text: the runtime's tokeniser encodes it, as in serving
        labels=data.labels,
        task=SequenceClassifier.name,
        io=IO,
        artifacts={TOKENIZER_FILE: tokenizer.to_json()},
        expected=reference,
        metrics=metrics,
        framework=keras_framework("Embedding -> LSTM -> Dense(sigmoid)"),
        provenance={
            **data.provenance,
            "rows_train": len(data.train),
            "rows_test": len(data.test),
            "parameters": {**PARAMETERS, "epochs": epochs},
            "seed": options.seed,
        },
        progress=progress,
    )
    return Trained(model, tokenizer, data, manifest, options.out.resolve())
