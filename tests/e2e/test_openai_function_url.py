"""A function-URL streaming request through our Runtime API loop, in-process: the multi-model
function's real handler, a tiny causal LM from the registry (moto), and the Runtime API stand-in
of tests/unit/test_runtime_api.py reading the chunked answer as Lambda would.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from maas.core.predictor import Predictor
from maas.entry.runtime_api import DELIMITER, RuntimeLoop
from ops.local import LambdaContext, load_function_module
from ops.template import functions
from tests.conftest import BUCKET, load_event
from tests.e2e.test_openai_llm import publishable
from tests.unit.test_runtime_api import RuntimeApi


@pytest.fixture
def multi_model(
    registry: Any, s3: Any, tiny_llms: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[Any, str]]:
    folder = publishable(tiny_llms["llama"], tmp_path)
    name = json.loads((folder / "manifest.json").read_text())["name"]
    registry.publish(folder)
    registry.set_alias(name, "production", 1)
    (spec,) = [s for s in functions() if s.logical_id == "MultiModelFunction"]
    module = load_function_module(spec)
    module.runtime.reset(
        environ={
            "MODEL_BUCKET": BUCKET,
            "MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "MODEL_ALIAS": "production",
        },
        s3_client=s3,
    )
    yield module, name
    module.runtime.reset()


def function_url_event(body: dict[str, Any]) -> dict[str, Any]:
    """A function URL's payload-2.0 event for ``POST /v1/completions`` (API Gateway's sample event,
    re-addressed: a function URL's domain, its path, no route key)."""
    event = copy.deepcopy(load_event("spam_nb", "predict.json"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/completions"
    event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    event["requestContext"]["domainName"] = "abc123.lambda-url.us-east-1.on.aws"
    event.pop("pathParameters", None)
    event["body"], event["isBase64Encoded"] = json.dumps(body), False
    return event


def events_of(chunks: list[bytes]) -> tuple[dict[str, Any], list[bytes]]:
    """The prelude, and the server-sent events after the delimiter, as the stream carried them."""
    prelude, _, rest = b"".join(chunks).partition(DELIMITER)
    return json.loads(prelude), [e for e in rest.split(b"\n\n") if e]


def test_a_function_url_stream_carries_one_event_per_chunk_then_usage_then_done(
    multi_model: tuple[Any, str],
) -> None:
    module, name = multi_model
    body = {
        "model": name,
        "prompt": "Call me Ishmael",
        "max_tokens": 12,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "ignored",
        "some_future_field": 1,
    }
    with RuntimeApi(function_url_event(body)) as api:
        RuntimeLoop(api.address, module, "lambda_handler").run_once()
    prelude, events = events_of(api.chunks)
    assert prelude["statusCode"] == 200 and prelude["headers"]["content-type"] == "text/event-stream"
    assert events[-1] == b"data: [DONE]"
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert len(api.chunks) >= len(events)  # the prelude, then each event in a chunk of its own
    assert {c["id"] for c in chunks} == {chunks[0]["id"]} and chunks[0]["id"].startswith("cmpl-")
    assert {c["model"] for c in chunks} == {f"{name}@1"}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] <= 12
    whole = module.lambda_handler(
        function_url_event({**body, "stream": False}), LambdaContext("MultiModelFunction")
    )
    answer = json.loads(whole["body"])
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == answer["choices"][0]["text"]
    assert chunks[-1]["usage"] == answer["usage"]
    assert api.trailers == {}
    # through API Gateway's HTTP API (which cannot stream) the same events come in one body
    event = function_url_event(body)
    event["requestContext"]["domainName"] = "abc123.execute-api.us-east-1.amazonaws.com"
    buffered = module.lambda_handler(event, LambdaContext("MultiModelFunction"))
    assert buffered["headers"]["Content-Type"] == "text/event-stream"
    events = [e for e in buffered["body"].encode().split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]" and len(events) == len(chunks) + 1


def test_a_failure_mid_stream_is_an_error_event_then_the_end(
    multi_model: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, name = multi_model
    real_run = Predictor.run
    calls = []

    def failing_third_step(self: Predictor, feeds: Any, outputs: Any = None) -> Any:
        calls.append(1)
        if len(calls) == 3:  # the prefill and one step answer; the next decoding step fails
            raise MemoryError("onnxruntime could not allocate")
        return real_run(self, feeds, outputs)

    monkeypatch.setattr(Predictor, "run", failing_third_step)
    body = {"model": name, "prompt": "Call me Ishmael", "max_tokens": 12, "temperature": 0, "stream": True}
    with RuntimeApi(function_url_event(body)) as api:
        RuntimeLoop(api.address, module, "lambda_handler").run_once()
    prelude, events = events_of(api.chunks)
    assert prelude["statusCode"] == 200
    last = json.loads(events[-1].removeprefix(b"data: "))
    assert set(last) == {"error"} and last["error"]["type"] == "server_error"
    assert b"data: [DONE]" not in events
    assert all(b'"choices"' in e for e in events[:-1])
