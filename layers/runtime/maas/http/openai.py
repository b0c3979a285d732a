"""OpenAI's API, as a Powertools ``Router``: ``/v1/models``, ``/v1/embeddings``,
``/v1/completions`` and ``/v1/chat/completions``.

Every route is declared under ``/models/{m}/v1`` (a ``base_url`` for one model: a catalogue
model's own function, or the multi-model function), and the multi-model function's also under
``/v1``, where the body's ``model`` names any registry model. The routes are thin: ``openai_requests`` reads the
bodies, the pipeline and the tasks do the work, ``openai_completions`` shapes the answers and
streams them; errors take OpenAI's shape in the one error mapping (``maas.http.errors``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np
from aws_lambda_powertools.event_handler import content_types
from aws_lambda_powertools.event_handler.api_gateway import Response, Router

from maas.core import pipeline
from maas.core.errors import MaasError
from maas.core.observability import record_prediction
from maas.core.runtime import ModelRuntime
from maas.http.openai_requests import choice, embedding_inputs, model_id, resolve_model
from maas.http.resolver import read_json_object
from maas.http.streaming import StreamSlot, stream_response

OPENAI = ["OpenAI"]
MODEL_PREFIX = "/models/<model>/v1"


def _epoch(stamp: str) -> int:
    """An ISO time as the Unix seconds OpenAI's ``created`` fields hold (0 when unknown)."""
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp())
    except (TypeError, ValueError):
        return 0


def _model_entry(name: str, version: int, updated_at: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": _epoch(updated_at),
        "owned_by": "maas",
        "version": f"{name}@{version}",
    }


def openai_router(runtime: ModelRuntime, slot: StreamSlot, *, documented: bool = False) -> Router:
    """The OpenAI routes over ``runtime``; a streamed answer is handed to ``slot``. ``documented``
    adds their error answers' types for the OpenAPI document (pydantic models: a serving function
    never builds them)."""
    router = Router()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ unannotated

    def errors(method: str) -> dict[str, Any]:
        if not documented:
            return {}
        from maas.http.protocol_types import OpenAIError, error_responses

        statuses = (404, 503) if method == "GET" else (400, 404, 413, 503)
        return {"responses": error_responses(*statuses, model=OpenAIError)}

    def routes(method: str, suffix: str, summary: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a handler under each prefix; ``model`` is None under ``/v1``."""
        prefixes = (MODEL_PREFIX, "/v1") if runtime.multi_model else (MODEL_PREFIX,)

        def declare(handler: Callable[..., Any]) -> Callable[..., Any]:
            for prefix in prefixes:
                route = router.get if method == "GET" else router.post
                route(f"{prefix}{suffix}", summary=summary, tags=OPENAI, **errors(method))(handler)
            return handler

        return declare

    def body() -> dict[str, Any]:
        return read_json_object(router.current_event, runtime.settings.max_body_bytes)

    @routes("GET", "/models", "OpenAI: the served models")
    def list_models(model: str | None = None) -> dict[str, Any]:
        service = runtime.service
        alias = runtime.settings.model_alias
        if model is not None or not runtime.multi_model:  # a model's own function: that model
            names = [runtime.model_for(model or runtime.model_name)]
        else:
            names = service.registry.list_models()
        data = []
        for name in names:
            try:
                found = service.registry.get_alias(name, alias)
            except MaasError:  # a model whose alias cannot be read is not served now
                continue
            if found is not None:
                data.append(_model_entry(name, found.version, found.updated_at))
        return {"object": "list", "data": data}

    @routes("POST", "/embeddings", "OpenAI: embeddings of a text or a list of texts")
    def embeddings(model: str | None = None) -> dict[str, Any]:
        from maas.core.tasks.transformer import LENGTHS, TextEmbedder  # loaded with such a model anyway

        request = body()
        served = resolve_model(runtime, request.get("model"), model)
        task = pipeline.for_verb(served, "embed")
        if not isinstance(task, TextEmbedder):  # the embed verb is the text embedder's alone
            raise pipeline.wrong_verb(served, "embed text")
        texts = embedding_inputs(request, runtime.settings.max_batch)
        encoding = choice(request, "encoding_format", ("float", "base64"), "float")
        started = time.perf_counter()
        feeds = pipeline.decode(served, texts, "input")
        vectors = task.embed(feeds)
        latency_ms = (time.perf_counter() - started) * 1000.0
        record_prediction(served.name, served.version, len(texts), latency_ms)
        tokens = int(np.asarray(feeds[LENGTHS]).sum()) if LENGTHS in feeds else 0
        data = []
        for index, row in enumerate(np.asarray(vectors, dtype=np.float32)):
            vector: Any = (
                base64.b64encode(row.astype("<f4").tobytes()).decode("ascii")
                if encoding == "base64"
                else [float(v) for v in row]
            )
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return {
            "object": "list",
            "data": data,
            "model": model_id(served),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def completion(model: str | None, *, chat: bool) -> Response[Any]:
        """A completion, whole or streamed: through a streaming transport (a function URL, ``maas
        serve``) only Lambda's remaining time bounds the generation; through API Gateway its 29 s
        do too."""
        from maas.core.deadline import deadline_for  # the LLM routes' own imports
        from maas.http import openai_completions

        request = body()
        served = resolve_model(runtime, request.get("model"), model)
        deadline = deadline_for(router.lambda_context, http=not slot.enabled)
        planned = openai_completions.plan(served, request, chat=chat, deadline=deadline)
        if planned.stream:
            return stream_response(slot, openai_completions.stream(planned))
        return Response(
            status_code=200,
            content_type=content_types.APPLICATION_JSON,
            body=json.dumps(openai_completions.complete(planned)),
        )

    @routes("POST", "/completions", "OpenAI: complete a prompt (stream: server-sent events)")
    def completions(model: str | None = None) -> Response[Any]:
        return completion(model, chat=False)

    @routes("POST", "/chat/completions", "OpenAI: answer a conversation with the model's chat template")
    def chat_completions(model: str | None = None) -> Response[Any]:
        return completion(model, chat=True)

    return router
