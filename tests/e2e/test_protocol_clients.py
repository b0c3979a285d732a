"""`maas serve` with unmodified clients: Triton's Python HTTP client, and schemathesis fuzzing
every operation of the committed OpenAPI document (no 5xx, every answer as documented)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import numpy as np
import requests
import schemathesis
import tritonclient.http as triton
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ops.events import SPAM_TEXTS
from ops.openapi import OPENAPI_PATH
from tests.conftest import load_event
from tests.e2e.conftest import Served

FUZZ_EXAMPLES = 15
# What "matches the document" means here: never a 5xx, a documented status, content type and body.
# (Not schemathesis' positive-data check: a schema-valid tensor can still disagree with the model.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_tritons_http_client_checks_health_reads_metadata_and_infers(serve_api: Served) -> None:
    client = triton.InferenceServerClient(url=serve_api.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["name"] == "maas"
    assert client.is_model_ready("spam_nb") and client.is_model_ready("spam_nb", "2")
    assert not client.is_model_ready("spam_nb", "3")  # retired
    metadata = client.get_model_metadata("spam_nb")
    assert metadata["platform"] == "onnx" and metadata["inputs"][0]["datatype"] == "BYTES"
    text = triton.InferInput("text", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array(SPAM_TEXTS[:2], dtype=object).reshape(2, 1), binary_data=False)
    outputs = [triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")]
    result = client.infer("spam_nb", [text], outputs=outputs, request_id="triton-1", model_version="2")
    response = result.get_response()
    assert (response["model_version"], response["id"]) == ("2", "triton-1")
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == ["spam", "ham"]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # the image model, FP32 tensors
    images = np.asarray(json.loads(load_event("digits_cnn", "infer.json")["body"])["inputs"][0]["data"])
    image = triton.InferInput("image", [2, 8, 8, 1], "FP32")
    image.set_data_from_numpy(images.reshape(2, 8, 8, 1).astype(np.float32), binary_data=False)
    digits = client.infer(
        "digits_cnn", [image], outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)]
    )
    scores = digits.as_numpy("probabilities")
    assert scores.dtype == np.float32 and scores.shape == (2, 10)
    predicted = requests.post(
        serve_api.url + "/models/digits_cnn/predict", json={"instances": images.tolist()}, timeout=60
    ).json()["predictions"]
    assert np.allclose(scores, [list(p["probabilities"].values()) for p in predicted], atol=1e-5)
    assert client.get_model_metadata("digits_cnn")["inputs"][0]["datatype"] == "FP32"
    client.close()


def test_tritons_http_client_with_its_default_arguments_sends_and_gets_binary_tensors(
    serve_api: Served,
) -> None:
    """set_data_from_numpy and InferRequestedOutput default to the binary tensor extension; no
    outputs named asks for every output as binary (binary_data_output)."""
    client = triton.InferenceServerClient(url=serve_api.url.removeprefix("http://"))
    text = triton.InferInput("text", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array(SPAM_TEXTS[:2], dtype=object).reshape(2, 1))
    result = client.infer("spam_nb", [text])
    assert [v.decode() for v in result.as_numpy("label")] == ["spam", "ham"]
    assert result.get_output("probabilities")["parameters"]["binary_data_size"] == 2 * 2 * 4
    plain = requests.post(
        serve_api.url + "/models/spam_nb/predict", json={"instances": SPAM_TEXTS[:2]}, timeout=60
    )
    want = [[p["probabilities"][label] for label in ("ham", "spam")] for p in plain.json()["predictions"]]
    assert np.allclose(result.as_numpy("probabilities"), want, atol=1e-6)
    images = np.asarray(json.loads(load_event("digits_cnn", "infer.json")["body"])["inputs"][0]["data"])
    image = triton.InferInput("image", [2, 8, 8, 1], "FP32")
    image.set_data_from_numpy(images.reshape(2, 8, 8, 1).astype(np.float32))
    digits = client.infer("digits_cnn", [image], outputs=[triton.InferRequestedOutput("probabilities")])
    scores = digits.as_numpy("probabilities")
    predicted = requests.post(
        serve_api.url + "/models/digits_cnn/predict", json={"instances": images.tolist()}, timeout=60
    ).json()["predictions"]
    assert np.allclose(scores, [list(p["probabilities"].values()) for p in predicted], atol=1e-5)
    print(
        f"tritonclient defaults: spam_nb labels {[v.decode() for v in result.as_numpy('label')]}, digits_cnn argmax {scores.argmax(axis=1).tolist()}"
    )
    # a binary request whose sizes do not add up is a 400 naming the field
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "image",
                    "shape": [1, 8, 8, 1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 256},
                }
            ]
        }
    ).encode()
    broken = requests.post(
        serve_api.url + "/v2/models/digits_cnn/infer",
        data=header + bytes(100),
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=60,
    )
    assert broken.status_code == 400 and broken.json()["code"] == "invalid_binary"
    assert "binary_data_size" in broken.json()["error"]
    client.close()


def fuzz_schema(url: str) -> Any:
    config = SchemathesisConfig.from_dict(
        {
            "base-url": url,
            "seed": 6,
            "generation": {"max-examples": FUZZ_EXAMPLES},
        }
    )
    return schemathesis.openapi.from_path(str(OPENAPI_PATH), config=config)


def fuzz(
    operation: Any, mode: GenerationMode, model: str, statuses: Counter[int], failures: list[str]
) -> None:
    """Up to FUZZ_EXAMPLES requests generated from the operation's schema (fitting it, or not:
    ``mode``), each answer checked against the document."""

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    @given(operation.as_strategy(mode))
    def check(case: Any) -> None:
        if case.path_parameters and "model" in case.path_parameters:
            case.path_parameters["model"] = model  # a real model (and an unknown one): fuzz the rest
        response = case.call()
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as error:  # collect every failure, report them together
            failures.append(f"{operation.label} {response.status_code}: {str(error)[:300]}")
        assert response.status_code < 500, response.text

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise  # only a route with nothing to get wrong (no parameters, no body) has no negative case


def test_fuzzing_the_openapi_document_finds_no_5xx_and_no_undocumented_answer(serve_api: Served) -> None:
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for model in ("spam_nb", "digits_cnn", "nope"):
            for result in fuzz_schema(serve_api.url).get_all_operations():
                operation = result.ok()
                if model == "spam_nb" or "{model}" in operation.path:  # other models: their routes only
                    fuzz(operation, mode, model, statuses, failures)
    print(f"\nfuzzing: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}")
    assert not failures, "\n".join(failures[:10])
    assert statuses[200] > 0 and statuses[400] > 0 and statuses[404] > 0
