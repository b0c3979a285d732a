"""digits_cnn: Keras CNN on 8x8 digits; images as nested arrays or base64 PNG, validated by the layer.

Thin on purpose: the model is named here; everything else lives in the layer's ``maas`` package.
"""

from __future__ import annotations

from maas.dispatch import lambda_handler_for
from maas.http import build_http_app
from maas.runtime import ModelRuntime

runtime = ModelRuntime("digits_cnn")
app = build_http_app(runtime)
lambda_handler = lambda_handler_for(runtime, app)  # HTTP, S3 batch inputs and SQS requests
