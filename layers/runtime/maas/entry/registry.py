"""The registry function's handler (``Handler: maas.entry.registry.lambda_handler``): the
server-wide Open Inference Protocol routes (health, server metadata, the repository index).

It imports neither numpy nor onnxruntime: it opens no model, it reads the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.logging import correlation_paths

from maas.core.observability import logger, traced
from maas.core.registry import ModelRegistry
from maas.core.settings import Settings
from maas.http.server import build_server_app


class RegistryRuntime:
    """The registry client of one execution environment, created on the first request."""

    def __init__(self) -> None:
        self._environ: Mapping[str, str] | None = None
        self._s3_client: Any | None = None
        self._kms_client: Any | None = None
        self._registry: ModelRegistry | None = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            # the same settings as a model function's (MODEL_BUCKET, MANIFEST_SIGNING_KEY), no model
            settings = Settings.from_env(environ=self._environ, multi_model=True)
            self._registry = ModelRegistry.from_settings(settings, self._s3_client, self._kms_client)
        return self._registry

    def reset(
        self,
        environ: Mapping[str, str] | None = None,
        s3_client: Any | None = None,
        kms_client: Any | None = None,
    ) -> None:
        self._environ, self._s3_client, self._registry = environ, s3_client, None
        self._kms_client = kms_client


class RegistryFunction:
    def __init__(self) -> None:
        self.runtime = RegistryRuntime()
        self.app = build_server_app(lambda: self.runtime.registry)

        @logger.inject_lambda_context(
            correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True
        )
        @traced
        def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            response: dict[str, Any] = self.app.resolve(event, context)
            return response

        self.lambda_handler = lambda_handler


def create(model_name: str | None = None) -> RegistryFunction:
    """A function instance of its own (the local tools run several in one process)."""
    return RegistryFunction()


function = create()
runtime = function.runtime
app = function.app
lambda_handler = function.lambda_handler
