"""Quantisation, an option of the one export path (``--quantize int8``), behind its own gate.

``training.export.write_version`` quantises the exported fp32 graph after the fp32 graph has passed
its parity gate, then runs the candidate's quantisation gate on the result; a variant that misses
is refused like any parity failure. Which recipe ``int8`` means is decided here, once, from
measurements on all-MiniLM-L6-v2 (held-out SpamAssassin subjects, against sentence-transformers):

- ``quantize_dynamic`` per-tensor QInt8: min cosine 0.894 (the default silently loses quality);
- ``quantize_dynamic`` per-channel (``int8-dynamic`` here): 23 MB and the fastest on AVX2, but
  min cosine 0.972 and top-5 overlap 0.87 (activations are quantised per tensor, and a BERT's
  LayerNorm outputs have outlier features): the gate refuses it;
- ``int8``: weight-only 8-bit blocks (``MatMulNBits``, 32 weights a block, symmetric) with int8
  compute (``accuracy_level=4``: activations quantised per block too) for every MatMul, and the
  embedding tables in int8: 24 MB, min cosine 0.997, overlap 0.96. On a CPU without VNNI it is no
  faster than fp32; its win is size (download and /tmp) and memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas.core.errors import TrainingError
from maas.core.predictor import Predictor
from training.export import ParityReport

SCHEMES = ("int8", "int8-dynamic")
BLOCK_SIZE = 32


def int8_weights(source: Path, target: Path) -> dict[str, Any]:
    """Every MatMul weight in symmetric 8-bit blocks (int8 compute), then Gather tables in int8."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    # that module calls logging.basicConfig(level=INFO) when imported: undone, or every library's
    # INFO lines (botocore's endpoint lookups...) print from then on
    for handler in root.handlers[len(handlers) :]:
        root.removeHandler(handler)
    root.setLevel(level)
    quiet = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    quiet.setLevel(logging.WARNING)
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(source)), bits=8, block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    blocks = target.with_name(f".{target.name}.blocks")
    quantizer.model.save_model_to_file(str(blocks), False)
    root.setLevel(logging.ERROR)  # quantize_dynamic's "consider pre-processing" warning
    try:
        quantize_dynamic(
            str(blocks),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Gather"],
        )
    finally:
        root.setLevel(level)
        blocks.unlink(missing_ok=True)
    return {
        "scheme": "int8",
        "method": "onnxruntime MatMulNBits (bits=8, symmetric blocks) + quantize_dynamic(Gather, per_channel)",
        "block_size": BLOCK_SIZE,
        "accuracy_level": 4,
    }


def int8_dynamic(source: Path, target: Path) -> dict[str, Any]:
    """``quantize_dynamic`` per channel: every MatMul and Gather, activations per tensor."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True)
    finally:
        root.setLevel(level)
    return {"scheme": "int8-dynamic", "method": "onnxruntime quantize_dynamic (QInt8, per_channel)"}


Quantizer = Callable[[Path, Path], dict[str, Any]]
QUANTIZERS: dict[str, Quantizer] = {"int8": int8_weights, "int8-dynamic": int8_dynamic}


@dataclass(frozen=True, slots=True)
class Quantisation:
    """What ``--quantize`` asks for: a scheme, how to apply it, and the gate its result must pass."""

    scheme: str
    gate: Callable[[Predictor], ParityReport]
    quantize: Quantizer


def quantisation(scheme: str | None, gate: Callable[[Predictor], ParityReport] | None) -> Quantisation | None:
    """The ``--quantize`` option as a ``Quantisation``; a model without a quantisation gate cannot
    be quantised (nothing would check what it loses)."""
    if scheme is None:
        return None
    if scheme not in QUANTIZERS:
        raise TrainingError(f"unknown quantisation {scheme!r}: use one of {', '.join(SCHEMES)}")
    if gate is None:
        raise TrainingError(f"quantisation {scheme!r} needs a gate, and this model's task has none")
    return Quantisation(scheme, gate, QUANTIZERS[scheme])
