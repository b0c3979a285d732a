"""The protocol's tensor handling on a real numeric ONNX graph, and the model routes in-process
(metrics, retirement after load, the registry function) against moto's S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from maas.core.errors import RequestError
from maas.core.predictor import Predictor
from maas.core.registry import MODEL_FILE
from maas.core.service import ServedModel
from maas.core.tasks.tensors import RawTensors
from maas.http.protocol import InferenceRequest, infer
from ops.local import LambdaContext, load_function_module
from ops.registry_admin import RegistryAdmin
from ops.template import functions
from tests.conftest import BUCKET, body_of, load_event, make_function, with_json_body
from tests.unit.test_metrics import emf_records


@pytest.fixture(scope="module")
def numeric(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    """A real ONNX graph with a fixed feature dimension: y = 2x (FP32 [N, 3]), top = argmax (INT64 [N])."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["y"]),
            helper.make_node("ArgMax", ["x"], ["top"], axis=1, keepdims=0),
        ],
        "numeric",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("top", TensorProto.INT64, ["N"]),
        ],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("numeric") / MODEL_FILE
    onnx.save(model, path)
    predictor = Predictor(path)
    return ServedModel(name="numeric", version=1, manifest={}, task=RawTensors(predictor, {}), load_ms=0.0)


def request(data: Any, shape: list[int], datatype: str = "FP32", **extra: Any) -> InferenceRequest:
    body = {"inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}], **extra}
    return InferenceRequest.model_validate(body)


@pytest.mark.parametrize(
    "data", [[1.0, 5.0, 2.0, -1.0, 0.5, 0.25], [[1.0, 5.0, 2.0], [-1.0, 0.5, 0.25]], [1, 5, 2, -1, 0.5, 0.25]]
)
def test_fp32_tensors_flat_nested_or_integral_give_fp32_and_int64_outputs(
    numeric: ServedModel, data: Any
) -> None:
    result = infer(numeric, request(data, [2, 3], id="n1"), max_batch=4)
    response, batch = result.response, result.batch
    outputs = {o.name: o for o in response.outputs}
    assert batch == 2 and response.id == "n1" and response.model_version == "1"
    assert (outputs["y"].datatype, outputs["y"].shape) == ("FP32", [2, 3])
    assert outputs["y"].data == [2.0, 10.0, 4.0, -2.0, 1.0, 0.5]
    assert (outputs["top"].datatype, outputs["top"].shape, outputs["top"].data) == ("INT64", [2], [1, 1])


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (request(["1", "2", "3"], [1, 3]), "invalid_type", "inputs[0].data"),
        (request([True, False, True], [1, 3]), "invalid_type", "inputs[0].data"),
        (request([1.0, float("nan"), 3.0], [1, 3]), "invalid_value", "inputs[0].data"),
        (request([1.0, 1e39, 3.0], [1, 3]), "invalid_value", "inputs[0].data"),
        (request([1.0, 2.0, 3.0, 4.0], [2, 2]), "invalid_shape", "inputs[0].data"),
        (request([1, 2, 3], [1, 3], datatype="INT64"), "invalid_datatype", "inputs[0].datatype"),
        (request([0.0] * 15, [5, 3]), "batch_too_large", "inputs[0].shape"),
        (request([], [0, 3]), "invalid_request", "inputs[0].shape"),
        (request([1.0, 2.0, 3.0], [1, 3], outputs=[{"name": "z"}]), "unknown_output", "outputs[0].name"),
    ],
)
def test_numeric_tensors_the_model_cannot_take_are_refused_by_field(
    numeric: ServedModel, body: InferenceRequest, code: str, field: str
) -> None:
    with pytest.raises(RequestError) as refused:
        infer(numeric, body, max_batch=4)
    assert (refused.value.code, refused.value.field) == (code, field), refused.value.message


def test_an_input_given_twice_is_refused(numeric: ServedModel) -> None:
    tensor = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    with pytest.raises(RequestError, match="given twice"):
        infer(numeric, InferenceRequest.model_validate({"inputs": [tensor, tensor]}), max_batch=4)


@pytest.fixture
def published(registry: RegistryAdmin, spam_nb_dir: Path) -> RegistryAdmin:
    registry.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    return registry


def versioned(event: dict[str, Any], version: int) -> dict[str, Any]:
    path = f"/v2/models/spam_nb/versions/{version}/infer"
    edited = with_json_body(event, json.loads(event["body"]))
    edited["rawPath"] = edited["requestContext"]["http"]["path"] = path
    return edited


def test_the_sample_infer_event_is_scored_and_reported_like_a_prediction(
    published: RegistryAdmin, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    function = make_function("spam_nb", s3, tmp_path)
    response = function(load_event("spam_nb", "infer.json"))
    assert response["statusCode"] == 200, response
    body = body_of(response)
    assert (body["id"], body["model_version"]) == ("sample-1", "1")
    assert body["outputs"][0] == {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["spam", "ham"]}
    record = next(r for r in emf_records(capsys.readouterr().out) if "Requests" in r)
    assert (record["model"], record["model_version"], record["InstancesScored"]) == ("spam_nb", "1", [2.0])
    assert record["ColdStart"] == [1.0] and "ModelLoadTime" in record


def test_retiring_a_loaded_version_stops_its_versioned_route_after_the_ttl(
    published: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    function = make_function("spam_nb", s3, tmp_path, ALIAS_TTL_SECONDS="0")
    event = versioned(load_event("spam_nb", "infer.json"), 2)
    assert function(event)["statusCode"] == 200
    tags = [{"Key": "model", "Value": "spam_nb"}, {"Key": "version", "Value": "2"}]
    s3.put_object_tagging(
        Bucket=BUCKET,
        Key=published.object_key("spam_nb", 2, MODEL_FILE),
        Tagging={"TagSet": [*tags, {"Key": "status", "Value": "retired"}]},
    )
    response = function(event)
    assert response["statusCode"] == 410
    assert body_of(response)["error"] == "model 'spam_nb' version 2 is retired and is not served"
    assert function(load_event("spam_nb", "infer.json"))["statusCode"] == 200  # the alias's version 1


def test_the_registry_function_answers_health_and_the_model_list(published: RegistryAdmin, s3: Any) -> None:
    spec = next(s for s in functions() if s.logical_id == "RegistryFunction")
    module = load_function_module(spec)
    module.runtime.reset(environ={"MODEL_BUCKET": BUCKET}, s3_client=s3)
    context = LambdaContext(function_name=spec.logical_id)
    live = module.lambda_handler(load_event("registry", "live.json"), context)
    assert (live["statusCode"], json.loads(live["body"])) == (200, {"live": True})
    index = module.lambda_handler(load_event("registry", "index.json"), context)
    assert json.loads(index["body"]) == [
        {"name": "spam_nb", "version": "1", "state": "READY", "reason": ""},
        {"name": "spam_nb", "version": "2", "state": "READY", "reason": ""},
    ]
