"""spam_nb: TF-IDF + naive Bayes spam filter (ham/spam), served from the shared runtime layer.

Thin on purpose: the model is named here; everything else lives in the layer's ``maas`` package.
"""

from __future__ import annotations

from maas.dispatch import lambda_handler_for
from maas.http import build_http_app
from maas.runtime import ModelRuntime

runtime = ModelRuntime("spam_nb")
app = build_http_app(runtime)
lambda_handler = lambda_handler_for(runtime, app)  # HTTP, S3 batch inputs and SQS requests
