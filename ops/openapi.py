"""The OpenAPI 3 document of the HTTP API, generated from the typed routes the code registers.

Two resolvers make the API: a model function's (the same routes for every model, with the model as
a path parameter: the multi-model function answers the same ones) and the registry function's.
Powertools generates each one's document from the route signatures; this module merges them and writes ``openapi.json``, which is committed
and checked by the tests against the code and against ``template.yaml``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

import maas
from maas.core.registry import ModelRegistry
from maas.core.runtime import ModelRuntime
from maas.http.app import ModelApp, build_model_app
from maas.http.server import build_server_app
from training.data import PROJECT_ROOT

OPENAPI_PATH = PROJECT_ROOT / "openapi.json"
TITLE = "maas: serverless ONNX model serving (Open Inference Protocol v2)"
DESCRIPTION = (
    "Model routes are answered by each model's own Lambda function, server-wide routes by the "
    "registry function. Request validation failures are answered with 400 and the protocol's "
    '`{"error": "..."}` body (the plain `/models` routes use `{"error": {code, message, field}}`).'
)
# Powertools documents its own validation answers: 422 (these routes answer 400 instead) and a 500
# for a response that fails its own type (a bug, answered as any 500: not part of the contract).
_UNUSED_STATUSES = ("422", "500")
_UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError", "ResponseValidationError")


def apps() -> list[APIGatewayHttpResolver]:
    """The resolvers whose routes make the API: the multi-model function's (generic in the model,
    every route family documented on one resolver; a model function's are these but ``/v1``) and the registry function's. Nothing is called:
    no registry is needed to build them."""
    return [
        build_model_app(ModelRuntime(multi_model=True)).documented(),  # also OpenAI's /v1
        build_server_app(lambda: ModelRegistry("unused")),
    ]


def routes(app: APIGatewayHttpResolver | ModelApp) -> set[tuple[str, str]]:
    """(METHOD, /openapi/{path}) of the routes a function's app registers (a model function's
    both families)."""
    resolvers = app.resolvers() if isinstance(app, ModelApp) else [app]
    return {
        (route.method.upper(), route.openapi_path)
        for resolver in resolvers
        for route in resolver._static_routes + resolver._dynamic_routes  # where Powertools keeps them
    }


def registered_routes() -> set[tuple[str, str]]:
    """(METHOD, /openapi/{path}) of every route the code registers."""
    return set().union(*(routes(app) for app in apps()))


def document() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for app in apps():
        part = json.loads(
            app.get_openapi_json_schema(title=TITLE, version=maas.__version__, description=DESCRIPTION)
        )
        if not merged:
            merged = part
            continue
        merged["paths"].update(part["paths"])
        merged.setdefault("components", {}).setdefault("schemas", {}).update(
            part.get("components", {}).get("schemas", {})
        )
    for operations in merged["paths"].values():
        for operation in operations.values():
            for status in _UNUSED_STATUSES:
                operation.get("responses", {}).pop(status, None)
    schemas = merged.get("components", {}).get("schemas", {})
    for name in _UNUSED_SCHEMAS:
        schemas.pop(name, None)
    merged["paths"] = dict(sorted(merged["paths"].items()))
    merged["components"]["schemas"] = dict(sorted(schemas.items()))
    return merged


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


def write(path: Path = OPENAPI_PATH) -> None:
    path.write_text(render())


def check(path: Path = OPENAPI_PATH) -> list[str]:
    """Empty when the committed document equals the one the code generates now."""
    if not path.is_file():
        return [f"{path} does not exist: run `maas openapi`"]
    if path.read_text() != render():
        return [f"{path} differs from the routes the code registers: run `maas openapi`"]
    return []
