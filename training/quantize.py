"""Quantisation, an option of the one export path (``--quantize int8``), behind its own gate.

``training.export.write_version`` quantises the exported fp32 graph after the fp32 graph has passed
its parity gate, then runs the candidate's quantisation gate on the result; a variant that misses
is refused like any parity failure. Which recipe ``int8`` means is decided here, once, from
measurements on all-MiniLM-L6-v2 (held-out SpamAssassin subjects against sentence-transformers,
one thread on this AVX2 CPU without VNNI, batch 32):

- ``quantize_dynamic`` per-tensor QInt8: min cosine 0.894 (the default silently loses quality);
- ``quantize_dynamic`` per channel (``int8-dynamic`` here): int8 kernels (U8S8) at about twice
  fp32's speed, but min cosine 0.972 and top-5 overlap 0.86: a BERT's hidden states have a few
  outlier channels, and activations are quantised per tensor. The gate refuses it;
- weight-only 8-bit blocks (``int8-blocks``: ``MatMulNBits``): min cosine 0.997, but slower than
  fp32 here (int8 compute has no fast kernel without VNNI, fp32 compute dequantises every run);
- ``int8``: SmoothQuant (Xiao et al., 2022) first, then ``quantize_dynamic`` per channel. Each
  weight MatMul's input is divided per channel by ``s = max|x|^0.8 / max|w|^0.2`` (one ``Mul``)
  and its weight rows multiplied by ``s``: the same product, with the outliers moved into the
  per-channel weights. That alone reaches min cosine 0.986; the MatMuls whose quantisation errs
  most on the calibration texts then stay fp32, fewest first, until the gate passes (MiniLM:
  one of 36, layer 0's FFN output, for 0.992 and overlap 0.92). Small embedding tables
  (positions, segments) stay fp32: they cost accuracy and save nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import TrainingError
from maas.core.predictor import Predictor
from training.export import ParityReport

SCHEMES = ("int8", "int8-dynamic", "int8-blocks")
BLOCK_SIZE = 32
#: SmoothQuant's migration strength: 0.5 left MiniLM at 0.940, 0.7 at 0.985, 0.8 at 0.986, 0.9 at 0.978
SMOOTHING_ALPHA = 0.8
#: how many of the most erring MatMuls stay fp32, tried in turn until the gate passes
FP32_STEPS = (0, 1, 2, 4, 8)
#: an embedding table (Gather) under this many values stays fp32: quantising it saves nothing
SMALL_TABLE = 1_000_000
#: calibration rows (tokens) kept per MatMul input to rank the MatMuls by quantisation error
RANK_ROWS = 2048

Feeds = dict[str, np.ndarray]
Gate = Callable[[Predictor], ParityReport]


@dataclass(frozen=True, slots=True)
class Quantised:
    """What a recipe wrote: its description for the manifest, and the gate's last report on it."""

    description: dict[str, Any]
    report: ParityReport


