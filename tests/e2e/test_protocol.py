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

from tests.e2e.conftest import Served, start_serve
from training.events import SPAM_TEXTS

TEXTS = SPAM_TEXTS[:2]  # the sample events' texts: the small test model calls them spam, ham


def infer_body(texts: list[str] = TEXTS, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [{"name": "text", "shape": [len(texts), 1], "datatype": "BYTES", "data": texts}],
        **extra,
    }


def assert_protocol_error(response: requests.Response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    for word in words:
        assert word in body["error"], body
    return str(body["error"])


def test_health_and_server_metadata(served: Served) -> None:
    assert served.get("/v2/health/live").json() == {"live": True}
    assert served.get("/v2/health/ready").json() == {"ready": True}
    metadata = served.get("/v2")
    assert metadata.status_code == 200
    assert metadata.json()["name"] == "maas" and metadata.json()["version"] == "0.1.0"
    assert metadata.json()["extensions"] == []


def test_the_repository_index_lists_versions_with_their_state(served: Served) -> None:
    index = served.post("/v2/repository/index").json()
    assert {(e["name"], e["version"], e["state"], e["reason"]) for e in index} >= {
        ("spam_nb", "1", "READY", ""),
        ("spam_nb", "2", "READY", ""),
        ("spam_nb", "3", "UNAVAILABLE", "retired"),
    }
    ready_only = served.post("/v2/repository/index", {"ready": True}).json()
    assert ("spam_nb", "3") not in {(e["name"], e["version"]) for e in ready_only}


@pytest.mark.parametrize("path", ["/v2/models/spam_nb", "/v2/models/spam_nb/versions/2"])
def test_model_metadata_describes_the_onnx_signature(served: Served, path: str) -> None:
    response = served.get(path)
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
def test_model_readiness(served: Served, path: str) -> None:
    response = served.get(path)
    assert response.status_code == 200 and response.json() == {"name": "spam_nb", "ready": True}


def test_infer_echoes_the_id_and_answers_like_the_predict_route(served: Served) -> None:
    response = served.post("/v2/models/spam_nb/infer", infer_body(id="request-42"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"], body["id"]) == ("spam_nb", "1", "request-42")
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [2]
    assert outputs["probabilities"]["datatype"] == "FP32" and outputs["probabilities"]["shape"] == [2, 2]
    predicted = served.post("/models/spam_nb/predict", {"instances": TEXTS}).json()["predictions"]
    assert outputs["label"]["data"] == [p["label"] for p in predicted] == ["spam", "ham"]
    probabilities = np.array(outputs["probabilities"]["data"]).reshape(2, 2)
    expected = [[p["probabilities"]["ham"], p["probabilities"]["spam"]] for p in predicted]
    assert np.allclose(probabilities, expected, atol=1e-5)


def test_nested_data_flat_shape_and_requested_outputs(served: Served) -> None:
    body = {
        "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": [[TEXTS[0]], [TEXTS[1]]]}],
        "outputs": [{"name": "label"}],
        "parameters": {"note": "ignored"},
    }
    response = served.post("/v2/models/spam_nb/infer", body)
    assert response.status_code == 200, response.text
    assert "id" not in response.json()
    assert response.json()["outputs"] == [
        {"name": "label", "shape": [2], "datatype": "BYTES", "data": ["spam", "ham"]}
    ]


def test_versioned_infer_serves_that_version_whatever_the_alias_says(served: Served) -> None:
    response = served.post("/v2/models/spam_nb/versions/2/infer", infer_body())
    assert response.status_code == 200, response.text
    assert response.json()["model_version"] == "2"
    assert served.post("/v2/models/spam_nb/infer", infer_body()).json()["model_version"] == "1"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("POST", "/v2/models/nope/infer"),
        ("GET", "/v2/models/nope/versions/1"),
    ],
)
def test_an_unknown_model_is_a_protocol_404(served: Served, method: str, path: str) -> None:
    response = requests.request(method, served.url + path, json=infer_body(), timeout=60)
    assert_protocol_error(response, 404, "nope")


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/spam_nb/versions/99",
        "/v2/models/spam_nb/versions/99/ready",
        "/v2/models/spam_nb/versions/x",
    ],
)
def test_an_unknown_version_is_a_404(served: Served, path: str) -> None:
    assert_protocol_error(served.get(path), 404, "version")


def test_an_unknown_version_cannot_infer(served: Served) -> None:
    assert_protocol_error(
        served.post("/v2/models/spam_nb/versions/99/infer", infer_body()), 404, "no version 99"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/spam_nb/versions/3"),
        ("GET", "/v2/models/spam_nb/versions/3/ready"),
        ("POST", "/v2/models/spam_nb/versions/3/infer"),
    ],
)
def test_a_retired_version_is_gone(served: Served, method: str, path: str) -> None:
    response = requests.request(method, served.url + path, json=infer_body(), timeout=60)
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
    served: Served, body: Any, words: list[str]
) -> None:
    for path in ("/v2/models/spam_nb/infer", "/v2/models/spam_nb/versions/1/infer"):
        assert_protocol_error(served.post(path, body), 400, *words)


def test_a_body_that_is_not_json_is_a_400(served: Served) -> None:
    response = served.post(
        "/v2/models/spam_nb/infer", data=b"{not json", headers={"content-type": "application/json"}
    )
    assert_protocol_error(response, 400, "not valid JSON")
    assert_protocol_error(served.post("/v2/models/spam_nb/infer"), 400, "body")


def test_a_body_without_content_type_reaches_the_function_base64_encoded(served: Served) -> None:
    raw = json.dumps(infer_body()).encode()
    response = served.post("/v2/models/spam_nb/infer", data=raw)  # no content-type: binary to API Gateway
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == ["spam", "ham"]
    other = served.post("/v2/models/spam_nb/infer", data=raw, headers={"content-type": "image/png"})
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
