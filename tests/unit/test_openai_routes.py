"""OpenAI's routes on a model function, in-process: the error shape, model references, and the
buffered answer of a streaming route (API Gateway's HTTP API cannot stream)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from maas.core.errors import NotFound, RequestError
from maas.http.errors import route_family
from maas.http.openai_requests import ModelRef, parse_model
from tests.conftest import body_of, load_event, make_function, with_json_body


def openai_event(path: str, body: Any, *, raw: str | None = None) -> dict[str, Any]:
    event = with_json_body(load_event("spam_nb", "predict.json"), body)
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    if raw is not None:
        event["body"] = raw
    return event


@pytest.fixture
def spam_nb(registry: Any, spam_nb_dir: Path, s3: Any, tmp_path: Path) -> Any:
    registry.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    registry.set_alias("spam_nb", "canary", 2)
    return make_function("spam_nb", s3, tmp_path)


def test_model_references_name_a_version_or_an_alias() -> None:
    assert parse_model("spam_nb") == ModelRef("spam_nb")
    assert parse_model("spam_nb@12") == ModelRef("spam_nb", version=12)
    assert parse_model("spam_nb:canary") == ModelRef("spam_nb", alias="canary")
    for wrong in ("spam nb", "spam_nb@x", "spam_nb@0", "a:b:c", "../x", ""):
        with pytest.raises(NotFound):
            parse_model(wrong)
    for wrong_type in (None, 7, ["spam_nb"]):
        with pytest.raises(RequestError):
            parse_model(wrong_type)
    assert route_family("/v1/completions") == route_family("/models/x/v1/models") == "openai"
    assert (route_family("/v2/models/x"), route_family("/models/v1")) == ("protocol", "plain")


def test_errors_on_openai_routes_take_openai_shape(spam_nb: Any) -> None:
    cases = [
        (openai_event("/models/spam_nb/v1/completions", None, raw="{oops"), 400, "invalid_json", "body"),
        (
            openai_event("/models/spam_nb/v1/completions", {"model": "minilm", "prompt": "x"}),
            404,
            "model_not_found",
            "model",
        ),
        (
            openai_event("/models/spam_nb/v1/completions", {"model": "spam_nb@9", "prompt": "x"}),
            404,
            "version_not_found",
            "version",
        ),
        (
            openai_event("/models/spam_nb/v1/completions", {"model": "spam_nb:nope", "prompt": "x"}),
            404,
            "alias_not_found",
            "model",
        ),
        (
            openai_event("/models/spam_nb/v1/completions", {"model": "spam_nb", "prompt": "x"}),
            400,
            "wrong_route",
            "model",
        ),
        (
            openai_event("/models/spam_nb/v1/embeddings", {"model": "spam_nb", "input": "x"}),
            400,
            "wrong_route",
            "path",
        ),
        (openai_event("/models/spam_nb/v1/embeddings", {"input": "x"}), 400, "missing_field", "model"),
    ]
    for event, status, code, param in cases:
        response = spam_nb(event)
        assert response["statusCode"] == status, (event["body"], response["body"])
        error = body_of(response)["error"]
        assert error == {
            "message": error["message"],
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    # the plain routes keep their own shape
    plain = spam_nb(with_json_body(load_event("spam_nb", "predict.json"), {"instances": [7]}))
    assert set(body_of(plain)["error"]) == {"code", "message", "field", "request_id"}


def test_models_lists_the_function_s_own_model_with_its_served_version(spam_nb: Any) -> None:
    event = openai_event("/models/spam_nb/v1/models", None)
    event["requestContext"]["http"]["method"] = "GET"
    event.pop("body", None)
    answer = body_of(spam_nb(event))
    assert [(m["id"], m["object"], m["owned_by"], m["version"]) for m in answer["data"]] == [
        ("spam_nb", "model", "maas", "spam_nb@1")
    ]
    assert answer["object"] == "list" and answer["data"][0]["created"] > 1_600_000_000
    assert json.dumps(answer)  # plain JSON
