"""Our Runtime API loop (maas.entry.runtime_api), on a local stand-in of Lambda's Runtime API.

The stand-in is an HTTP server speaking the Runtime API's documented protocol (``next``, a
buffered ``response``, a chunked ``response`` in streaming mode, ``error``): it hands the loop one
event and records how the answer came back, chunk by chunk, as Lambda's side would read it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from maas.entry import runtime_api
from maas.entry.runtime_api import DELIMITER, PRELUDE_TYPE, RuntimeLoop
from tests.conftest import load_event, make_function, with_json_body


class RuntimeApi:
    """One invocation's worth of Lambda's Runtime API: the event out, the answer in."""

    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.trailers: dict[str, str] = {}
        self.body = b""
        self.path = ""
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                payload = json.dumps(api.event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:1:function:f"
                )
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                api.path = self.path
                api.headers = {k.lower(): v for k, v in self.headers.items()}
                if api.headers.get("transfer-encoding") == "chunked":
                    while True:  # each chunk as it arrives, then the trailers
                        size = int(self.rfile.readline().strip(), 16)
                        if size == 0:
                            break
                        api.chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    while (line := self.rfile.readline().strip()) != b"":
                        name, _, value = line.decode().partition(":")
                        api.trailers[name.strip().lower()] = value.strip()
                else:
                    api.body = self.rfile.read(int(self.headers["content-length"]))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> RuntimeApi:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def function_url_event(body: dict[str, Any]) -> dict[str, Any]:
    """The spam_nb predict event as a function URL delivers it (payload 2.0, a lambda-url domain)."""
    event = with_json_body(load_event("spam_nb", "predict.json"), body)
    event["requestContext"]["domainName"] = "abc123.lambda-url.us-east-1.on.aws"
    return event


@pytest.fixture
def spam_nb_module(registry: Any, spam_nb_dir: Path, s3: Any, tmp_path: Path) -> Iterator[Any]:
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    function = make_function("spam_nb", s3, tmp_path)
    yield function.module
    function.module.runtime.reset()


def test_a_function_url_request_is_answered_in_streaming_mode_with_the_prelude(spam_nb_module: Any) -> None:
    with RuntimeApi(function_url_event({"instances": ["win a free prize now"]})) as api:
        RuntimeLoop(api.address, spam_nb_module, "lambda_handler").run_once()
    assert api.path == "/2018-06-01/runtime/invocation/req-1/response"
    assert api.headers["lambda-runtime-function-response-mode"] == "streaming"
    assert api.headers["content-type"] == PRELUDE_TYPE
    stream = b"".join(api.chunks)
    prelude, _, body = stream.partition(DELIMITER)
    assert json.loads(prelude)["statusCode"] == 200
    assert json.loads(prelude)["headers"]["content-type"] == "application/json"
    answer = json.loads(body)
    assert (answer["model_name"], answer["model_version"]) == ("spam_nb", "1")
    assert answer["predictions"][0]["label"] in {"ham", "spam"}
    assert api.trailers == {}


def test_a_refused_request_streams_its_openai_error_and_an_api_gateway_event_is_buffered(
    spam_nb_module: Any,
) -> None:
    event = function_url_event({"model": "spam_nb", "prompt": "hello"})
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/models/spam_nb/v1/completions"
    with RuntimeApi(event) as api:
        RuntimeLoop(api.address, spam_nb_module, "lambda_handler").run_once()
    prelude, _, body = b"".join(api.chunks).partition(DELIMITER)
    assert json.loads(prelude)["statusCode"] == 400
    error = json.loads(body)["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "wrong_route", "model")
    buffered = load_event("spam_nb", "predict.json")  # API Gateway's: one buffered answer
    with RuntimeApi(buffered) as api:
        RuntimeLoop(api.address, spam_nb_module, "lambda_handler").run_once()
    assert api.chunks == [] and "lambda-runtime-function-response-mode" not in api.headers
    assert json.loads(json.loads(api.body)["body"])["model_name"] == "spam_nb"


def test_the_loop_reports_a_handler_that_raises_as_an_invocation_error() -> None:
    class Broken:
        @staticmethod
        def lambda_handler(event: Any, context: Any) -> Any:
            raise ValueError("boom")

    with RuntimeApi({"Records": []}) as api:
        RuntimeLoop(api.address, Broken, "lambda_handler").run_once()
    assert api.path == "/2018-06-01/runtime/invocation/req-1/error"
    assert json.loads(api.body)["errorType"] == "ValueError"
    assert (
        runtime_api.is_function_url(
            {"requestContext": {"domainName": "x.execute-api.us-east-1.amazonaws.com"}}
        )
        is False
    )