@contextmanager
def _quiet_quantisation() -> Iterator[None]:
    """onnxruntime.quantization logs "consider pre-processing" warnings, and its MatMulNBits module
    calls ``logging.basicConfig(level=INFO)`` when imported: both are undone, or every library's
    INFO lines (botocore's endpoint lookups...) print from then on."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for handler in root.handlers[len(handlers) :]:
            root.removeHandler(handler)
        root.setLevel(level)


def _dynamic(source: Path, target: Path, exclude: Sequence[str] = ()) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_quantisation():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            nodes_to_exclude=list(exclude),
        )


def _gated(target: Path, gate: Gate, description: dict[str, Any]) -> Quantised:
    return Quantised(description, gate(Predictor(target)))


def int8_blocks(source: Path, target: Path, gate: Gate, calibration: Sequence[Feeds]) -> Quantised:
    """Every MatMul weight in symmetric 8-bit blocks (int8 compute), then Gather tables in int8."""
    import onnx

    with _quiet_quantisation():
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(
            onnx.load(str(source)), bits=8, block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=4
        )
        quantizer.process()
        blocks = target.with_name(f".{target.name}.blocks")
        quantizer.model.save_model_to_file(str(blocks), False)
        try:
            quantize_dynamic(
                str(blocks),
                str(target),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["Gather"],
            )
        finally:
            blocks.unlink(missing_ok=True)
    return _gated(
        target,
        gate,
        {
            "scheme": "int8-blocks",
            "method": "onnxruntime MatMulNBits (bits=8, symmetric blocks) + quantize_dynamic(Gather, per_channel)",
            "block_size": BLOCK_SIZE,
            "accuracy_level": 4,
        },
    )


def int8_dynamic(source: Path, target: Path, gate: Gate, calibration: Sequence[Feeds]) -> Quantised:
    """``quantize_dynamic`` per channel: every MatMul and Gather, activations per tensor."""
    _dynamic(source, target)
    return _gated(
        target,
        gate,
        {"scheme": "int8-dynamic", "method": "onnxruntime quantize_dynamic (QInt8, per_channel)"},
    )


def int8_smoothed(source: Path, target: Path, gate: Gate, calibration: Sequence[Feeds]) -> Quantised:
    """SmoothQuant on the calibration feeds, then ``quantize_dynamic`` per channel; the MatMuls that
    err most stay fp32, ``FP32_STEPS`` at a time, until the gate passes (the last try is returned
    when none does, for the caller to refuse). Without calibration feeds: no smoothing, one try."""
    import onnx

    model = onnx.load(str(source))
    weights = weight_matmuls(model)
    ranked: list[str] = []
    if calibration:
        inputs = _matmul_inputs(model, weights, calibration)
        scales = {
            name: _smoothing(inputs[name], [_initializer(model, n.input[1]) for n in nodes])
            for name, nodes in weights.items()
        }
        smooth(model, weights, scales)
        ranked = _ranked_by_error(model, weights, inputs, scales)
    tables = {init.name: init for init in model.graph.initializer}
    small_tables = [
        node.name
        for node in model.graph.node
        if node.op_type == "Gather"
        and node.input[0] in tables
        and int(np.prod(tables[node.input[0]].dims)) < SMALL_TABLE
    ]
    smoothed = target.with_name(f".{target.name}.smoothed")
    onnx.save(model, str(smoothed))
    attempts: list[dict[str, Any]] = []
    try:
        result: Quantised | None = None
        for count in (step for step in FP32_STEPS if step <= len(ranked)):
            kept = ranked[:count]
            _dynamic(smoothed, target, [*kept, *small_tables])
            result = _gated(
                target,
                gate,
                {
                    "scheme": "int8",
                    "method": ("SmoothQuant, then " if calibration else "")
                    + "onnxruntime quantize_dynamic (QInt8 weights per channel, activations per tensor)",
                    "smoothing_alpha": SMOOTHING_ALPHA if calibration else None,
                    "calibration_batches": len(calibration),
                    "matmuls_int8": sum(len(nodes) for nodes in weights.values()) - len(kept),
                    "matmuls_fp32": kept,
                    "tables_fp32": small_tables,
                    "attempts": attempts,
                },
            )
            attempts.append(
                {
                    "matmuls_fp32": count,
                    "passed": result.report.passed,
                    "max_diff": result.report.max_abs_diff,
                }
            )
            if result.report.passed:
                break
        assert result is not None
        return result
    finally:
        smoothed.unlink(missing_ok=True)


def _initializer(model: Any, name: str) -> np.ndarray:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return np.asarray(numpy_helper.to_array(init))
    raise KeyError(name)


def weight_matmuls(model: Any) -> dict[str, list[Any]]:
    """MatMul nodes with a 2-D constant weight, grouped by the activation they share (Q, K, V)."""
    constants = {init.name: init for init in model.graph.initializer if len(init.dims) == 2}
    groups: dict[str, list[Any]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in constants and node.input[0] not in constants:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def _matmul_inputs(
    model: Any, weights: dict[str, list[Any]], calibration: Sequence[Feeds]
) -> dict[str, np.ndarray]:
    """Each weight MatMul's input on the calibration feeds, as (tokens, channels) float32 rows."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    for name in weights:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = list(weights)
    taken = {graph_input.name for graph_input in session.get_inputs()}
    collected: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for feeds in calibration:
        graph_feeds = {name: value for name, value in feeds.items() if name in taken}
        for name, value in zip(names, session.run(names, graph_feeds), strict=True):
            collected[name].append(value.reshape(-1, value.shape[-1]))
    return {name: np.concatenate(parts) for name, parts in collected.items()}


