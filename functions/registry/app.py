"""registry: the server-wide Open Inference Protocol routes (health, server metadata, model list).

Thin on purpose: the routes live in the layer's ``maas.registry_api``.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.observability import logger, traced
from maas.registry_api import RegistryRuntime, build_registry_app

runtime = RegistryRuntime()
app = build_registry_app(runtime)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
