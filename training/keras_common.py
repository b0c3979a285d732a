"""What the Keras trainers share: TensorFlow set up quietly and reproducibly, epoch progress,
and the export of a ``tf.function`` with an explicit input signature through tf2onnx.

``tf2onnx.convert.from_keras`` fails with Keras 3 (``KeyError: 'keras_tensor_…'``); converting
a ``tf.function`` that calls the trained layers works and matches Keras to about 1e-7. The
function returns a dict, so the ONNX outputs carry those names. What is written, and only after
the parity gate, is decided by ``training.importer.import_model``, the path of ``maas import``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
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


def compiled(layers: Sequence[Any], *, learning_rate: float, loss: Any, metrics: Sequence[str] = ()) -> Any:
    """A Keras ``Sequential`` of ``layers``, compiled with Adam."""
    import keras

    model = keras.Sequential(list(layers))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=list(metrics))
    return model


def fit(model: Any, x: Any, y: Any, *, epochs: int, batch_size: int, progress: Progress) -> None:
    """Shuffled mini-batches (the order follows the seed), one progress line per epoch."""
    model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[epoch_progress(progress, epochs)],
    )


def export_model(
    model: Any, shape: Sequence[int], dtype: str, input_name: str, output_name: str
) -> onnx.ModelProto:
    """ONNX of a one-input Keras model: ``input_name`` (batch, *shape) -> ``output_name``.

    Captured constants are bound: tf2onnx makes a tensor the function captures (an adapted
    ``Normalization`` layer's mean and variance) a graph input; here it becomes the initializer it
    is, and a capture tf2onnx folded away is dropped (onnxruntime would warn about it)."""
    from onnx import numpy_helper

    tf = tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([None, *shape], tf.as_dtype(dtype), name=input_name)])
    def serve(inputs: Any) -> dict[str, Any]:
        return {output_name: model(inputs, training=False)}

    onx = export_function(serve)
    captured = {
        internal.name: external
        for external, internal in serve.get_concrete_function().graph.captures
        if hasattr(external, "numpy")
    }
    for graph_input in list(onx.graph.input):
        if graph_input.name in captured:
            value = np.asarray(captured[graph_input.name].numpy())
            onx.graph.initializer.append(numpy_helper.from_array(value, graph_input.name))
    onx = without_initializer_inputs(onx)
    used = {name for node in onx.graph.node for name in node.input}
    for init in [init for init in onx.graph.initializer if init.name not in used]:
        onx.graph.initializer.remove(init)
    return onx


def without_initializer_inputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Graph inputs that are initializers too (tf2onnx lists a Normalization layer's constants so)
    are constants, not request tensors: dropped from the inputs, kept as initializers."""
    constants = {init.name for init in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in constants]
    if len(kept) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(kept)
    return model


def export_function(function: Any, opset: int = OPSET) -> onnx.ModelProto:
    """ONNX of a ``tf.function`` with an input signature (the names of its inputs and outputs)."""
    tensorflow()
    import tf2onnx

    model, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    return model


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
