"""digits_cnn: Keras ``Conv2D -> MaxPooling2D -> Conv2D -> MaxPooling2D -> Dense(softmax)``.

Trained on scikit-learn's bundled 8x8 handwritten digits (no download), or on CIFAR-10 with
``--dataset cifar10`` (``keras.datasets.cifar10``, the classic example of this task) when it can
be downloaded. Images are scaled to [0, 1] before the network, and the served signature takes
them in that range: ``io.value_range`` tells the runtime what to accept and how to scale PNGs.
The fitted network goes through ``maas import``'s own path (``training.importer.import_model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import TrainingError
from maas.core.tasks.images import ImageClassifier
from training.data import file_sha256
from training.importer import import_model
from training.keras_common import compiled, fit, keras_framework, seed_everything, tensorflow
from training.options import TrainOptions
from training.progress import Progress
from training.text import classification_metrics

NAME = "digits_cnn"
PARAMETERS: dict[str, Any] = {
    "filters": [16, 32],
    "kernel": 3,
    "dense_units": 64,
    "batch_size": 32,
    "learning_rate": 0.003,
    "epochs": 15,
    "test_fraction": 0.2,
}
IO = {"input": "image", "probability_output": "probabilities", "value_range": [0.0, 1.0]}
CIFAR10_LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass(frozen=True, slots=True)
class ImageData:
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    labels: list[str]
    provenance: dict[str, Any]


def _split(x: np.ndarray, y: np.ndarray, seed: int, limit: int | None) -> tuple[np.ndarray, ...]:
    """Stratified, reproducible: the same seed gives the same held-out images."""
    from sklearn.model_selection import train_test_split

    if limit is not None and limit < len(y):
        x, _, y, _ = train_test_split(x, y, train_size=limit, stratify=y, random_state=seed)
    split: tuple[np.ndarray, ...] = tuple(
        train_test_split(x, y, test_size=PARAMETERS["test_fraction"], stratify=y, random_state=seed)
    )
    return split


def load_images(options: TrainOptions, progress: Progress) -> ImageData:
    dataset = options.dataset or "digits"
    if dataset == "digits":
        if options.data is not None:
            progress(f"loading {options.data} (arrays x: N×H×W[×C] in [0, 1], y: labels)")
            with np.load(options.data) as arrays:
                x, y = arrays["x"].astype(np.float32), arrays["y"].astype(np.int64)
            provenance = {
                "dataset": "npz",
                "data_file": options.data.name,
                "data_sha256": file_sha256(options.data),
            }
        else:
            from sklearn.datasets import load_digits

            progress("loading scikit-learn's bundled 8x8 digits")
            bunch = load_digits()
            x, y = (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)
            provenance = {"dataset": "sklearn.datasets.load_digits", "pixel_scale": "value / 16"}
        labels = [str(label) for label in range(int(y.max()) + 1)]
    elif dataset == "cifar10":
        x, y = _load_cifar10(progress)
        labels, provenance = (
            CIFAR10_LABELS,
            {"dataset": "keras.datasets.cifar10", "pixel_scale": "value / 255"},
        )
    else:
        raise TrainingError(f"unknown dataset {dataset!r}: use digits or cifar10")
    if x.ndim == 3:
        x = x[..., None]
    train_x, test_x, train_y, test_y = _split(x, y, options.seed, options.limit)
    provenance |= {"rows_train": len(train_y), "rows_test": len(test_y), "split_seed": options.seed}
    return ImageData(dataset, train_x, train_y, test_x, test_y, labels, provenance)


def _load_cifar10(progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    progress("fetching CIFAR-10 with keras.datasets.cifar10 (downloads once into ~/.keras)")
    tensorflow()
    import keras

    try:
        (train_x, train_y), (test_x, test_y) = keras.datasets.cifar10.load_data()
    except Exception as error:  # URLError, timeouts, HTTP errors: all mean "not reachable"
        reason = " ".join(str(error).split())[:200]
        raise TrainingError(f"CIFAR-10 could not be downloaded ({type(error).__name__}: {reason})") from None
    x = np.concatenate([train_x, test_x]).astype(np.float32) / 255.0
    return x, np.concatenate([train_y, test_y]).reshape(-1).astype(np.int64)


def build_model(shape: tuple[int, ...], classes: int) -> Any:
    import keras

    first, second = PARAMETERS["filters"]
    kernel = PARAMETERS["kernel"]
    return compiled(
        [
            keras.Input(shape),
            keras.layers.Conv2D(first, kernel, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(second, kernel, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(PARAMETERS["dense_units"], activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ],
        learning_rate=PARAMETERS["learning_rate"],
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


@dataclass(frozen=True, slots=True)
class Trained:
    model: Any
    data: ImageData
    manifest: dict[str, Any]
    directory: Path


def train(options: TrainOptions) -> dict[str, Any]:
    return train_model(options).manifest


def train_model(options: TrainOptions) -> Trained:
    progress = Progress(f"train {NAME}", quiet=options.quiet)
    data = load_images(options, progress)
    shape = tuple(int(d) for d in data.train_x.shape[1:])
    progress(
        f"{len(data.train_y)} training images {list(shape)}, {len(data.test_y)} held out; importing TensorFlow"
    )
    tensorflow()
    seed_everything(options.seed)
    model = build_model(shape, len(data.labels))
    epochs = options.epochs or PARAMETERS["epochs"]
    fit(
        model,
        data.train_x,
        data.train_y,
        epochs=epochs,
        batch_size=PARAMETERS["batch_size"],
        progress=progress,
    )
    reference = model.predict(data.test_x, verbose=0).astype(np.float64)
    names = np.array(data.labels)
    reference_labels = names[np.argmax(reference, axis=1)]
    metrics = classification_metrics(list(names[data.test_y]), list(reference_labels), data.labels, None)
    progress(f"held-out accuracy {metrics['accuracy']:.4f}, macro F1 {metrics['f1']:.4f}")
    progress("exporting to ONNX with tf2onnx")
    # the export, parity gate and version folder of `maas import`: the path every user takes
    manifest = import_model(
        model,
        name=NAME,
        out=options.out,
        X=data.test_x,  # nested arrays, validated by the runtime as a request's would be
        labels=data.labels,
        task=ImageClassifier.name,
        input_name=IO["input"],
        metrics=metrics,
        framework=keras_framework(
            "Conv2D -> MaxPooling2D -> Conv2D -> MaxPooling2D -> Dense -> Dense(softmax)"
        ),
        provenance={**data.provenance, "parameters": {**PARAMETERS, "epochs": epochs}, "seed": options.seed},
        progress=progress,
    )
    return Trained(model, data, manifest, options.out.resolve())
