"""OpenAI's API through `maas serve`, called by the unmodified `openai` package (and LangChain).

The server is the session's `maas serve` (tests/e2e/conftest.py) with minilm published next to
the other models: `/v1` reaches the multi-model function (any registry model), and
`/models/minilm/v1` the minilm function of its own.
"""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import openai
import pytest

from tests.e2e.conftest import Served

TEXTS = ["Free entry in a weekly competition to win tickets", "see you at lunch tomorrow?"]


@pytest.fixture(scope="module")
def served(serve_api: Served, minilm_versions: dict[str, Path]) -> Served:
    registry = serve_api.registry
    if registry.get_alias("minilm", "production") is None:
        registry.publish(minilm_versions["fp32"])
        registry.publish(minilm_versions["int8"])
        registry.set_alias("minilm", "production", 1)
    return serve_api


def client(served: Served, prefix: str = "/v1") -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + prefix, api_key="unused-locally", max_retries=0, timeout=120)


@pytest.mark.parametrize("prefix", ["/v1", "/models/minilm/v1"])
def test_embeddings_equal_the_plain_embed_routes_and_name_the_version(served: Served, prefix: str) -> None:
    plain = served.post("/models/minilm/embed", {"instances": TEXTS})
    assert plain.status_code == 200, plain.text
    answer = client(served, prefix).embeddings.create(model="minilm", input=TEXTS)
    assert answer.model == "minilm@1"
    assert [d.index for d in answer.data] == [0, 1]
    got = np.array([d.embedding for d in answer.data])
    np.testing.assert_allclose(got, np.array(plain.json()["embeddings"]), rtol=0, atol=1e-6)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > len(" ".join(TEXTS).split())


def test_embeddings_in_base64_a_version_by_number_and_by_alias(served: Served) -> None:
    raw = served.post(
        "/v1/embeddings", {"model": "minilm@2", "input": TEXTS[0], "encoding_format": "base64"}
    ).json()
    assert raw["model"] == "minilm@2"
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    int8 = served.post("/v1/embeddings", {"model": "minilm:production", "input": [TEXTS[0]]}).json()
    assert int8["model"] == "minilm@1"
    assert vector.shape == (384,)
    # version 2 is the int8 variant: close to fp32's, not equal
    assert 0.98 < float(vector @ np.array(int8["data"][0]["embedding"])) < 1.0


def test_models_list_names_the_served_models(served: Served) -> None:
    listed = {m.id: m for m in client(served).models.list()}
    assert {"minilm", "spam_nb", "moby_gen"} <= set(listed)
    assert listed["spam_nb"].owned_by == "maas"
    assert json.loads(listed["minilm"].model_dump_json())["version"] == "minilm@1"
    own = [m.id for m in client(served, "/models/minilm/v1").models.list()]
    assert own == ["minilm"]


def test_a_bad_request_raises_bad_request_error_with_our_message(served: Served) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(served).embeddings.create(model="minilm", input=[TEXTS[0], 7])
    error = caught.value
    assert error.status_code == 400
    assert error.code == "invalid_type"
    assert error.param == "input[1]"
    assert "token ids are not accepted" in error.message
    with pytest.raises(openai.NotFoundError) as missing:
        client(served).embeddings.create(model="no_such_model", input="hello")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as wrong:  # a classifier does not embed
        client(served).embeddings.create(model="spam_nb", input="hello")
    assert wrong.value.code == "wrong_route"


def test_fields_the_server_does_not_know_are_ignored(served: Served) -> None:
    answer = client(served).embeddings.create(
        model="minilm", input="hello", user="someone", extra_body={"a_field_from_the_future": {"x": 1}}
    )
    assert len(answer.data[0].embedding) == 384


def test_hostile_embedding_bodies_are_openai_shaped_400s(served: Served) -> None:
    bodies: list[Any] = [
        {"model": "minilm", "input": ["x"] * 10_000},
        {"model": "minilm", "input": [[1, 2, 3]]},
        {"model": "minilm", "input": "x", "encoding_format": "int4"},
        {"model": ["minilm"], "input": "x"},
        {"model": "minilm", "input": {"text": "x"}},
        {"model": "minilm", "input": []},
        {"model": "minilm@0", "input": "x"},
        {"model": "minilm:no-such-alias", "input": "x"},
    ]
    for body in bodies:
        response = served.post("/v1/embeddings", body)
        assert 400 <= response.status_code < 500, (body, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert error["type"] == "invalid_request_error"
    assert (
        served.post(
            "/v1/embeddings", data=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )


def test_a_non_streamed_answer_keeps_its_length_and_an_unknown_route_is_a_404(served: Served) -> None:
    host, port = urlsplit(served.url).hostname, urlsplit(served.url).port
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.recv(4096)
    assert b"content-length:" in head.lower() and b"transfer-encoding" not in head.lower()
    assert served.get("/v1/nothing-here").status_code == 404
