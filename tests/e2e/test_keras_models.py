"""The Keras families end to end: trained small, published to a moto server, served by their real
handlers with the stored sample events, answering what Keras answers for the same inputs."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ops.local import create_bucket
from ops.registry_admin import RegistryAdmin
from tests.conftest import FunctionUnderTest, body_of, load_event, make_function, with_json_body

BUCKET = "maas-keras-models"
MODELS = ("spam_lstm", "digits_cnn", "spam_mlp", "moby_gen")


@pytest.fixture(scope="module")
def served(
    moto_endpoint: str,
    trained_spam_lstm: Any,
    trained_digits_cnn: Any,
    trained_spam_mlp: Any,
    trained_moby_gen: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, FunctionUnderTest]:
    create_bucket(BUCKET)
    registry = RegistryAdmin(BUCKET)
    cache = tmp_path_factory.mktemp("cache")
    functions = {}
    for trained in (trained_spam_lstm, trained_digits_cnn, trained_spam_mlp, trained_moby_gen):
        published = registry.publish(trained.directory)
        registry.set_alias(published.name, "production", published.version)
    for model in MODELS:
        functions[model] = make_function(model, None, cache, MODEL_BUCKET=BUCKET)
    return functions


def request_of(event: dict[str, Any]) -> Any:
    return json.loads(event["body"])


def served_probabilities(body: dict[str, Any], labels: list[str]) -> np.ndarray:
    return np.array([[p["probabilities"][label] for label in labels] for p in body["predictions"]])


@pytest.mark.parametrize("fixture", ["trained_spam_lstm", "trained_spam_mlp"])
def test_text_models_answer_what_keras_answers_from_raw_text(
    served: dict[str, FunctionUnderTest], fixture: str, request: pytest.FixtureRequest
) -> None:
    trained = request.getfixturevalue(fixture)
    model = trained.manifest["name"]
    sample = load_event(model, "predict.json")
    held_out = [e.text for e in trained.data.test[::20]][:40]
    for event in (sample, with_json_body(sample, {"instances": held_out})):
        texts = request_of(event)["instances"]
        response = served[model](event)
        assert response["statusCode"] == 200, response["body"]
        body = body_of(response)
        assert (body["model_name"], body["model_version"]) == (model, "1")
        expected = trained.keras_probabilities(texts)
        labels = trained.data.labels
        assert [p["label"] for p in body["predictions"]] == [labels[i] for i in np.argmax(expected, axis=1)]
        assert np.max(np.abs(served_probabilities(body, labels) - expected)) < 1e-4


def png_pixels(encoded: str) -> np.ndarray:
    """What an independent decoder (Pillow) reads from a request's PNG, as a greyscale [0, 1] image."""
    image = Image.open(io.BytesIO(base64.b64decode(encoded))).convert("L")
    return np.asarray(image, dtype=np.float64)[..., None] / 255.0


def test_digits_answer_what_keras_answers_for_arrays_and_pngs(
    served: dict[str, FunctionUnderTest], trained_digits_cnn: Any
) -> None:
    labels = trained_digits_cnn.data.labels
    arrays = load_event("digits_cnn", "predict.json")
    pngs = load_event("digits_cnn", "predict_png.json")
    images = np.array(request_of(arrays)["instances"])[..., None]
    decoded = np.stack([png_pixels(i["b64"]) for i in request_of(pngs)["instances"]])
    for event, pixels in ((arrays, images), (pngs, decoded)):
        response = served["digits_cnn"](event)
        assert response["statusCode"] == 200, response["body"]
        body = body_of(response)
        expected = trained_digits_cnn.model.predict(pixels.astype(np.float32), verbose=0)
        assert [p["label"] for p in body["predictions"]] == [labels[i] for i in np.argmax(expected, axis=1)]
        assert np.max(np.abs(served_probabilities(body, labels) - expected)) < 1e-4
    # the sample digits are a 0, a 7 and a 3; a model at this accuracy reads them
    assert [p["label"] for p in body_of(served["digits_cnn"](arrays))["predictions"]] == ["0", "7", "3"]


def test_greedy_generation_equals_keras_greedy_decoding(
    served: dict[str, FunctionUnderTest], trained_moby_gen: Any
) -> None:
    event = load_event("moby_gen", "generate_greedy.json")
    request = request_of(event)
    response = served["moby_gen"](event)
    assert response["statusCode"] == 200, response["body"]
    body = body_of(response)
    expected = trained_moby_gen.keras_greedy_text(request["prompt"], request["max_new_tokens"])
    assert body["continuations"] == [expected]
    assert len(expected) == request["max_new_tokens"] == 160


def test_the_generator_asked_to_predict_says_which_verb_it_takes(
    served: dict[str, FunctionUnderTest],
) -> None:
    event = with_json_body(load_event("moby_gen", "generate.json"), {"instances": ["Call me Ishmael"]})
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/models/moby_gen/predict"
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /models/moby_gen/predict"
    response = served["moby_gen"](event)
    assert response["statusCode"] == 400, response["body"]
    error = body_of(response)["error"]
    assert (error["code"], error["field"]) == ("wrong_route", "path")
    assert "POST /models/moby_gen/generate" in error["message"]


def test_sampling_is_seeded_and_returns_the_sequences_asked_for(served: dict[str, FunctionUnderTest]) -> None:
    event = load_event("moby_gen", "generate.json")
    request = request_of(event)
    first = body_of(served["moby_gen"](event))
    again = body_of(served["moby_gen"](event))
    other = body_of(served["moby_gen"](with_json_body(event, {**request, "seed": request["seed"] + 1})))
    assert first["continuations"] == again["continuations"]
    assert first["continuations"] != other["continuations"]
    assert len(first["continuations"]) == request["num_return_sequences"] == 2
    assert all(len(text) == request["max_new_tokens"] for text in first["continuations"])
    assert first["parameters"] == {k: request[k] for k in first["parameters"]}


