"""Open Inference Protocol v2 conformance against `maas serve` over real HTTP (moto server behind).

spam_nb is published three times: production -> version 1, version 3 retired.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from ops.events import SPAM_TEXTS
from tests.conftest import load_event
from tests.e2e.conftest import Served, start_serve

TEXTS = SPAM_TEXTS[:2]  # the sample events' texts: the small test model calls them spam, ham


def infer_body(texts: list[str] = TEXTS, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "text", "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}],
        **extra,
    }


def assert_protocol_error(response: requests.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    # the protocol's {"error": message}, with our code and the request id beside it
    assert set(body) == {"error", "code", "request_id"} and isinstance(body["error"], str), body
    for word in words:
        assert word in body["error"], body
    return str(body["error"])


def test_health_and_server_metadata(serve_api: Served) -> None:
    assert serve_api.get("/v2/health/live").json() == {"live": True}
    assert serve_api.get("/v2/health/ready").json() == {"ready": True}
    metadata = serve_api.get("/v2")
    assert metadata.status_code == 200
    assert metadata.json()["name"] == "maas" and metadata.json()["version"] == "0.1.0"
    assert metadata.json()["extensions"] == []


def test_the_repository_index_lists_versions_with_their_state(serve_api: Served) -> None:
    index = serve_api.post("/v2/repository/index").json()
    assert {(e["name"], e["version"], e["state"], e["reason"]) for e in index} >= {
        ("spam_nb", "1", "READY", ""),
        ("spam_nb", "2", "READY", ""),
        ("spam_nb", "3", "UNAVAILABLE", "retired"),
    }
    ready_only = serve_api.post("/v2/repository/index", {"ready": True}).json()
    assert ("spam_nb", "3") not in {(e["name"], e["version"]) for e in ready_only}


@pytest.mark.parametrize("path", ["/v2/models/spam_nb", "/v2/models/spam_nb/versions/2"])
def test_model_metadata_describes_the_onnx_signature(serve_api: Served, path: str) -> None:
    response = serve_api.get(path)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "name": "spam_nb",
        "versions": ["1", "2", "3"],
        "platform": "onnx",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        ],
    }


@pytest.mark.parametrize("path", ["/v2/models/spam_nb/ready", "/v2/models/spam_nb/versions/2/ready"])
def test_model_readiness(serve_api: Served, path: str) -> None:
    response = serve_api.get(path)
    assert response.status_code == 200 and response.json() == {"name": "spam_nb", "ready": True}


def test_infer_echoes_the_id_and_answers_like_the_predict_route(serve_api: Served) -> None:
    response = serve_api.post("/v2/models/spam_nb/infer", infer_body(id="request-42"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("spam_nb", "1", "request-42")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [2]
    assert outputs["probabilities"]["datatype"] == "FP32" and outputs["probabilities"]["shape"] == [2, 2]
    predicted = serve_api.post("/models/spam_nb/predict", {"instances": TEXTS}).json()["predictions"]
    assert outputs["label"]["data"] == [p["label"] for p in predicted] == ["spam", "ham"]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(2, 2)
    expected = [[p["probabilities"]["ham"], p["probabilities"]["spam"]] for p in predicted]
    assert np.allclose(probabilities, expected, atol=1e-5)


def test_nested_data_flat_shape_and_requested_outputs(serve_api: Served) -> None:
    body = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [[TEXTS[0]], [TEXTS[1]]]}],
        "outputs": [{"name": "label"}],
        "parameters": {"note": "ignored"},
    }
    response = serve_api.post("/v2/models/spam_nb/infer", body)
    assert response.status_code == 200, response.text
    assert "id" not in response.json()
    assert response.json()["outputs"] == [
        {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["spam", "ham"]}
    ]


def test_versioned_infer_serves_that_version_whatever_the_alias_says(serve_api: Served) -> None:
    response = serve_api.post("/v2/models/spam_nb/versions/2/infer", infer_body())
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "2"
    assert serve_api.post("/v2/models/spam_nb/infer", infer_body()).json()["model_version"] == "1"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("POST", "/v2/models/nope/infer"),
        ("GET", "/v2/models/nope/versions/1"),
    ],
)
def test_an_unknown_model_is_a_protocol_404(serve_api: Served, method: str, path: str) -> None:
    response = requests.request(method, serve_api.url + path, json=infer_body(), timeout=60)
    assert_protocol_error(response, 404, "nope")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/spam_nb/versions/99",
        "/v2/models/spam_nb/versions/99/ready",
        "/v2/models/spam_nb/versions/x",
    ],
)
def test_an_unknown_version_is_a_404(serve_api: Served, path: str) -> None:
    assert_protocol_error(serve_api.get(path), 404, "version")


def test_an_unknown_version_cannot_infer(serve_api: Served) -> None:
    assert_protocol_error(
        serve_api.post("/v2/models/spam_nb/versions/99/infer", infer_body()), 404, "no version 99"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/spam_nb/versions/3"),
        ("GET", "/v2/models/spam_nb/versions/3/ready"),
        ("POST", "/v2/models/spam_nb/versions/3/infer"),
    ],
)
def test_a_retired_version_is_gone(serve_api: Served, method: str, path: str) -> None:
    response = requests.request(method, serve_api.url + path, json=infer_body(), timeout=60)
    assert_protocol_error(response, 410, "version 3 is retired")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            {"inputs": [{"name": "text", "shape": [2, 1], "datatype": "FP32", "data": [1.0, 2.0]}]},
            ["inputs[0].datatype", "BYTES"],
        ),
        (
            {"inputs": [{"name": "text", "shape": [2, 1], "datatype": "TEXT", "data": ["a", "b"]}]},
            ["inputs[0].datatype"],
        ),
        (
            {"inputs": [{"name": "text", "shape": [3, 1], "datatype": "BYTES", "data": ["a", "b"]}]},
            ["inputs[0].shape", "3 elements", "has 2"],
        ),
        (
            {
                "inputs": [
                    {"name": "text", "shape": [2, 2], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}
                ]
            },
            ["inputs[0].data", "shape"],
        ),
        (
            {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [7]}]},
            ["inputs[0].data", "strings"],
        ),
        (
            {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", " "]}]},
            ["inputs[0].data[1]", "empty"],
        ),
        ({"inputs": []}, ["inputs"]),
        ({"id": "no-inputs"}, ["inputs", "required"]),
        (
            {"inputs": [{"name": "words", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
            ["inputs[0].name", "'words'"],
        ),
        ({"inputs": [{"name": "text", "datatype": "BYTES", "data": ["a"]}]}, ["inputs[0].shape"]),
        ({**infer_body(), "outputs": [{"name": "logits"}]}, ["outputs[0].name", "'logits'"]),
    ],
)
def test_malformed_infer_requests_are_a_400_naming_the_field(
    serve_api: Served, body: Any, words: list[str]
) -> None:
    for path in ("/v2/models/spam_nb/infer", "/v2/models/spam_nb/versions/1/infer"):
        assert_protocol_error(serve_api.post(path, body), 400, *words)


def test_a_body_that_is_not_json_is_a_400(serve_api: Served) -> None:
    response = serve_api.post(
        "/v2/models/spam_nb/infer", data=b"{not json", headers={"content-type": "application/json"}
    )
    assert_protocol_error(response, 400, "not valid JSON")
    assert_protocol_error(serve_api.post("/v2/models/spam_nb/infer"), 400, "body")


def test_a_body_without_content_type_reaches_the_function_base64_encoded(serve_api: Served) -> None:
    raw = json.dumps(infer_body()).encode()
    response = serve_api.post("/v2/models/spam_nb/infer", data=raw)  # no content-type: binary to API Gateway
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["spam", "ham"]
    other = serve_api.post("/v2/models/spam_nb/infer", data=raw, headers={"content-type": "image/png"})
    assert_protocol_error(other, 415, "image/png")


def test_maas_serve_starts_its_own_moto_server_without_an_endpoint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    process, url = start_serve([], env, tmp_path / "serve.log")
    try:
        assert requests.get(url + "/v2/health/ready", timeout=60).json() == {"ready": True}
        assert requests.post(url + "/v2/repository/index", timeout=60).json() == []
    finally:
        process.terminate()
        process.wait(timeout=30)
    banner = (tmp_path / "serve.log").read_text()
    assert "DEVELOPMENT SERVER" in banner
    assert "moto server (local S3) on http://127.0.0.1:" in banner and "started by maas serve" in banner


# --- the image model, and every other model ------------------------------------------------------

MODELS = ("spam_nb", "spam_lstm", "spam_mlp", "digits_cnn", "moby_gen")


def sample_infer(model: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(load_event(model, "infer.json")["body"])
    return body


def image_body(images: Any, shape: list[int], datatype: str = "FP32", name: str = "image") -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": images}]}


@pytest.mark.parametrize("path", ["/v2/models/digits_cnn", "/v2/models/digits_cnn/versions/1"])
def test_image_model_metadata_and_readiness(serve_api: Served, path: str) -> None:
    metadata = serve_api.get(path).json()
    assert (metadata["name"], metadata["platform"], metadata["versions"]) == ("digits_cnn", "onnx", ["1"])
    assert metadata["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8, 1]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert serve_api.get(f"{path}/ready").json() == {"name": "digits_cnn", "ready": True}


@pytest.mark.parametrize("path", ["/v2/models/digits_cnn/infer", "/v2/models/digits_cnn/versions/1/infer"])
def test_image_infer_answers_like_the_predict_route(serve_api: Served, path: str) -> None:
    body = sample_infer("digits_cnn")
    images = body["inputs"][0]["data"]
    response = serve_api.post(path, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("digits_cnn", "1", "sample-1")
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probabilities", "FP32", [2, 10])
    probabilities = np.array(output["data"]).reshape(2, 10)
    predicted = serve_api.post("/models/digits_cnn/predict", {"instances": images}).json()["predictions"]
    assert np.allclose(probabilities, [list(p["probabilities"].values()) for p in predicted], atol=1e-5)
    labels = list(predicted[0]["probabilities"])
    assert [labels[i] for i in probabilities.argmax(axis=1)] == [p["label"] for p in predicted]


def test_malformed_image_tensors_are_a_400_naming_the_field(serve_api: Served) -> None:
    images = sample_infer("digits_cnn")["inputs"][0]["data"]
    flat = np.asarray(images, dtype=float).reshape(-1).tolist()
    bright = (np.asarray(images, dtype=float) * 0 + 2.0).tolist()
    cases: list[tuple[dict[str, Any], list[str]]] = [
        (image_body(images, [2, 8, 8, 1], datatype="BYTES"), ["inputs[0].datatype", "FP32"]),
        (image_body(images, [2, 8, 8, 1], datatype="INT64"), ["inputs[0].datatype"]),
        (image_body(flat[:-1], [2, 8, 8, 1]), ["inputs[0].shape", "128 elements", "127"]),
        (image_body(flat, [2, 8, 16, 1]), ["inputs[0].shape", "256 elements"]),
        (image_body(flat, [2, 4, 16, 1]), ["inputs[0].data", "shape"]),
        (image_body(bright, [2, 8, 8, 1]), ["inputs[0].data[0]", "pixel values"]),
        (image_body(flat, [2, 8, 8, 1], name="pixels"), ["inputs[0].name", "'pixels'"]),
        ({"inputs": []}, ["inputs"]),
    ]
    for body, words in cases:
        assert_protocol_error(serve_api.post("/v2/models/digits_cnn/infer", body), 400, *words)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_is_reachable_through_the_protocol(serve_api: Served, model: str) -> None:
    metadata = serve_api.get(f"/v2/models/{model}").json()
    assert metadata["name"] == model and metadata["platform"] == "onnx"
    assert serve_api.get(f"/v2/models/{model}/ready").json() == {"name": model, "ready": True}
    response = serve_api.post(f"/v2/models/{model}/infer", sample_infer(model))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model_name"] == model and answer["id"] == "sample-1"
    assert [o["name"] for o in answer["outputs"]] == [o["name"] for o in metadata["outputs"]]
    for output, declared in zip(answer["outputs"], metadata["outputs"], strict=True):
        assert output["datatype"] == declared["datatype"]
        assert len(output["data"]) == int(np.prod(output["shape"])) > 0


def test_the_generator_takes_a_prompt_tensor_and_sampling_parameters(serve_api: Served) -> None:
    body = sample_infer("moby_gen")
    first, second = (serve_api.post("/v2/models/moby_gen/infer", body).json() for _ in range(2))
    assert first["outputs"] == second["outputs"]  # temperature 0: greedy, deterministic
    (text,) = first["outputs"]
    assert (text["name"], text["datatype"], text["shape"]) == ("text", "BYTES", [1])
    plain = serve_api.post(
        "/models/moby_gen/generate", {"prompt": body["inputs"][0]["data"][0], **body["parameters"]}
    ).json()
    assert text["data"] == plain["continuations"]
    sampled = {**body, "parameters": {"max_new_tokens": 10, "num_return_sequences": 3, "seed": 7}}
    answer = serve_api.post("/v2/models/moby_gen/infer", sampled).json()
    assert answer["outputs"][0]["shape"] == [3]
    too_long = {**body, "parameters": {"max_new_tokens": 100_000}}
    assert_protocol_error(
        serve_api.post("/v2/models/moby_gen/infer", too_long), 400, "parameters.max_new_tokens"
    )
    two = {"inputs": [{"name": "prompt", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}
    assert_protocol_error(serve_api.post("/v2/models/moby_gen/infer", two), 400, "one prompt")
