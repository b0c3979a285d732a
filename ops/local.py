"""The docker-free stand-ins for AWS during development: a moto server and in-process invokes.

``sam local invoke`` needs a container runtime; ``invoke`` below runs a function's real handler
(the layer's entry module its ``Handler`` names) in this process instead, with the layer's folder
first on ``sys.path`` (as ``/opt/python`` is in Lambda), the environment declared in
``template.yaml`` and a Lambda-like context.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from ops import moto_ranges
from ops.template import FunctionSpec, function_for_model
from training.data import PROJECT_ROOT

LAYER_DIR = PROJECT_ROOT / "layers" / "runtime"
REGION = "us-east-1"
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 at a free port; yields its endpoint URL and stops it afterwards."""
    from moto.server import ThreadedMotoServer

    moto_ranges.install()  # ranged GETs read their range, not the whole object (see the module)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# A server on 127.0.0.1 is never reached through a proxy. urllib.request.urlopen would: its
# global opener keeps the proxy variables of the process's first download (a test's refused
# download through a dead proxy left every later probe going there, and the server "did not start").
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextmanager
def moto_server_process(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """A moto server in a process of its own: S3 and SQS are not inside the Lambda process either,
    an in-process server would take its CPU time (and the GIL) from the path being measured, and
    its state is apart from moto's in-process backend, which every ``mock_aws`` block resets."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # moto's server with ranged GETs that read their range (``ops.moto_ranges``)
    command = [sys.executable, "-m", "ops.moto_ranges", "-H", "127.0.0.1", "-p", str(port)]
    # ``settings``: moto's own environment variables (e.g. INITIAL_NO_AUTH_ACTION_COUNT enforces IAM)
    # its own output goes to a file: read back when it does not start, so the error says why
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(settings or {})}
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                LOOPBACK.open(f"{endpoint}/moto-api/", timeout=2).close()
                break
            except OSError as error:
                if time.monotonic() > deadline or process.poll() is not None:
                    log.seek(0)
                    said = log.read().decode(errors="replace").strip().splitlines()[-5:]
                    raise RuntimeError(
                        f"the moto server did not start (exit {process.poll()}, last probe: {error}): "
                        + " | ".join(said)
                    ) from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore the old ones."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def local_aws_environment(endpoint_url: str) -> dict[str, str]:
    """What points boto3 (ours and the handler's) at a local endpoint with throwaway credentials."""
    return {"AWS_ENDPOINT_URL": endpoint_url, "AWS_MAX_ATTEMPTS": "2", **LOCAL_CREDENTIALS}


def create_bucket(bucket: str, *, versioned: bool = True) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


@dataclass
class LambdaContext:
    """The attributes and method of Lambda's context object that handlers and Powertools use."""

    function_name: str
    memory_limit_in_mb: int = 1024
    timeout_s: int = 30
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:{self.function_name}"
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


_FUNCTIONS: dict[str, Any] = {}
_LAST_ENVIRONMENT: dict[str, dict[str, str]] = {}


def load_function_module(spec: FunctionSpec) -> Any:
    """A function's handler, as one execution environment holds it: its entry module in the layer
    (``maas.entry.model`` …) imported once per process, and one instance of it per function
    (``create``), so that several functions can run side by side in one process."""
    instance = _FUNCTIONS.get(spec.logical_id)
    if instance is not None:
        return instance
    if str(LAYER_DIR) not in sys.path:
        sys.path.insert(0, str(LAYER_DIR))
    module = importlib.import_module(spec.module)
    create = getattr(module, "create", None)
    if create is None:
        raise ImportError(f"{spec.module} has no create(): it is not one of the layer's entry modules")
    instance = create(spec.model_name)
    _FUNCTIONS[spec.logical_id] = instance
    return instance


def function_environment(spec: FunctionSpec, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Template literals, then the caller's environment for the same names, then explicit overrides."""
    values = spec.literal_environment()
    for key in spec.environment:
        if key in os.environ:
            values[key] = os.environ[key]
    values.update(overrides or {})
    return values


@contextmanager
def _invocation(
    spec: FunctionSpec, overrides: Mapping[str, str] | None
) -> Iterator[tuple[Any, LambdaContext]]:
    """The function's instance and a fresh context, with its environment set for the block."""
    values = function_environment(spec, overrides)
    with environment(values):
        module = load_function_module(spec)
        runtime = getattr(module, "runtime", None)
        # settings are read once per environment: new variables, new environment; and a runtime a
        # test configured directly (its own environ and clients) is not this process's either
        stale = _LAST_ENVIRONMENT.get(spec.logical_id, values) != values or getattr(
            runtime, "injected", False
        )
        if stale and runtime is not None:
            runtime.reset()
        _LAST_ENVIRONMENT[spec.logical_id] = values
        yield (
            module,
            LambdaContext(
                function_name=spec.logical_id, memory_limit_in_mb=spec.memory_mb, timeout_s=spec.timeout_s
            ),
        )


def call_handler(
    spec: FunctionSpec, event: dict[str, Any], overrides: Mapping[str, str] | None = None
) -> Any:
    """Run the function's real handler on ``event`` in this process, with its environment, as Lambda would."""
    with _invocation(spec, overrides) as (module, context):
        handler: Callable[[dict[str, Any], Any], Any] = getattr(module, spec.handler)
        return handler(event, context)


def call_stream_handler(
    spec: FunctionSpec, event: dict[str, Any], sink: Any, overrides: Mapping[str, str] | None = None
) -> bool:
    """Run the function's streaming entry (``stream_handler``, what our Runtime API loop calls for
    a function-URL request) on ``event``, its answer written to ``sink`` as it is produced, with
    the environment set until the last chunk. False when the function has no streaming entry."""
    with _invocation(spec, overrides) as (module, context):
        stream = getattr(module, "stream_handler", None)
        if stream is None:
            return False
        stream(event, context, sink)
        return True


def invoke(model: str, event: dict[str, Any], overrides: Mapping[str, str] | None = None) -> Any:
    """Run ``model``'s real handler on ``event`` in this process, as Lambda would."""
    return call_handler(function_for_model(model), event, overrides)


def read_event(path: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(path.read_text())
    return event
