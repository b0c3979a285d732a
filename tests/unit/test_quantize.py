"""int8's SmoothQuant keeps the graph's answers, and the gate decides how many MatMuls stay fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from maas.core.predictor import Predictor
from training.export import ParityReport
from training.quantize import int8_smoothed, smooth, weight_matmuls


def outlier_graph(path: Path) -> Path:
    """x -> (x @ A, x @ B) shared input -> Relu -> @ C: one input channel with 50x outliers."""
    rng = np.random.default_rng(5)
    weights = {
        n: rng.normal(size=s).astype(np.float32)
        for n, s in {"A": (16, 32), "B": (16, 32), "C": (32, 8)}.items()
    }
    nodes = [
        helper.make_node("MatMul", ["x", "A"], ["a"], name="mm_a"),
        helper.make_node("MatMul", ["x", "B"], ["b"], name="mm_b"),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "C"], ["y"], name="mm_c"),
    ]
    graph = helper.make_graph(
        nodes,
        "outliers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(w, n) for n, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def rows(count: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(count, 16)).astype(np.float32)
    x[:, 3] *= 50.0
    return x


def test_smoothing_moves_scales_into_the_weights_and_keeps_the_answers(tmp_path: Path) -> None:
    source = outlier_graph(tmp_path / "model.onnx")
    model = onnx.load(source)
    weights = weight_matmuls(model)
    assert sorted(len(nodes) for nodes in weights.values()) == [1, 2]  # x feeds two MatMuls
    scales = {name: np.linspace(0.5, 4.0, 16 if name == "x" else 32).astype(np.float32) for name in weights}
    smooth(model, weights, scales)
    onnx.save(model, tmp_path / "smoothed.onnx")
    x = rows(64, 1)
    before = Predictor(source).run({"x": x})["y"]
    after = Predictor(tmp_path / "smoothed.onnx").run({"x": x})["y"]
    assert [n.op_type for n in model.graph.node].count("Mul") == 2
    assert np.allclose(after, before, rtol=1e-4, atol=1e-3)


def test_the_gate_decides_how_many_of_the_most_erring_matmuls_stay_fp32(tmp_path: Path) -> None:
    source = outlier_graph(tmp_path / "model.onnx")
    x = rows(64, 2)
    exact = Predictor(source).run({"x": x})["y"]
    seen: list[float] = []

    def gate(predictor: Predictor) -> ParityReport:
        worst = float(np.abs(predictor.run({"x": x})["y"] - exact).max())
        seen.append(worst)
        # passes only once some MatMul is back in fp32: the first (all-int8) try must fail
        return ParityReport(
            rows=64, label_disagreements=0, max_abs_diff=worst, tolerance=min(seen[0] * 0.99, worst)
        )

    result = int8_smoothed(source, tmp_path / "int8.onnx", gate, [{"x": rows(128, 3)}])
    described = result.description
    assert described["attempts"][0] == {"matmuls_fp32": 0, "passed": False, "max_diff": seen[0]}
    assert described["attempts"][-1]["passed"] and described["matmuls_fp32"]
    assert described["matmuls_int8"] == 3 - len(described["matmuls_fp32"])
    ops = {n.op_type for n in onnx.load(tmp_path / "int8.onnx").graph.node}
    assert "MatMul" in ops and ops & {"DynamicQuantizeMatMul", "MatMulInteger"}
