"""A model function's HTTP application: the plain and protocol Routers, errors mapped once.

The plain routes answer from a resolver without request validation; the Open Inference
Protocol's typed routes from a validating one, built at the first ``/v2`` request: pydantic and
the protocol's models load then, and a plain request never pays for them. Both resolvers map
errors through ``install_error_handlers``, so an error answers the same whichever one caught it.
The same application serves a dedicated model function and the multi-model function; the runtime
says which models it answers for.
"""

from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayHttpResolver, Router

from maas.core.errors import MaasError
from maas.core.observability import record_error
from maas.core.runtime import ModelRuntime
from maas.http.binary import is_binary, pack, unpack
from maas.http.errors import PROTOCOL_PREFIX, error_response, install_error_handlers
from maas.http.openai import openai_router
from maas.http.plain import plain_router
from maas.http.resolver import resolver
from maas.http.streaming import StreamSlot

_MODEL_IN_PATH = re.compile(r"^/(?:v2/)?models/([A-Za-z_][A-Za-z0-9_]*)(?:/|$)")


class ModelApp:
    """``/models/{m}[/predict|/generate]``, OpenAI's ``/v1`` routes and the Open Inference
    Protocol's model routes, the protocol on a resolver of its own; ``resolve`` picks it by the
    path, as the error mapping does. ``stream`` is where a streaming OpenAI route leaves its
    chunks when the transport can stream them."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.stream = StreamSlot()
        self.plain = self._resolver(
            [plain_router(runtime), openai_router(runtime, self.stream)], validation=False
        )
        self._protocol: APIGatewayHttpResolver | None = None

    @property
    def protocol(self) -> APIGatewayHttpResolver:
        """The typed ``/v2`` routes, built the first time they are asked for."""
        if self._protocol is None:
            from maas.http.protocol import protocol_router  # pydantic and the typed models

            self._protocol = self._resolver([protocol_router(self.runtime)], validation=True)
        return self._protocol

    def resolvers(self) -> list[APIGatewayHttpResolver]:
        return [self.plain, self.protocol]

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        path = event.get("rawPath") if isinstance(event, dict) else None
        protocol = isinstance(path, str) and path.startswith(PROTOCOL_PREFIX)
        if protocol and is_binary(event):
            return self._binary(event, context)
        app = self.protocol if protocol else self.plain
        response: dict[str, Any] = app.resolve(event, context)
        return response

    def _binary(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """A request in the binary tensor extension: unpacked into the JSON request the typed
        routes read, its answer packed back as binary where the client asked."""
        try:
            unpacked, wanted = unpack(event, self.runtime.settings.max_body_bytes)
        except MaasError as error:
            answer = error_response(error, protocol=True, request_id=getattr(context, "aws_request_id", None))
            return {
                "statusCode": answer.status_code,
                "headers": {"Content-Type": "application/json"},
                "body": answer.body,
                "isBase64Encoded": False,
            }
        return pack(self.protocol.resolve(unpacked, context), wanted)

    def documented(self) -> APIGatewayHttpResolver:
        """Both route families on one validating resolver with their error answers documented:
        what the OpenAPI document is generated from (never what serves)."""
        from maas.http.protocol import protocol_router

        return self._resolver(
            [
                plain_router(self.runtime, documented=True),
                openai_router(self.runtime, StreamSlot(), documented=True),
                protocol_router(self.runtime),
            ],
            validation=True,
        )

    def _resolver(self, routers: list[Router], *, validation: bool) -> APIGatewayHttpResolver:
        runtime = self.runtime
        app = resolver(lambda: runtime.settings.max_body_bytes, validation=validation)
        for router in routers:
            app.include_router(router)

        def record(error: MaasError, status: int) -> None:
            """Errors count against the model the path names (the multi-model function's many)."""
            model = runtime.model_name
            if runtime.multi_model:
                found = _MODEL_IN_PATH.match(app.current_event.raw_path)
                model = found.group(1) if found else model
            record_error(model, status, error.code)

        install_error_handlers(app, record)
        return app


def build_model_app(runtime: ModelRuntime) -> ModelApp:
    return ModelApp(runtime)
