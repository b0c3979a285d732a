"""Our own Lambda Runtime API loop, which streams answers to function URLs (RESPONSE_STREAM).

Lambda streams natively only on its Node.js runtimes; the managed Python runtime's loop posts
one buffered answer per invocation. An LLM function's ``AWS_LAMBDA_EXEC_WRAPPER``
(``/opt/maas-stream``, shipped in the layer) replaces that loop with this one, in the same
python3.12 runtime: ``python -m maas.entry.runtime_api``.

For each invocation it reads the event from ``/runtime/invocation/next`` and calls the
handler ``_HANDLER`` names (``maas.entry.model.lambda_handler``):

- a function-URL request is answered in streaming mode: one chunked POST whose body is the
  ``application/vnd.awslambda.http-integration-response`` prelude (status and headers as JSON,
  then 8 NUL bytes), then each chunk the module's ``stream_handler`` writes, sent at once. A
  failure after the prelude is reported in the trailers, as Lambda's own runtimes do;
- any other event (API Gateway, S3, SQS, Step Functions) is answered buffered, as the managed
  runtime would, by the module's ``lambda_handler``.

Why not the AWS Lambda Web Adapter: see docs/how-to/openai.md (it runs a web server and a
proxy in the function, for no gain here: the handler is already an event handler).

What the Runtime API does not tell: that the client has gone. A function URL keeps accepting
the stream after its client disconnects (and bills it); only a failed write to the Runtime API
stops generation early. The generation deadline (Lambda's remaining time) bounds the rest.
"""

from __future__ import annotations

import base64
import http.client
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from maas.http.streaming import ClientGone

API_VERSION = "2018-06-01"
PRELUDE_TYPE = "application/vnd.awslambda.http-integration-response"
DELIMITER = b"\x00" * 8
ERROR_TRAILERS = "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body"


@dataclass
class InvocationContext:
    """Lambda's context object as the managed runtime builds it from the ``next`` headers."""

    aws_request_id: str
    deadline_ms: int
    invoked_function_arn: str
    function_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local"))
    function_version: str = field(
        default_factory=lambda: os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    )
    memory_limit_in_mb: int = field(
        default_factory=lambda: int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"))
    )
    log_group_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", ""))
    log_stream_name: str = field(default_factory=lambda: os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", ""))
    client_context: Any = None
    identity: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def is_function_url(event: Any) -> bool:
    """A function-URL request: payload 2.0 from a ``*.lambda-url.*`` domain (API Gateway's are
    ``execute-api``, and its HTTP API cannot take a stream)."""
    if not isinstance(event, dict):
        return False
    context = event.get("requestContext")
    domain = context.get("domainName") if isinstance(context, dict) else None
    return isinstance(domain, str) and ".lambda-url." in domain


class StreamedPost:
    """One chunked POST of an invocation's answer to the Runtime API, in streaming mode: the
    ``ResponseSink`` a ``stream_handler`` writes to."""

    def __init__(self, connection: http.client.HTTPConnection, request_id: str) -> None:
        self.connection = connection
        self.path = f"/{API_VERSION}/runtime/invocation/{request_id}/response"
        self.started = False

    def start(self, status: int, headers: dict[str, str]) -> None:
        connection = self.connection
        connection.putrequest("POST", self.path, skip_accept_encoding=True)
        connection.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
        connection.putheader("Transfer-Encoding", "chunked")
        connection.putheader("Content-Type", PRELUDE_TYPE)
        connection.putheader("Trailer", ERROR_TRAILERS)
        connection.endheaders()
        self.started = True
        prelude = json.dumps({"statusCode": status, "headers": headers, "cookies": []}).encode()
        self.write(prelude + DELIMITER)

    def write(self, chunk: bytes) -> None:
        if not chunk:
            return  # a zero-length chunk would end the body
        try:
            self.connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError as error:  # the Runtime API closed the stream: nobody reads what follows
            raise ClientGone(str(error)) from error

    def finish(self, error: BaseException | None = None) -> None:
        """The last chunk, with the error trailers when the handler failed after it started."""
        trailers = b""
        if error is not None:
            body = json.dumps({"errorMessage": str(error), "errorType": type(error).__name__})
            trailers = (
                f"Lambda-Runtime-Function-Error-Type: {type(error).__name__}\r\n"
                f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(body.encode()).decode()}\r\n"
            ).encode()
        try:
            self.connection.send(b"0\r\n" + trailers + b"\r\n")
            self.connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass  # the invocation is over either way


