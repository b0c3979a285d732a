"""The multi-model function's handler (``Handler: maas.entry.multi_model.lambda_handler``).

It answers ``/models/{model}/…`` and ``/v2/models/{model}/…`` for any model of the registry that
has no function of its own (API Gateway routes those to it): a version published a minute ago is
served at once, loaded on demand into the byte-bounded cache, without a stack deploy.
"""

from __future__ import annotations

from maas.entry import snapstart
from maas.entry.dispatch import ModelFunction


def create(model_name: str | None = None) -> ModelFunction:
    """A function instance of its own; ``model_name`` is ignored (it serves every model)."""
    return ModelFunction(multi_model=True)


function = create()
runtime = function.runtime
app = function.app
lambda_handler = function.lambda_handler
stream_handler = function.stream_handler  # a function URL in RESPONSE_STREAM mode (maas.entry.runtime_api)
runtime.prepare()  # the SDK setup at init; a missing setting is reported by the first request
snapstart.register_hooks(runtime)
