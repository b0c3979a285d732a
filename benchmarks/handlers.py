"""A model function's real handler, warm and timed per call, for the warm-overhead benchmarks."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from contextlib import redirect_stdout
from typing import Any

from ops.local import LambdaContext, environment, function_environment, load_function_module
from ops.template import function_for_model


def warm_handler(model: str, env: dict[str, str]) -> tuple[Callable[[dict[str, Any]], float], Any]:
    """Milliseconds per call through ``lambda_handler`` (event parsing, validation, inference,
    metrics, logging), as Lambda calls it in a warm environment; the EMF output goes to an
    in-memory sink, and the environment is set around each call outside the timed part. Also
    returns the function's module (its runtime serves the loaded version to other sides)."""
    spec = function_for_model(model)
    with environment(function_environment(spec, env)):
        module = load_function_module(spec)
        module.runtime.reset()
    context = LambdaContext(function_name=spec.logical_id, memory_limit_in_mb=spec.memory_mb)
    sink = io.StringIO()

    def call(event: dict[str, Any]) -> float:
        with environment(function_environment(spec, env)), redirect_stdout(sink):
            started = time.perf_counter()
            response = module.lambda_handler(event, context)
            elapsed = (time.perf_counter() - started) * 1000
        if response["statusCode"] != 200:
            raise RuntimeError(f"{model} answered {response}")
        sink.seek(0)
        sink.truncate()
        return elapsed

    return call, module
