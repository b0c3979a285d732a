"""A model function's HTTP application: one resolver, the plain and protocol Routers, errors mapped.

The same application serves a dedicated model function and the multi-model function; the
runtime says which models it answers for.
"""

from __future__ import annotations

import re

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from maas.core.errors import MaasError
from maas.core.observability import record_error
from maas.core.runtime import ModelRuntime
from maas.http.errors import install_error_handlers
from maas.http.plain import plain_router
from maas.http.protocol import protocol_router
from maas.http.resolver import resolver

_MODEL_IN_PATH = re.compile(r"^/(?:v2/)?models/([A-Za-z_][A-Za-z0-9_]*)(?:/|$)")


def build_model_app(runtime: ModelRuntime) -> APIGatewayHttpResolver:
    """``/models/{m}[/predict|/generate]`` and the Open Inference Protocol's model routes."""
    app = resolver(lambda: runtime.settings.max_body_bytes)
    app.include_router(plain_router(runtime))
    app.include_router(protocol_router(runtime))

    def record(error: MaasError, status: int) -> None:
        """Errors count against the model the path names (the multi-model function's many)."""
        model = runtime.model_name
        if runtime.multi_model:
            found = _MODEL_IN_PATH.match(app.current_event.raw_path)
            model = found.group(1) if found else model
        record_error(model, status, error.code)

    def hidden() -> list[str]:
        settings = runtime.settings
        return [settings.model_bucket, settings.data_bucket or ""]

    install_error_handlers(app, record, hidden)
    return app
