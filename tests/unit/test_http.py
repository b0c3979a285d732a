"""The spam_nb function's HTTP contract, through its real handler, against moto's S3 in-process."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET, body_of, load_event, make_function, with_json_body

PREDICT = load_event("spam_nb", "predict.json")


@pytest.fixture
def published(registry: RegistryAdmin, spam_nb_dir: Path) -> RegistryAdmin:
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    return registry


@pytest.fixture
def function(published: RegistryAdmin, s3: Any, tmp_path: Path) -> Any:
    return make_function("spam_nb", s3, tmp_path, MAX_BATCH="4", MAX_BODY_BYTES="4096")


def assert_error(response: dict[str, Any], status: int, code: str, field: str | None) -> dict[str, Any]:
    assert response["statusCode"] == status, response
    error = body_of(response)["error"]
    assert (error["code"], error["field"]) == (code, field), error
    assert error["message"]
    return dict(error)


def test_predict_answers_each_instance_in_order_with_the_version(function: Any) -> None:
    response = function(PREDICT)
    assert response["statusCode"] == 200
    body = body_of(response)
    assert body["model_name"] == "spam_nb"
    assert body["model_version"] == "1"
    sent = json.loads(PREDICT["body"])["instances"]
    assert len(body["predictions"]) == len(sent)
    assert [p["label"] for p in body["predictions"]] == ["spam", "ham", "ham"]
    for prediction in body["predictions"]:
        assert set(prediction["probabilities"]) == {"ham", "spam"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_a_base64_body_is_decoded(function: Any) -> None:
    event = load_event("spam_nb", "predict_base64.json")
    assert event["isBase64Encoded"] is True
    response = function(event)
    assert response["statusCode"] == 200
    assert body_of(response)["predictions"][0]["label"] == "spam"


def test_describe_names_the_answering_version(function: Any, spam_nb_dir: Path) -> None:
    response = function(load_event("spam_nb", "describe.json"))
    assert response["statusCode"] == 200
    body = body_of(response)
    manifest = json.loads((spam_nb_dir / "manifest.json").read_text())
    assert body["model_version"] == "1"
    assert body["labels"] == ["ham", "spam"]
    assert body["metrics"] == manifest["metrics"]
    assert body["created_at"] == manifest["created_at"]
    assert body["signature"]["inputs"] == [{"name": "text", "dtype": "string", "shape": [None, 1]}]


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ("", 400, "missing_body", "body"),
        ("{not json", 400, "invalid_json", "body"),
        (["a list"], 400, "invalid_type", "body"),
        ({"texts": ["hello"]}, 400, "missing_field", "instances"),
        ({"instances": "hello there"}, 400, "invalid_type", "instances"),
        ({"instances": []}, 400, "empty_batch", "instances"),
        ({"instances": ["one", "two", "three", "four", "five"]}, 400, "batch_too_large", "instances"),
        ({"instances": ["fine", 42]}, 400, "invalid_type", "instances[1]"),
        ({"instances": ["fine", {"text": "x"}]}, 400, "invalid_type", "instances[1]"),
        ({"instances": ["   "]}, 400, "empty_text", "instances[0]"),
        ({"instances": ["x" * 5000]}, 413, "body_too_large", "body"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    function: Any, body: Any, status: int, code: str, field: str
) -> None:
    assert_error(function(with_json_body(PREDICT, body)), status, code, field)


def test_a_body_marked_base64_that_is_not_base64_is_a_400(function: Any) -> None:
    event = with_json_body(PREDICT, "%%% not base64 %%%")
    event["isBase64Encoded"] = True
    assert_error(function(event), 400, "invalid_body", "body")


def test_a_base64_body_that_is_not_utf8_json_is_a_400(function: Any) -> None:
    event = with_json_body(PREDICT, base64.b64encode(b"\xff\xfe{}").decode())
    event["isBase64Encoded"] = True
    assert_error(function(event), 400, "invalid_json", "body")


def test_another_models_path_is_a_404(function: Any) -> None:
    event = with_json_body(PREDICT, {"instances": ["hello"]})
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/models/other_model/predict"
    assert_error(function(event), 404, "model_not_found", "model")


def test_an_unknown_route_is_a_404(function: Any) -> None:
    event = with_json_body(PREDICT, {"instances": ["hello"]})
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/models/spam_nb/explain"
    assert_error(function(event), 404, "route_not_found", "path")


def test_no_alias_means_503_naming_model_and_alias(
    registry: RegistryAdmin, spam_nb_dir: Path, s3: Any, tmp_path: Path
) -> None:
    registry.publish(spam_nb_dir)  # published, but no alias points at it
    function = make_function("spam_nb", s3, tmp_path)
    error = assert_error(function(PREDICT), 503, "no_usable_version", None)
    assert "spam_nb" in error["message"] and "production" in error["message"]


def test_an_empty_registry_is_a_503(registry: RegistryAdmin, s3: Any, tmp_path: Path) -> None:
    function = make_function("spam_nb", s3, tmp_path, MODEL_ALIAS="staging")
    error = assert_error(function(load_event("spam_nb", "describe.json")), 503, "no_usable_version", None)
    assert "'staging'" in error["message"]


def test_a_pinned_version_that_does_not_exist_is_a_503(
    published: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    function = make_function("spam_nb", s3, tmp_path, MODEL_VERSION="9")
    error = assert_error(function(PREDICT), 503, "no_usable_version", None)
    assert "version 9" in error["message"]


def test_a_tampered_model_is_never_served(
    published: RegistryAdmin, s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s3.put_object(
        Bucket=BUCKET,
        Key="models/spam_nb/versions/1/model.onnx",
        Body=b"swapped after publication",
        Tagging="model=spam_nb&version=1&status=active",
    )
    function = make_function("spam_nb", s3, tmp_path)
    assert_error(function(PREDICT), 503, "integrity_error", None)
    assert any(
        record.levelname == "ERROR" and getattr(record, "error", {}).get("code") == "integrity_error"
        for record in caplog.records
    ), "the refusal was not logged as an error"


def test_a_missing_bucket_setting_is_a_clear_server_error(s3: Any, tmp_path: Path) -> None:
    from tests.conftest import FunctionUnderTest

    function = FunctionUnderTest("spam_nb", {"MODEL_CACHE_DIR": str(tmp_path)}, s3)
    response = function(PREDICT)
    assert response["statusCode"] == 500
    assert "MODEL_BUCKET" in body_of(response)["error"]["message"]


def on_path(event: dict[str, Any], path: str, body: Any) -> dict[str, Any]:
    """A copy of a stored event sent to another route of the same function."""
    edited = with_json_body(event, body)
    edited["rawPath"] = edited["requestContext"]["http"]["path"] = path
    edited["routeKey"] = edited["requestContext"]["routeKey"] = f"POST {path}"
    return edited


def test_a_classifier_asked_to_generate_says_which_verb_it_takes(function: Any) -> None:
    response = function(on_path(PREDICT, "/models/spam_nb/generate", {"prompt": "Hello"}))
    error = assert_error(response, 400, "wrong_route", "path")
    assert "does not generate text" in error["message"]
    assert "POST /models/spam_nb/predict" in error["message"]
