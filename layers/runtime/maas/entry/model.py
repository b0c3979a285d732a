"""The handler of every model function (``Handler: maas.entry.model.lambda_handler``).

No per-model code: ``MODEL_NAME`` names the model, and the served version's task decides which
routes answer. SnapStart hooks are registered here, when Lambda initialises for a snapshot.
"""

from __future__ import annotations

from maas.entry import snapstart
from maas.entry.dispatch import ModelFunction


def create(model_name: str | None = None) -> ModelFunction:
    """A function instance of its own (the local tools run several in one process)."""
    return ModelFunction(model_name)


function = create()
runtime = function.runtime
app = function.app
lambda_handler = function.lambda_handler  # HTTP, S3 batch inputs and SQS requests
stream_handler = function.stream_handler  # a function URL in RESPONSE_STREAM mode (maas.entry.runtime_api)
runtime.prepare()  # the SDK setup at init; a missing setting is reported by the first request
snapstart.register_hooks(runtime)
