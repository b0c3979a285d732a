"""The server-wide Open Inference Protocol routes, served by the small registry function.

Health, server metadata and the model list belong to no single model, so one function answers
them from the registry bucket; each model's own function answers its model routes. Any path
no other route declares lands here too (a catch-all route in ``template.yaml``), so a client
asking for a model that does not exist gets the protocol's 404 instead of API Gateway's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, Field

import maas
from maas.errors import ConfigurationError
from maas.http import install_error_handlers, resolver
from maas.inference_protocol import error_responses
from maas.registry import STATUS_ACTIVE, ModelRegistry

SERVER_NAME = "maas"
# Triton's model repository extension: only its index is implemented, so none is advertised.
EXTENSIONS: list[str] = []
INDEX_BODY_LIMIT = 4096


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class RepositoryIndexRequest(BaseModel):
    ready: bool | None = Field(default=None, description="true: only versions that can be served")


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str
    state: str = Field(description="READY or UNAVAILABLE")
    reason: str


class RegistryRuntime:
    """The registry client of one execution environment, created on the first request."""

    def __init__(self) -> None:
        self._environ: Mapping[str, str] | None = None
        self._s3_client: Any | None = None
        self._registry: ModelRegistry | None = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            env = os.environ if self._environ is None else self._environ
            bucket = env.get("MODEL_BUCKET", "")
            if not bucket:
                raise ConfigurationError(
                    "MODEL_BUCKET is not set: the function cannot find its registry", field="MODEL_BUCKET"
                )
            self._registry = ModelRegistry(bucket, self._s3_client)
        return self._registry

    def reset(self, environ: Mapping[str, str] | None = None, s3_client: Any | None = None) -> None:
        self._environ, self._s3_client, self._registry = environ, s3_client, None


def repository_index(registry: ModelRegistry, only_ready: bool) -> list[RepositoryIndexEntry]:
    """Every published version with its state: retired ones are UNAVAILABLE, with the reason."""
    entries = []
    for name in registry.list_models():
        for version in registry.list_versions(name):
            status = registry.status(name, version)
            ready = status == STATUS_ACTIVE
            if only_ready and not ready:
                continue
            entries.append(
                RepositoryIndexEntry(
                    name=name,
                    version=str(version),
                    state="READY" if ready else "UNAVAILABLE",
                    reason="" if ready else status,
                )
            )
    return entries


def build_registry_app(runtime: RegistryRuntime) -> APIGatewayHttpResolver:
    app = resolver(lambda: INDEX_BODY_LIMIT)
    tags = ["Open Inference Protocol v2"]

    @app.get("/v2/health/live", summary="Server liveness", tags=tags)
    def live() -> LiveResponse:
        return LiveResponse(live=True)

    @app.get(
        "/v2/health/ready",
        summary="Server readiness: the registry can be read",
        tags=tags,
        responses=error_responses(503),
    )
    def ready() -> ReadyResponse:
        runtime.registry.list_models()
        return ReadyResponse(ready=True)

    @app.get("/v2", summary="Server metadata", tags=tags)
    def server_metadata() -> ServerMetadataResponse:
        return ServerMetadataResponse(name=SERVER_NAME, version=maas.__version__, extensions=EXTENSIONS)

    @app.post(
        "/v2/repository/index",
        summary="Model list (Triton's model repository index)",
        tags=tags,
        responses=error_responses(400, 413, 415, 503),
    )
    def index(
        request: Annotated[RepositoryIndexRequest | None, Body()] = None,
    ) -> list[RepositoryIndexEntry]:
        return repository_index(runtime.registry, bool(request and request.ready))

    install_error_handlers(app)
    return app