@pytest.mark.parametrize("model", MODELS)
def test_describe_names_the_version_its_metrics_and_signature(
    served: dict[str, FunctionUnderTest], model: str
) -> None:
    response = served[model](load_event(model, "describe.json"))
    assert response["statusCode"] == 200
    body = body_of(response)
    assert (body["model_name"], body["model_version"]) == (model, "1")
    assert body["framework"]["name"] == "keras" and body["framework"]["converter"].startswith("tf2onnx")
    assert body["metrics"] and body["signature"]["inputs"]


def png_of(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


ZEROS = [[0.0] * 8 for _ in range(8)]
BAD_REQUESTS = [
    ("digits_cnn", "predict.json", {"instances": [ZEROS[:7]]}, "instances[0]", "invalid_shape"),
    ("digits_cnn", "predict.json", {"instances": [ZEROS, [["x"] * 8] * 8]}, "instances[1]", "invalid_type"),
    ("digits_cnn", "predict.json", {"instances": [[[0.0] * 7 + [1.5]] * 8]}, "instances[0]", "out_of_range"),
    ("digits_cnn", "predict.json", {"instances": [[[-0.1] * 8] * 8]}, "instances[0]", "out_of_range"),
    (
        "digits_cnn",
        "predict.json",
        {"instances": [{"b64": "not base64!"}]},
        "instances[0].b64",
        "invalid_base64",
    ),
    (
        "digits_cnn",
        "predict.json",
        {"instances": [{"b64": base64.b64encode(b"GIF89a not a png").decode()}]},
        "instances[0].b64",
        "invalid_png",
    ),
    (
        "digits_cnn",
        "predict.json",
        {"instances": [{"b64": png_of(np.zeros((16, 16)))}]},
        "instances[0].b64",
        "invalid_shape",
    ),
    ("digits_cnn", "predict.json", {"instances": ["a string"]}, "instances[0]", "invalid_type"),
    ("spam_lstm", "predict.json", {"instances": ["fine", "   "]}, "instances[1]", "empty_text"),
    ("spam_lstm", "predict.json", {"instances": [42]}, "instances[0]", "invalid_type"),
    ("spam_mlp", "predict.json", {"instances": [""]}, "instances[0]", "empty_text"),
    ("spam_mlp", "predict.json", {"instances": ["fine", ["nested"]]}, "instances[1]", "invalid_type"),
    ("spam_mlp", "predict.json", {"instances": []}, "instances", "empty_batch"),
    ("moby_gen", "generate.json", {"prompt": "x" * 1001}, "prompt", "prompt_too_long"),
    ("moby_gen", "generate.json", {"prompt": ""}, "prompt", "empty_text"),
    (
        "moby_gen",
        "generate.json",
        {"prompt": "Call me", "max_new_tokens": 513},
        "max_new_tokens",
        "out_of_range",
    ),
    (
        "moby_gen",
        "generate.json",
        {"prompt": "Call me", "max_new_tokens": "9"},
        "max_new_tokens",
        "invalid_type",
    ),
    (
        "moby_gen",
        "generate.json",
        {"prompt": "Call", "num_return_sequences": 0},
        "num_return_sequences",
        "out_of_range",
    ),
    ("moby_gen", "generate.json", {"prompt": "Call", "temperature": -1}, "temperature", "out_of_range"),
    ("moby_gen", "generate.json", {"prompt": "Call", "top_k": 1.5}, "top_k", "invalid_type"),
    ("moby_gen", "generate.json", {"prompt": "Call me \u2603"}, "prompt", "unknown_characters"),
]


@pytest.mark.parametrize(("model", "event_name", "body", "field", "code"), BAD_REQUESTS)
def test_bad_requests_are_400_naming_the_field(
    served: dict[str, FunctionUnderTest], model: str, event_name: str, body: Any, field: str, code: str
) -> None:
    response = served[model](with_json_body(load_event(model, event_name), body))
    assert response["statusCode"] == 400, response["body"]
    error = body_of(response)["error"]
    assert (error["field"], error["code"]) == (field, code), error
    assert field.split(".")[0].split("[")[0] in error["message"]


def emf(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_every_route_reports_cold_start_load_time_and_what_it_served(
    served: dict[str, FunctionUnderTest], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A fresh environment per model: the first request is a cold start that loaded the model."""
    expectations = {
        "digits_cnn": (
            "predict.json",
            {"PredictedLabel_0": [1.0], "PredictedLabel_7": [1.0], "InstancesScored": [3.0]},
        ),
        "moby_gen": ("generate.json", {"GeneratedTokens": [200.0], "InstancesScored": [2.0]}),
        "spam_mlp": ("describe.json", {"MetadataRequests": [1.0]}),
    }
    for model, (event_name, figures) in expectations.items():
        fresh = make_function(model, None, tmp_path, MODEL_BUCKET=BUCKET)
        capsys.readouterr()
        assert fresh(load_event(model, event_name))["statusCode"] == 200
        assert fresh(load_event(model, event_name))["statusCode"] == 200
        cold, warm = emf(capsys.readouterr().out)
        assert cold["ColdStart"] == [1.0] and cold["ModelLoadTime"][0] > 0
        assert "ColdStart" not in warm and "ModelLoadTime" not in warm
        assert (cold["model"], cold["model_version"]) == (model, "1")
        assert {k: cold[k] for k in figures} == figures
