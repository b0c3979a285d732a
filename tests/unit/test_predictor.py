"""A predictor opened in the background answers as one opened in place, and fails the same way."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidProtobuf

from maas.core.predictor import Predictor


def _doubler(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "doubler",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_session_opened_in_the_background_answers_as_one_opened_in_place(tmp_path: Path) -> None:
    path = _doubler(tmp_path / "model.onnx")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    in_place = Predictor(path)
    background = Predictor(path, in_background=True)
    assert [s.to_dict() for s in background.inputs] == [s.to_dict() for s in in_place.inputs]
    assert [s.to_dict() for s in background.outputs] == [s.to_dict() for s in in_place.outputs]
    assert background.inputs[0].name == "x" and background.input_names == ["x"]
    np.testing.assert_array_equal(background.run({"x": x})["y"], in_place.run({"x": x})["y"])
    np.testing.assert_array_equal(background.run({"x": x})["y"], 2 * x)
    background.wait()  # opened already: returns at once, and again
    background.wait()
    assert not any(t.name == "maas-open-session" for t in threading.enumerate())


def test_a_file_that_is_not_onnx_fails_where_the_session_is_first_needed(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"these bytes are not a protobuf graph" * 10)
    with pytest.raises(InvalidProtobuf):
        Predictor(path)
    background = Predictor(path, in_background=True)  # no error yet: it is raised where needed
    with pytest.raises(InvalidProtobuf):
        background.wait()
    with pytest.raises(InvalidProtobuf):
        _ = background.inputs
    with pytest.raises(InvalidProtobuf):
        background.run({"x": np.zeros((1, 3), np.float32)})
