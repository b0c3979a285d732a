"""What the Keras trainers share: TensorFlow set up quietly and reproducibly, epoch progress,
and the export of a ``tf.function`` with an explicit input signature through tf2onnx.

``tf2onnx.convert.from_keras`` fails with Keras 3 (``KeyError: 'keras_tensor_…'``); converting
a ``tf.function`` that calls the trained layers works and matches Keras to about 1e-7. The
function returns a dict, so the ONNX outputs carry those names. What is written, and only after
the parity gate, is decided by ``training.export.write_version`` like for every other trainer.
"""

from __future__ import annotations

import os
from typing import Any

import onnx

from training.progress import Progress

OPSET = 17


def tensorflow() -> Any:
    """Import TensorFlow (seconds, so only when a Keras model is trained), quiet and on the CPU."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import tensorflow as tf

    return tf


def seed_everything(seed: int) -> None:
    """Same seed, same weights and same batches: a retrain reproduces a version."""
    import keras

    keras.utils.set_random_seed(seed)


def epoch_progress(progress: Progress, epochs: int) -> Any:
    """A Keras callback that prints one progress line per epoch with its figures."""
    import keras

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            figures = ", ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()))
            progress(f"epoch {epoch + 1}/{epochs}: {figures}")

    return EpochProgress()


def export_function(function: Any, opset: int = OPSET) -> onnx.ModelProto:
    """ONNX of a ``tf.function`` with an input signature (the names of its inputs and outputs)."""
    tensorflow()
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    return model


def opsets_of(model: onnx.ModelProto) -> dict[str, int]:
    return {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}


def keras_framework(architecture: str) -> dict[str, Any]:
    """The manifest's ``framework``: versions of everything that made the graph."""
    import keras
    import tf2onnx

    tf = tensorflow()
    return {
        "name": "keras",
        "version": keras.__version__,
        "backend": f"tensorflow {tf.__version__}",
        "converter": f"tf2onnx {tf2onnx.__version__} (from_function, explicit input signature)",
        "architecture": architecture,
    }
