"""The server-wide Open Inference Protocol routes, served by the small registry function.

Health, server metadata and the model list belong to no single model, so one function answers
them from the registry bucket; each model's own function answers its model routes. Any path
no other route declares lands here too (a catch-all route in ``template.yaml``), so a client
asking for a model that does not exist gets the protocol's 404 instead of API Gateway's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, Field

import maas
from maas.core.errors import MaasError, ModelUnavailable
from maas.core.observability import logger
from maas.core.readiness import unready_reason
from maas.core.registry import ModelRegistry
from maas.http.errors import install_error_handlers, public_message
from maas.http.protocol_types import error_responses
from maas.http.resolver import resolver

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


def repository_index(registry: ModelRegistry, only_ready: bool) -> list[RepositoryIndexEntry]:
    """Every published version with its state: one that cannot be served (retired, incomplete,
    replaced, a task this runtime does not serve) is UNAVAILABLE, with the reason."""
    entries = []
    for name in registry.list_models():
        for version in registry.list_versions(name):
            reason = unready_reason(registry, name, version)
            if only_ready and reason is not None:
                continue
            entries.append(
                RepositoryIndexEntry(
                    name=name,
                    version=str(version),
                    state="READY" if reason is None else "UNAVAILABLE",
                    reason=public_message(reason or ""),
                )
            )
    return entries


def build_server_app(registry: Callable[[], ModelRegistry]) -> APIGatewayHttpResolver:
    """The server-wide routes over the registry that ``registry()`` gives (created on first use)."""
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
        try:
            registry().list_models()
        except MaasError as error:
            logger.error("the registry cannot be read", extra={"error": error.to_dict()})
            raise ModelUnavailable(
                "not ready: the model registry cannot be read", code="registry_unavailable"
            ) from None
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
        return repository_index(registry(), bool(request and request.ready))

    install_error_handlers(app)
    return app
