"""An onnxruntime session with explicit thread settings, checked against its own signature."""

from __future__ import annotations

import threading
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
    """Runs one ONNX model; built once per execution environment and reused while warm.

    ``in_background``: the session is opened on a thread of its own, and whatever needs it
    (``session``, ``inputs``, ``outputs``, ``run``, ``wait``) waits for it. onnxruntime releases
    the GIL while it opens a session, so a loader can parse the tokenizer meanwhile (which holds
    it): Gemma 3 270M's lossless-mixed graph (0.3-0.7 s to open) and its tokenizer (0.7-1.0 s)
    took 1.11 s together against 1.68 s one after the other. A failure to open is raised where
    the session is first needed, as it would have been here.
    """

    def __init__(self, model_path: Path, *, threads: int = 1, in_background: bool = False) -> None:
        self.model_path = model_path
        self._threads = threads
        self._opened: tuple[ort.InferenceSession, list[TensorSpec], list[TensorSpec]] | None = None
        self._failure: BaseException | None = None
        self._opening: threading.Thread | None = None
        if in_background:
            self._opening = threading.Thread(target=self._open_or_keep_failure, name="maas-open-session")
            self._opening.start()
        else:
            self._open()

    def _open(self) -> None:
        session = ort.InferenceSession(
            str(self.model_path),
            sess_options=session_options(self._threads),
            providers=["CPUExecutionProvider"],
        )
        inputs = [TensorSpec.from_onnx(i.name, i.type, i.shape) for i in session.get_inputs()]
        outputs = [TensorSpec.from_onnx(o.name, o.type, o.shape) for o in session.get_outputs()]
        self._opened = (session, inputs, outputs)

    def _open_or_keep_failure(self) -> None:
        try:
            self._open()
        except BaseException as error:  # raised again, by wait(), on the thread that needs it
            self._failure = error

    def wait(self) -> None:
        """Return once the session is open; raise what opening it raised."""
        if self._opening is not None:
            self._opening.join()
        if self._failure is not None:
            raise self._failure

    def _ready(self) -> tuple[ort.InferenceSession, list[TensorSpec], list[TensorSpec]]:
        if self._opened is None:
            self.wait()
        assert self._opened is not None  # wait() returned: opened, or it raised
        return self._opened

    @property
    def session(self) -> ort.InferenceSession:
        return self._ready()[0]

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._ready()[1]

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._ready()[2]

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    def run(
        self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = list(outputs) if outputs else [spec.name for spec in self.outputs]
        results = self.session.run(names, dict(feeds))
        return dict(zip(names, results, strict=True))
