"""spam_lstm: Keras Embedding -> LSTM -> Dense(sigmoid) spam filter; the tokeniser is a versioned artifact applied by the layer.

Thin on purpose: the model is named here; everything else lives in the layer's ``maas`` package.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from maas.dispatch import build_handler
from maas.http import build_http_app
from maas.observability import logger, metrics, traced
from maas.runtime import ModelRuntime

runtime = ModelRuntime("spam_lstm")
app = build_http_app(runtime)
handle = build_handler(runtime, app)  # HTTP, S3 batch inputs and SQS requests


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics
@traced
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
