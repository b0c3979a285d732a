"""``maas serve``: the HTTP API of ``template.yaml`` on a local port, without Docker.

``sam local start-api`` needs a container runtime; this development server reads the HttpApi
routes declared in the template, turns each request into the API Gateway payload-2.0 event the
route would produce, and calls the route's real handler in this process with the layer on its path
and the function's environment. One process, one handler call at a time: it is for development
and tests, not for production traffic.

A model function is called through its streaming entry, as its function URL in RESPONSE_STREAM
mode calls it on AWS: an OpenAI request with ``stream: true`` gets its server-sent events as they
are produced (chunked, flushed per event), and a client that disconnects stops the generation
(its next write fails). Every other answer is sent whole, with its length.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import boto3

from maas.http.streaming import EVENT_STREAM, ClientGone, ResponseSink
from ops import project
from ops.local import (
    call_handler,
    call_stream_handler,
    create_bucket,
    environment,
    local_aws_environment,
    moto_server,
)
from ops.template import FunctionSpec, Route, functions

DEFAULT_BUCKET = "maas-local-models"
LOCAL_CREDENTIALS_KEY = "testing"
# Bodies of these content types reach the function as text; any other body is base64, as API
# Gateway does for binary media.
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|x-www-form-urlencoded|javascript))$"
)
_PARAM = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    route: Route
    pattern: re.Pattern[str]
    greedy: bool
    params: int

    @classmethod
    def of(cls, route: Route) -> CompiledRoute:
        regex, last = "", 0
        for match in _PARAM.finditer(route.path):
            regex += re.escape(route.path[last : match.start()])
            name, greedy = match.group(1), match.group(2)
            regex += f"(?P<{name}>.+)" if greedy else f"(?P<{name}>[^/]+)"
            last = match.end()
        regex += re.escape(route.path[last:])
        return cls(route, re.compile(f"^{regex}$"), "+}" in route.path, len(_PARAM.findall(route.path)))

    @property
    def priority(self) -> tuple[bool, int, int]:
        """API Gateway's order: literal paths first, then fewer parameters, greedy paths last."""
        return (self.greedy, self.params, -len(self.route.path))


class RouteTable:
    """The template's HttpApi routes, matched as API Gateway matches them."""

    def __init__(self, specs: list[FunctionSpec]) -> None:
        self.functions = {spec.logical_id: spec for spec in specs}
        compiled = [CompiledRoute.of(route) for spec in specs for route in spec.routes]
        self.routes = sorted(compiled, key=lambda c: c.priority)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for compiled in self.routes:
            if compiled.route.method not in (method, "ANY"):
                continue
            found = compiled.pattern.match(path)
            if found:
                return compiled.route, {k: unquote(v) for k, v in found.groupdict().items()}
        return None


def is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    return bool(_TEXT_TYPES.match(content_type.split(";")[0].strip().lower()))


