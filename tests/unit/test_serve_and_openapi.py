"""`maas serve`'s payload-2.0 events against SAM's, and the OpenAPI document against the code and
template.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops.local import load_function_module
from ops.openapi import OPENAPI_PATH, check, registered_routes, routes
from ops.serve import RouteTable, build_event
from ops.template import functions

SAM = str(Path(sys.executable).parent / "sam")
# Keys API Gateway sends only when there is something to send, or only with an authorizer.
OPTIONAL = {"stageVariables", "cookies", "authorizer", "authentication"}


def sam_event(method: str, path: str, body: str) -> dict[str, Any]:
    command = [SAM, "local", "generate-event", "apigateway", "http-api-proxy", "--method", method]
    command += ["--path", path.lstrip("/"), "--body", body]
    event: dict[str, Any] = json.loads(
        subprocess.run(command, check=True, capture_output=True, text=True).stdout
    )
    return event


# Maps whose keys are the request's own (header names, parameters): compared by value types only.
FREE_MAPS = {"headers", "pathParameters", "queryStringParameters"}


def shape(value: Any, optional: set[str] = OPTIONAL) -> Any:
    """Keys and value types, recursively: what "the same event" means across two requests."""
    if isinstance(value, dict):
        return {
            k: {"*": sorted({type(x).__name__ for x in v.values()})} if k in FREE_MAPS else shape(v)
            for k, v in value.items()
            if k not in optional
        }
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_maas_serve_builds_the_event_sam_generates_for_the_same_request() -> None:
    table = RouteTable(functions())
    found = table.match("POST", "/v2/models/spam_nb/versions/2/infer")
    assert found is not None
    route, params = found
    assert (route.function, params) == ("SpamNbFunction", {"version": "2"})
    body = '{"inputs": []}'
    ours = build_event(
        method="POST",
        target="/v2/models/spam_nb/versions/2/infer?parameter1=value1&parameter1=value2&parameter2=value",
        headers=[("Host", "127.0.0.1:3000"), ("Content-Type", "application/json"), ("Cookie", "a=1; b=2")],
        body=body.encode(),
        route=route,
        path_parameters=params,
    )
    theirs = sam_event("POST", "/v2/models/spam_nb/versions/2/infer", body)
    assert shape(ours) == shape(theirs)
    assert set(theirs) - set(ours) <= OPTIONAL
    assert ours["queryStringParameters"] == {"parameter1": "value1,value2", "parameter2": "value"}
    assert ours["cookies"] == ["a=1", "b=2"] and "cookie" not in ours["headers"]
    assert (
        ours["routeKey"]
        == ours["requestContext"]["routeKey"]
        == "POST /v2/models/spam_nb/versions/{version}/infer"
    )
    assert (ours["body"], ours["isBase64Encoded"]) == (body, False)


def test_a_binary_body_is_base64_encoded_in_the_event() -> None:
    route, params = RouteTable(functions()).match("POST", "/v2/models/spam_nb/infer") or (None, {})
    assert route is not None
    event = build_event(
        method="POST",
        target="/v2/models/spam_nb/infer",
        headers=[("Content-Type", "image/png")],
        body=b"\x89PNG\x00",
        route=route,
        path_parameters=params,
    )
    assert event["isBase64Encoded"] is True and event["body"] == "iVBORwA="
    assert "pathParameters" not in event and "queryStringParameters" not in event


def test_routes_are_matched_as_api_gateway_does() -> None:
    table = RouteTable(functions())
    assert table.match("GET", "/v2/health/live")[0].function == "RegistryFunction"  # type: ignore[index]
    assert table.match("GET", "/v2/models/spam_nb")[0].function == "SpamNbFunction"  # type: ignore[index]
    catch_all = table.match("DELETE", "/v2/models/spam_nb/extra/path")
    assert catch_all is not None and catch_all[0].function == "RegistryFunction"
    assert catch_all[1] == {"proxy": "v2/models/spam_nb/extra/path"}


def test_the_committed_openapi_document_is_what_the_code_generates() -> None:
    assert check() == []


def test_the_openapi_document_has_exactly_the_registered_routes() -> None:
    document = json.loads(OPENAPI_PATH.read_text())
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert documented == registered_routes()
    assert document["openapi"].startswith("3.")


def test_each_function_declares_in_template_yaml_exactly_the_routes_its_code_registers() -> None:
    """template.yaml, the handlers' resolvers and openapi.json agree, function by function (the
    registry function's catch-all aside, which exists only in API Gateway)."""
    document = json.loads(OPENAPI_PATH.read_text())
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    for spec in functions():
        generic = routes(load_function_module(spec).app)
        assert generic <= documented, spec.logical_id
        # a model function's routes name its model; the multi-model function's keep {model}
        model = spec.model_name or "{model}"
        registered = {(m, p.replace("{model}", model)) for m, p in generic}
        declared = {(r.method, r.path) for r in spec.routes if r.path != "/{proxy+}"}
        # OpenAI's routes are declared as one greedy route per prefix (ops/template_gen.py): each
        # covers the routes the code registers under it, and covers at least one
        greedy = {p.removesuffix("{proxy+}") for m, p in declared if p.endswith("/{proxy+}")}
        covered = {(m, p) for m, p in registered if any(p.startswith(prefix) for prefix in greedy)}
        assert all(any(p.startswith(prefix) for _, p in covered) for prefix in greedy), spec.logical_id
        exact = {(m, p) for m, p in declared if not p.endswith("/{proxy+}")}
        assert registered - covered == exact, spec.logical_id


@pytest.mark.parametrize("path", [OPENAPI_PATH])
def test_the_openapi_document_is_a_valid_openapi_3_document(path: Path) -> None:
    from openapi_spec_validator import validate

    validate(json.loads(path.read_text()))