def _smoothing(activations: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    """SmoothQuant's per-input-channel scale for one activation and the weights it feeds."""
    a = np.maximum(np.abs(activations).max(axis=0), 1e-5)
    w = np.maximum(np.max([np.abs(m).max(axis=1) for m in matrices], axis=0), 1e-5)
    return np.maximum(a**SMOOTHING_ALPHA / w ** (1.0 - SMOOTHING_ALPHA), 1e-5).astype(np.float32)


def smooth(model: Any, weights: dict[str, list[Any]], scales: dict[str, np.ndarray]) -> None:
    """Divide each shared activation by its scale (a ``Mul``) and scale the weight rows by it."""
    from onnx import helper, numpy_helper

    by_name = {init.name: init for init in model.graph.initializer}
    added = []
    for index, (activation, nodes) in enumerate(weights.items()):
        scale = scales[activation]
        for node in nodes:
            matrix = numpy_helper.to_array(by_name[node.input[1]])
            by_name[node.input[1]].CopyFrom(
                numpy_helper.from_array((matrix * scale[:, None]).astype(np.float32), node.input[1])
            )
        inverse, smoothed = f"smoothquant_{index}_inverse", f"smoothquant_{index}_input"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        added.append(helper.make_node("Mul", [activation, inverse], [smoothed], name=f"smoothquant_{index}"))
        for node in nodes:
            node.input[0] = smoothed
    _insert_in_order(model, added)


def _insert_in_order(model: Any, added: list[Any]) -> None:
    """The graph's nodes with ``added``, topologically sorted (ONNX requires it)."""
    available = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    ordered, pending = [], [*model.graph.node, *added]
    while pending:
        waiting = []
        for node in pending:
            if all(name in available for name in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                waiting.append(node)
        if len(waiting) == len(pending):
            raise TrainingError("the graph is not a DAG: smoothing cannot place its Mul nodes")
        pending = waiting
    del model.graph.node[:]
    model.graph.node.extend(ordered)


def _ranked_by_error(
    model: Any, weights: dict[str, list[Any]], inputs: dict[str, np.ndarray], scales: dict[str, np.ndarray]
) -> list[str]:
    """MatMul names, the largest relative error of their int8 product first (simulated on the
    smoothed calibration inputs: activations uint8 per tensor, weights int8 per column)."""
    errors: dict[str, float] = {}
    for activation, nodes in weights.items():
        rows = inputs[activation][:: max(1, len(inputs[activation]) // RANK_ROWS)] / scales[activation]
        low, high = min(float(rows.min()), 0.0), max(float(rows.max()), 0.0)
        step = max(high - low, 1e-8) / 255.0
        quantised_rows = np.round((rows - low) / step) * step + low
        for node in nodes:
            matrix = _initializer(model, node.input[1])
            column_step = np.maximum(np.abs(matrix).max(axis=0), 1e-8) / 127.0
            quantised_matrix = np.round(matrix / column_step) * column_step
            exact = rows @ matrix
            error = np.linalg.norm(quantised_rows @ quantised_matrix - exact) / max(
                np.linalg.norm(exact), 1e-8
            )
            errors[node.name] = float(error)
    return sorted(errors, key=lambda name: -errors[name])


Quantizer = Callable[[Path, Path, Gate, Sequence[Feeds]], Quantised]
QUANTIZERS: dict[str, Quantizer] = {
    "int8": int8_smoothed,
    "int8-dynamic": int8_dynamic,
    "int8-blocks": int8_blocks,
}


@dataclass(frozen=True, slots=True)
class Quantisation:
    """What ``--quantize`` asks for: a scheme, how to apply it, the gate its result must pass, and
    the calibration feeds (rows of the training data, never the gate's) the recipe may use."""

    scheme: str
    gate: Gate
    quantize: Quantizer
    calibration: Sequence[Feeds] = ()

    def apply(self, source: Path, target: Path) -> Quantised:
        return self.quantize(source, target, self.gate, self.calibration)


def quantisation(
    scheme: str | None, gate: Gate | None, calibration: Sequence[Feeds] = ()
) -> Quantisation | None:
    """The ``--quantize`` option as a ``Quantisation``; a model without a quantisation gate cannot
    be quantised (nothing would check what it loses)."""
    if scheme is None:
        return None
    if scheme not in QUANTIZERS:
        raise TrainingError(f"unknown quantisation {scheme!r}: use one of {', '.join(SCHEMES)}")
    if gate is None:
        raise TrainingError(f"quantisation {scheme!r} needs a gate, and this model's task has none")
    return Quantisation(scheme, gate, QUANTIZERS[scheme], tuple(calibration))
