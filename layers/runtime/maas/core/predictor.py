"""An onnxruntime session with explicit thread settings, checked against its own signature."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from maas.core.signature import TensorSpec


def session_options(threads: int) -> ort.SessionOptions:
    """Threads are explicit: a Lambda function under 1,769 MB has one vCPU, and oversubscribing it costs."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


class Predictor:
    """Runs one ONNX model; built once per execution environment and reused while warm."""

    def __init__(self, model_path: Path, *, threads: int = 1) -> None:
        self.model_path = model_path
        self.session = ort.InferenceSession(
            str(model_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        self.inputs = [TensorSpec.from_onnx(i.name, i.type, i.shape) for i in self.session.get_inputs()]
        self.outputs = [TensorSpec.from_onnx(o.name, o.type, o.shape) for o in self.session.get_outputs()]

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    def run(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = list(outputs) if outputs else [spec.name for spec in self.outputs]
        results = self.session.run(names, dict(feeds))
        return dict(zip(names, results, strict=True))
