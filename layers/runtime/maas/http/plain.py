"""The plain JSON routes of a model function, as a Powertools ``Router``.

``POST /models/{m}/predict`` (``{"instances": [...]}``), ``POST /models/{m}/generate`` (a prompt
and decoding settings), ``POST /models/{m}/embed`` (``{"instances": ["text", ...]}``; the answer
counts the texts cut at the model's maximum length) and ``GET /models/{m}``. Every verb is declared
for every model: the served version's task decides which one answers (``maas.core.pipeline``),
and the others are a 400 that names the verb the model takes. The routes are thin: the pipeline does the work.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from maas.core import pipeline
from maas.core.deadline import deadline_for
from maas.core.decode import check_instances
from maas.core.observability import record_generation, record_metadata_request, record_prediction
from maas.core.runtime import ModelRuntime
from maas.core.service import ServedModel
from maas.http.resolver import read_json_object

PLAIN = ["Plain JSON"]


def plain_router(runtime: ModelRuntime, *, documented: bool = False) -> Router:
    """The plain routes; ``documented`` adds their error answers' types for the OpenAPI document
    (pydantic models: a serving function never builds them)."""
    router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated

    def errors(*statuses: int) -> dict[str, Any]:
        if not documented:
            return {}
        from maas.http.protocol_types import PlainError, error_responses

        return {"responses": error_responses(*statuses, model=PlainError)}

    def scored(model: str, verb: str) -> tuple[ServedModel, pipeline.Scored]:
        """The request's instances run by the served version, whose task must take ``verb``."""
        name = runtime.model_for(model)
        settings = runtime.settings
        body = read_json_object(router.current_event, settings.max_body_bytes)
        instances = check_instances(body.get("instances"), settings.max_batch)
        served = runtime.service.current(name)
        pipeline.for_verb(served, verb)
        return served, pipeline.predict(served, instances)

    @router.post(
        "/models/<model>/predict",
        summary='Predict: {"instances": [...]}',
        tags=PLAIN,
        **errors(400, 404, 413, 503),
    )
    def predict(model: str) -> dict[str, Any]:
        served, result = scored(model, "predict")
        record_prediction(
            served.name, served.version, len(result.predictions), result.latency_ms, labels=result.labels
        )
        return {
            "model_name": served.name,
            "model_version": str(served.version),
            "predictions": result.predictions,
        }

    @router.post(
        "/models/<model>/embed",
        summary='Embed: {"instances": ["text", ...]}',
        tags=PLAIN,
        **errors(400, 404, 413, 503),
    )
    def embed(model: str) -> dict[str, Any]:
        served, result = scored(model, "embed")
        record_prediction(served.name, served.version, len(result.predictions), result.latency_ms)
        return {
            "model_name": served.name,
            "model_version": str(served.version),
            "embeddings": [p["embedding"] for p in result.predictions],
            "truncated": sum(1 for p in result.predictions if p["truncated"]),
        }

    @router.post(
        "/models/<model>/generate",
        summary='Generate: {"prompt", "max_new_tokens", ...}',
        tags=PLAIN,
        **errors(400, 404, 413, 503),
    )
    def generate(model: str) -> dict[str, Any]:
        name = runtime.model_for(model)
        body = read_json_object(router.current_event, runtime.settings.max_body_bytes)
        served = runtime.service.current(name)
        deadline = deadline_for(getattr(router, "lambda_context", None), http=True)
        request = pipeline.decode_generation(served, body, deadline=deadline)
        generated = pipeline.generate(served, request)
        record_generation(
            served.name,
            served.version,
            len(generated.continuations),
            generated.latency_ms,
            tokens=generated.tokens,
        )
        return {
            "model_name": served.name,
            "model_version": str(served.version),
            **generated.to_dict(),
            "parameters": request.parameters(),
        }

    @router.get(
        "/models/<model>",
        summary="The answering version",
        tags=PLAIN,
        **errors(404, 503),
    )
    def describe(model: str) -> dict[str, Any]:
        served = runtime.service.current(runtime.model_for(model))
        record_metadata_request(served.name, served.version)
        return served.describe()

    return router
