"""`maas serve`'s payload-2.0 events against SAM's, and the OpenAPI document against the code and
template.yaml."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from training.openapi import OPENAPI_PATH, check, registered_routes
from training.serve import RouteTable, build_event
from training.template import functions

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


def as_pattern(openapi_path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[a-z_]+\}", "[^/]+", openapi_path) + "$")


def test_template_routes_and_openapi_paths_agree() -> None:
    """Each route template.yaml declares is documented (the catch-all aside), and each documented
    route is declared for every model function (model paths) or for the registry function."""
    document = json.loads(OPENAPI_PATH.read_text())
    documented = [(m.upper(), as_pattern(p), p) for p, ops in document["paths"].items() for m in ops]
    declared = [(r.method, r.path, spec) for spec in functions() for r in spec.routes]
    for method, path, _ in declared:
        if path == "/{proxy+}":
            continue
        concrete = re.sub(r"\{[a-z_]+\}", "1", path)
        assert any(m == method and pattern.match(concrete) for m, pattern, _ in documented), (method, path)
    models = [spec for spec in functions() if spec.model_name]
    for method, _, openapi_path in documented:
        owners = models if "{model}" in openapi_path else [s for s in functions() if not s.model_name]
        for spec in owners:
            wanted = openapi_path.replace("{model}", spec.model_name or "")
            assert (method, wanted) in {(r.method, r.path) for r in spec.routes}, (
                spec.logical_id,
                method,
                wanted,
            )


@pytest.mark.parametrize("path", [OPENAPI_PATH])
def test_the_openapi_document_is_a_valid_openapi_3_document(path: Path) -> None:
    from openapi_spec_validator import validate

    validate(json.loads(path.read_text()))