class RuntimeLoop:
    """Fetch an event, answer it (streamed or buffered), repeat."""

    def __init__(self, api: str, module: Any, handler_name: str) -> None:
        self.api = api
        self.handler: Callable[[dict[str, Any], Any], Any] = getattr(module, handler_name)
        self.stream_handler: Callable[..., None] | None = getattr(module, "stream_handler", None)

    def _connection(self) -> http.client.HTTPConnection:
        host, _, port = self.api.partition(":")
        return http.client.HTTPConnection(host, int(port or 80))

    def next_invocation(self) -> tuple[dict[str, Any], InvocationContext]:
        connection = self._connection()
        connection.request("GET", f"/{API_VERSION}/runtime/invocation/next")
        response = connection.getresponse()
        body = response.read()
        connection.close()
        headers = response.headers
        context = InvocationContext(
            aws_request_id=headers.get("Lambda-Runtime-Aws-Request-Id", ""),
            deadline_ms=int(headers.get("Lambda-Runtime-Deadline-Ms") or 0),
            invoked_function_arn=headers.get("Lambda-Runtime-Invoked-Function-Arn", ""),
        )
        trace = headers.get("Lambda-Runtime-Trace-Id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        return json.loads(body), context

    def _post(self, path: str, payload: Any, error_type: str | None = None) -> None:
        connection = self._connection()
        headers = {"Content-Type": "application/json"}
        if error_type:
            headers["Lambda-Runtime-Function-Error-Type"] = error_type
        connection.request("POST", path, body=json.dumps(payload).encode(), headers=headers)
        connection.getresponse().read()
        connection.close()

    def _fail(self, request_id: str, error: BaseException) -> None:
        payload = {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "stackTrace": traceback.format_exception(error),
        }
        self._post(f"/{API_VERSION}/runtime/invocation/{request_id}/error", payload, "Runtime.HandlerError")

    def run_once(self) -> None:
        event, context = self.next_invocation()
        request_id = context.aws_request_id
        if self.stream_handler is not None and is_function_url(event):
            post = StreamedPost(self._connection(), request_id)
            try:
                self.stream_handler(event, context, post)
            except Exception as error:  # after the prelude: in the trailers; before it: an error
                traceback.print_exc()
                if not post.started:
                    self._fail(request_id, error)
                    return
                post.finish(error)
                return
            post.finish()
            return
        try:
            result = self.handler(event, context)
        except Exception as error:  # the managed runtime's behaviour: an invocation error
            traceback.print_exc()
            self._fail(request_id, error)
            return
        self._post(f"/{API_VERSION}/runtime/invocation/{request_id}/response", result)

    def run(self) -> None:
        while True:
            self.run_once()


def load(handler: str) -> tuple[Any, str]:
    """``module.function`` from ``_HANDLER``: the module imported, and the function's name."""
    module_name, _, name = handler.rpartition(".")
    return importlib.import_module(module_name), name


def main() -> None:
    api = os.environ["AWS_LAMBDA_RUNTIME_API"]
    try:
        module, name = load(os.environ.get("_HANDLER", "maas.entry.model.lambda_handler"))
        loop = RuntimeLoop(api, module, name)
    except Exception as error:  # Lambda reports an init error and restarts the environment
        traceback.print_exc()
        host, _, port = api.partition(":")
        connection = http.client.HTTPConnection(host, int(port or 80))
        body = json.dumps({"errorMessage": str(error), "errorType": type(error).__name__})
        connection.request(
            "POST",
            f"/{API_VERSION}/runtime/init/error",
            body=body.encode(),
            headers={"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"},
        )
        connection.getresponse().read()
        sys.exit(1)
    loop.run()


if __name__ == "__main__":
    main()
