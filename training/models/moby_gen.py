"""moby_gen: a character-level GRU language model of *Moby Dick*, served as text generation.

Why recurrent and not a small transformer: a GRU's whole context is one state vector, so the
exported ONNX graph computes one step, (token, state) -> (logits, new state), and every new
token costs the same ``session.run`` however long the text is; the request's own memory is
``num_return_sequences x state_size`` floats. A transformer needs a key/value cache that grows
with the text (each step attends over all of it, and the cache must be fed and returned through
``session.run``), and at this size (a novel, two CPU cores, seconds of training in tests) it
does not model characters better than a GRU.

Training uses the full-sequence Keras model; the export is a ``tf.function`` over the same
trained layers for one step. The graph, its vocabulary and Keras' answers go to ``maas import``'s
own path (``training.importer.import_model``): its parity gate compares Keras' greedy decoding
(its own layers stepping in TensorFlow) with the runtime's, and the full-sequence Keras model's
logits over prompt + continuation with the step graph run token by token through the runtime.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import TrainingError
from maas.core.tasks.generation import TextGenerator
from training.data import PROJECT_ROOT, file_sha256
from training.importer import import_model
from training.keras_common import compiled, export_function, fit, keras_framework, seed_everything, tensorflow
from training.options import TrainOptions
from training.progress import Progress

NAME = "moby_gen"
MOBY_DICK = PROJECT_ROOT / "data" / "moby_dick.txt.gz"
VOCABULARY_FILE = "vocabulary.json"
GREEDY_PROMPT = "Call me Ishmael"
GREEDY_TOKENS = 160
PARAMETERS: dict[str, Any] = {
    "embedding_dim": 32,
    "gru_units": 192,
    "window": 100,
    "batch_size": 64,
    "learning_rate": 0.004,
    "validation_fraction": 0.05,
    "epochs": 5,
}
IO: dict[str, Any] = {
    "vocabulary": VOCABULARY_FILE,
    "token_input": "token",
    "state_input": "state",
    "logits_output": "logits",
    "state_output": "state_out",
    "max_new_tokens": 512,
    "max_prompt_chars": 1000,
    "max_return_sequences": 8,
}


def read_text(path: Path) -> str:
    if not path.is_file():
        raise TrainingError(f"data file {path} does not exist (see data/README.md for where it comes from)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return str(handle.read())


def windows(ids: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive, non-overlapping windows: inputs, and the same shifted by one as targets."""
    count = (len(ids) - 1) // length
    x = ids[: count * length].reshape(count, length)
    y = ids[1 : count * length + 1].reshape(count, length)
    return x, y


