"""moby_gen: character-level GRU text generator; a one-step ONNX graph decoded by the layer.

Thin on purpose: the model is named here; everything else lives in the layer's ``maas`` package.
"""

from __future__ import annotations

from maas.dispatch import lambda_handler_for
from maas.http import build_http_app
from maas.runtime import ModelRuntime

runtime = ModelRuntime("moby_gen")
app = build_http_app(runtime, generation=True)
lambda_handler = lambda_handler_for(runtime, app)  # HTTP, S3 batch inputs and SQS requests
