"""spam_lstm: Keras Embedding -> LSTM -> Dense(sigmoid) spam filter; the tokeniser is a versioned artifact applied by the layer.

Thin on purpose: the model is named here; everything else lives in the layer's ``maas`` package.
"""

from __future__ import annotations

from maas.dispatch import lambda_handler_for
from maas.http import build_http_app
from maas.runtime import ModelRuntime

runtime = ModelRuntime("spam_lstm")
app = build_http_app(runtime)
lambda_handler = lambda_handler_for(runtime, app)  # HTTP, S3 batch inputs and SQS requests