def build_event(
    *,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    route: Route,
    path_parameters: Mapping[str, str],
    source_ip: str = "127.0.0.1",
    now: datetime | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API payload-2.0 event for one request on ``route``."""
    url = urlsplit(target)
    merged: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    moment = now or datetime.now(UTC)
    host = merged.get("host", "localhost")
    route_key = f"{route.method} {route.path}"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": merged,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": method,
                "path": url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(moment.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if body:
        if is_text(merged.get("content-type")):
            event["body"] = body.decode("utf-8", errors="replace")
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def http_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """A handler's payload-2.0 answer as status, headers and body (as API Gateway reads it)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        return 200, {"content-type": "application/json"}, json.dumps(result).encode()
    headers = {str(k).lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers[str(name).lower()] = ",".join(map(str, values))
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result.get("isBase64Encoded") else str(raw).encode("utf-8")
    return int(result["statusCode"]), headers, body


def _json_error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"content-type": "application/json"}, json.dumps({"message": message}).encode()


class LocalApi:
    """Dispatches requests to the functions' real handlers, one call at a time."""

    def __init__(self, table: RouteTable, overrides: Mapping[str, str]) -> None:
        self.table = table
        self.overrides = dict(overrides)
        self._lock = threading.Lock()  # handlers share os.environ and module state: one at a time

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> tuple[int, dict[str, str], bytes]:
        """The whole answer at once (as API Gateway's HTTP API gives it)."""
        sink = BufferedSink()
        self.stream(method, target, headers, body, source_ip, sink)
        return sink.status, sink.headers, b"".join(sink.chunks)

    def stream(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        sink: ResponseSink,
    ) -> None:
        """The answer through ``sink``: a model function's through its streaming entry (what a
        function URL in RESPONSE_STREAM mode runs), so streamed events reach the client as they
        are produced; the registry function's at once."""
        path = urlsplit(target).path
        found = self.table.match(method, path)
        if found is None:  # API Gateway's own answer for a route the API does not declare
            _write(sink, *_json_error(404, "Not Found"))
            return
        route, params = found
        event = build_event(
            method=method,
            target=target,
            headers=headers,
            body=body,
            route=route,
            path_parameters=params,
            source_ip=source_ip,
        )
        spec = self.table.functions[route.function]
        with self._lock:
            started = _Started(sink)
            try:
                if not call_stream_handler(spec, event, started, self.overrides):
                    _write(sink, *http_response(call_handler(spec, event, self.overrides)))
            except Exception:  # a crashed invocation: API Gateway answers 500
                traceback.print_exc()
                if not started.started:
                    _write(sink, *_json_error(500, "Internal Server Error"))


def _write(sink: ResponseSink, status: int, headers: dict[str, str], body: bytes) -> None:
    sink.start(status, headers)
    sink.write(body)


class _Started:
    """A sink that remembers whether the answer has begun (a crash after it cannot become a 500)."""

    def __init__(self, sink: ResponseSink) -> None:
        self.sink = sink
        self.started = False

    def start(self, status: int, headers: dict[str, str]) -> None:
        self.started = True
        self.sink.start(status, headers)

    def write(self, chunk: bytes) -> None:
        self.sink.write(chunk)


class BufferedSink:
    """An answer collected whole."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []

    def start(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers

    def write(self, chunk: bytes) -> None:
        self.chunks.append(chunk)


class SocketSink:
    """An answer written to the client's connection: an event stream chunk by chunk, flushed as
    each chunk comes (HTTP/1.1 chunked encoding); any other answer at once, with its length. A
    write to a closed connection is ``ClientGone``: the producer stops."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.handler = handler
        self.streaming = False
        self.buffered: list[bytes] = []
        self.status = 500
        self.headers: dict[str, str] = {}

    def start(self, status: int, headers: dict[str, str]) -> None:
        self.status, self.headers = status, headers
        self.streaming = headers.get("content-type", "").startswith(EVENT_STREAM)
        if self.streaming:
            self._head({"transfer-encoding": "chunked"})

    def _head(self, extra: dict[str, str]) -> None:
        handler = self.handler
        handler.send_response(self.status)
        for name, value in self.headers.items():
            if name not in {"content-length", "connection", "transfer-encoding"}:
                handler.send_header(name, value)
        for name, value in extra.items():
            handler.send_header(name, value)
        handler.end_headers()

    def write(self, chunk: bytes) -> None:
        if not self.streaming:
            self.buffered.append(chunk)
            return
        if not chunk or self.handler.command == "HEAD":
            return
        try:
            self.handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.handler.wfile.flush()
        except OSError as error:  # BrokenPipe, ConnectionReset: the client has gone
            raise ClientGone(str(error)) from error

    def finish(self) -> None:
        try:
            if self.streaming:
                if self.handler.command != "HEAD":
                    self.handler.wfile.write(b"0\r\n\r\n")
                return
            payload = b"".join(self.buffered)
            self._head({"content-length": str(len(payload))})
            if self.handler.command != "HEAD":
                self.handler.wfile.write(payload)
        except OSError:
            self.handler.close_connection = True


def _request_handler(api: LocalApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "maas-serve-dev"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            sink = SocketSink(self)
            api.stream(
                self.command, self.path, list(self.headers.items()), body, self.client_address[0], sink
            )
            sink.finish()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        def log_message(self, format: str, *args: Any) -> None:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")

    return Handler


def real_credentials() -> str | None:
    """The kind of credentials boto3's chain finds, unless they are the local placeholder ones."""
    credentials = boto3.Session().get_credentials()
    if credentials is None or credentials.access_key == LOCAL_CREDENTIALS_KEY:
        return None
    return str(credentials.method)


@contextmanager
def aws_backend(bucket: str, environ: Mapping[str, str], root: Path | None = None) -> Iterator[str]:
    """Where the functions' boto3 calls go: ``AWS_ENDPOINT_URL`` if set, AWS if real credentials
    are found, else a moto server started here (with the registry bucket created, and recorded in
    the project ``root`` for the other commands while it runs). Yields a line that says which."""
    endpoint = environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        yield f"AWS: {endpoint} (from AWS_ENDPOINT_URL); registry bucket {bucket}"
        return
    method = real_credentials()
    if method is not None:
        yield f"AWS: your account (credentials: {method}); registry bucket {bucket}"
        return
    with ExitStack() as stack:
        url = stack.enter_context(moto_server())
        stack.enter_context(environment(local_aws_environment(url)))
        create_bucket(bucket)
        if root is not None:
            project.record(root, project.LocalStandIn(url, bucket, os.getpid()))
            stack.callback(project.forget, root, os.getpid())
        yield f"AWS: moto server (local S3) on {url}, started by maas serve; registry bucket {bucket}"


def banner(server_address: tuple[str, int], backend: str, table: RouteTable) -> str:
    host, port = server_address[:2]
    lines = [
        "maas serve: DEVELOPMENT SERVER (single process, one request at a time; not for production)",
        f"  {backend}",
        "  routes from template.yaml:",
        *(f"    {c.route.method:<5} {c.route.path:<48} -> {c.route.function}" for c in table.routes),
        f"listening on http://{host}:{port}",
    ]
    return "\n".join(lines)


def serve(host: str, port: int, bucket: str, environ: Mapping[str, str], root: Path) -> None:
    """Serve the project ``root``'s template until interrupted."""
    table = RouteTable(functions(root / "template.yaml"))
    with aws_backend(bucket, environ, root) as backend:
        api = LocalApi(table, {"MODEL_BUCKET": bucket})
        server = ThreadingHTTPServer((host, port), _request_handler(api))
        server.daemon_threads = True
        print(banner(server.server_address, backend, table), flush=True)
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
            print("maas serve: stopped", flush=True)