def build_model(vocabulary: int) -> Any:
    import keras

    return compiled(
        [
            keras.Input((None,), dtype="int32"),
            keras.layers.Embedding(vocabulary, PARAMETERS["embedding_dim"]),
            keras.layers.GRU(PARAMETERS["gru_units"], return_sequences=True),
            keras.layers.Dense(vocabulary),
        ],
        learning_rate=PARAMETERS["learning_rate"],
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def export_onnx(model: Any) -> Any:
    """The one-step graph over the trained layers: (token, state) -> (logits, state_out)."""
    tf = tensorflow()
    embedding, gru, dense = model.layers
    units = PARAMETERS["gru_units"]
    signature = [
        tf.TensorSpec([None], tf.int32, name="token"),
        tf.TensorSpec([None, units], tf.float32, name="state"),
    ]

    @tf.function(input_signature=signature)
    def step(token: Any, state: Any) -> dict[str, Any]:
        output, new_state = gru.cell(embedding(token), [state], training=False)
        if isinstance(new_state, list | tuple):
            new_state = new_state[0]
        return {"logits": dense(output), "state_out": new_state}

    return export_function(step)


def keras_greedy(model: Any, prompt_ids: list[int], tokens: int) -> list[int]:
    """Keras' greedy decoding: the trained Embedding, GRU cell and Dense layers, one step at a time."""
    embedding, gru, dense = model.layers
    state: Any = np.zeros((1, PARAMETERS["gru_units"]), dtype=np.float32)
    produced: list[int] = []
    token = prompt_ids[0]
    for position in range(len(prompt_ids) - 1 + tokens):
        output, states = gru.cell(embedding(np.asarray([token], dtype=np.int32)), [state], training=False)
        state = states[0] if isinstance(states, list | tuple) else states
        if position + 1 < len(prompt_ids):
            token = prompt_ids[position + 1]
        else:
            token = int(np.argmax(np.asarray(dense(output))[0]))
            produced.append(token)
    return produced


@dataclass(frozen=True, slots=True)
class Trained:
    model: Any
    characters: list[str]
    manifest: dict[str, Any]
    directory: Path

    def encode(self, text: str) -> list[int]:
        index = {ch: i for i, ch in enumerate(self.characters)}
        return [index[ch] for ch in text]

    def keras_greedy_text(self, prompt: str, tokens: int) -> str:
        return "".join(self.characters[i] for i in keras_greedy(self.model, self.encode(prompt), tokens))


def train(options: TrainOptions) -> dict[str, Any]:
    return train_model(options).manifest


def train_model(options: TrainOptions) -> Trained:
    progress = Progress(f"train {NAME}", quiet=options.quiet)
    path = options.data or MOBY_DICK
    progress(f"loading {path}")
    full = read_text(path)
    characters = sorted(set(full))
    text = full[: options.limit] if options.limit else full
    cut = int(len(text) * (1 - PARAMETERS["validation_fraction"]))
    index = {ch: i for i, ch in enumerate(characters)}
    ids = np.array([index[ch] for ch in text], dtype=np.int32)
    train_x, train_y = windows(ids[:cut], PARAMETERS["window"])
    valid_x, valid_y = windows(ids[cut:], PARAMETERS["window"])
    if not len(train_x) or not len(valid_x):
        raise TrainingError(f"{len(text)} characters are too few to train on; use a larger --limit")
    progress(
        f"{len(characters)} characters; {len(train_x)} training and {len(valid_x)} validation windows "
        f"of {PARAMETERS['window']}; importing TensorFlow"
    )
    tensorflow()
    seed_everything(options.seed)
    model = build_model(len(characters))
    epochs = options.epochs or PARAMETERS["epochs"]
    fit(model, train_x, train_y, epochs=epochs, batch_size=PARAMETERS["batch_size"], progress=progress)
    loss = float(model.evaluate(valid_x, valid_y, batch_size=PARAMETERS["batch_size"], verbose=0))
    metrics = {
        "perplexity": round(float(np.exp(loss)), 4),
        "cross_entropy_nats": round(loss, 6),
        "validation_characters": int(valid_x.size),
    }
    progress(f"validation perplexity {metrics['perplexity']:.3f} per character")
    trained = Trained(model, characters, {}, options.out.resolve())
    # Keras' answers: its greedy continuation (its layers stepping), and the full-sequence model's
    # logits after each character of prompt + continuation
    continuation = trained.keras_greedy_text(GREEDY_PROMPT, GREEDY_TOKENS)
    ids = np.asarray([trained.encode(GREEDY_PROMPT + continuation)], dtype=np.int32)
    logits = np.asarray(model(ids, training=False), dtype=np.float64)[0]
    progress("exporting the one-step graph to ONNX with tf2onnx")
    vocabulary = {"characters": characters, "state_size": PARAMETERS["gru_units"]}
    # the parity gate, artifacts and version folder of `maas import`: the path every user takes
    manifest = import_model(
        export_onnx(model),
        name=NAME,
        out=options.out,
        X=[GREEDY_PROMPT],
        task=TextGenerator.name,
        io=IO,
        artifacts={VOCABULARY_FILE: json.dumps(vocabulary, ensure_ascii=False).encode("utf-8")},
        expected={"text": [continuation], "logits": [logits]},
        metrics=metrics,
        framework=keras_framework("Embedding -> GRU -> Dense (logits); exported as one step"),
        provenance={
            "dataset": "moby_dick",
            "data_file": path.name,
            "data_sha256": file_sha256(path),
            "characters_used": len(text),
            "split": f"first {cut} characters train, the rest validation",
            "parameters": {**PARAMETERS, "epochs": epochs},
            "seed": options.seed,
        },
        progress=progress,
    )
    return Trained(model, characters, manifest, options.out.resolve())
