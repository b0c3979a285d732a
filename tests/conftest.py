"""Shared fixtures: one small model of each family per session, moto in-process and as a server.

The Keras trainers are imported inside their fixtures: TensorFlow takes seconds to import, and a
test run that needs no Keras model never imports it.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ops.local import (
    LambdaContext,
    environment,
    load_function_module,
    local_aws_environment,
    moto_server_process,
)
from ops.registry_admin import RegistryAdmin
from ops.template import function_for_model
from training.data import PROJECT_ROOT
from training.models import spam_nb
from training.options import TrainOptions

EVENTS = PROJECT_ROOT / "events"
BUCKET = "maas-test-models"

# Nothing in the tests may reach a real AWS account.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "MaasTest",
        "SAM_CLI_TELEMETRY": "0",
    }
)


def load_event(model: str, name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / model / name).read_text())
    return event


def with_json_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """A copy of a stored event carrying another JSON body (plain text, not base64)."""
    edited = copy.deepcopy(event)
    edited["body"] = body if isinstance(body, str) else json.dumps(body)
    edited["isBase64Encoded"] = False
    return edited


@pytest.fixture(scope="session")
def trained_spam_nb(tmp_path_factory: pytest.TempPathFactory) -> spam_nb.Trained:
    """A small but real spam_nb version (1,500-row stratified sample), trained once per session."""
    out = tmp_path_factory.mktemp("models") / "spam_nb"
    return spam_nb.train_model(TrainOptions(out=out, limit=1500, quiet=True))


@pytest.fixture(scope="session")
def trained_spam_lstm(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small but real spam_lstm version: 1,500-row stratified sample, 2 epochs."""
    from training.models import spam_lstm

    out = tmp_path_factory.mktemp("models") / "spam_lstm"
    return spam_lstm.train_model(TrainOptions(out=out, limit=1500, epochs=2, quiet=True))


@pytest.fixture(scope="session")
def trained_digits_cnn(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """digits_cnn on all 1,797 bundled digits (they are tiny), 4 epochs."""
    from training.models import digits_cnn

    out = tmp_path_factory.mktemp("models") / "digits_cnn"
    return digits_cnn.train_model(TrainOptions(out=out, epochs=4, quiet=True))


@pytest.fixture(scope="session")
def trained_spam_mlp(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from training.models import spam_mlp

    out = tmp_path_factory.mktemp("models") / "spam_mlp"
    return spam_mlp.train_model(TrainOptions(out=out, limit=1500, epochs=2, quiet=True))


@pytest.fixture(scope="session")
def trained_moby_gen(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """moby_gen on the first 60,000 characters, one epoch: enough for the step graph to matter."""
    from training.models import moby_gen

    out = tmp_path_factory.mktemp("models") / "moby_gen"
    return moby_gen.train_model(TrainOptions(out=out, limit=60_000, epochs=1, quiet=True))


@pytest.fixture(scope="session")
def minilm_export(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """all-MiniLM-L6-v2 exported once per session by PyTorch in the export environment, with
    sentence-transformers' vectors for 200 held-out subjects and 16 long held-out bodies."""
    from training.models import minilm
    from training.progress import Progress

    folder = tmp_path_factory.mktemp("minilm-export")
    options = TrainOptions(out=folder, limit=200, quiet=True)
    return minilm.export(folder, options, Progress("minilm", quiet=True))


@pytest.fixture(scope="session")
def minilm_versions(minilm_export: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both variants written from that one export: ``fp32`` and ``int8``, each through its gate."""
    from training.models import minilm
    from training.progress import Progress

    out = tmp_path_factory.mktemp("models")
    progress = Progress("minilm", quiet=True)
    minilm.write_variant(minilm_export, out / "minilm_fp32", None, progress)
    minilm.write_variant(minilm_export, out / "minilm_int8", "int8", progress)
    return {"fp32": out / "minilm_fp32", "int8": out / "minilm_int8"}


@pytest.fixture(scope="session")
def tiny_llms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"gemma3": folder, "llama": folder}``: two-layer random-init decoders made in the export
    environment and imported by the real path (builder graph, pruned lm_head, gate against
    PyTorch): ``causal-lm`` version folders, fp32. Their HF folders are in ``<parent>/hf/<arch>``."""
    from training.llm.tiny import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny-llms"))


@pytest.fixture(scope="session")
def spam_nb_dir(trained_spam_nb: spam_nb.Trained) -> Path:
    return trained_spam_nb.directory


@contextmanager
def in_process_aws() -> Iterator[None]:
    """moto's in-process backend, whatever the session's environment: without the e2e server's
    ``AWS_ENDPOINT_URL`` a client here talks to this backend, never to that server over HTTP."""
    saved = os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            yield
    finally:
        if saved is not None:
            os.environ["AWS_ENDPOINT_URL"] = saved


@pytest.fixture
def s3() -> Iterator[Any]:
    """An in-process moto S3 with an empty, versioned registry bucket."""
    with in_process_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def registry(s3: Any) -> RegistryAdmin:
    return RegistryAdmin(BUCKET, s3)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real moto server on 127.0.0.1 in a process of its own, with the process environment
    pointed at it. Its own process: moto's in-process backend is reset by every ``mock_aws``
    block (entering and leaving), which would empty this server's buckets mid-module."""
    with moto_server_process() as endpoint, environment(local_aws_environment(endpoint)):
        yield endpoint


@pytest.fixture
def downloads_refused(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every HTTP(S) download of this test goes through a proxy on a local port nothing listens
    on, so it is refused at once, network or not (urllib, hence scikit-learn's and Keras's
    dataset fetchers, honour these variables). urllib's global opener keeps the proxies it was
    built with: it is dropped before and after, so the dead proxy ends with the test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{probe.getsockname()[1]}"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    urllib.request.install_opener(None)
    try:
        yield proxy
    finally:
        urllib.request.install_opener(None)


class FunctionUnderTest:
    """A model function's real handler module, reset to a fresh execution environment."""

    def __init__(
        self, model: str, environ: dict[str, str], s3_client: Any | None, kms_client: Any | None = None
    ) -> None:
        self.spec = function_for_model(model)
        self.module = load_function_module(self.spec)
        self.module.runtime.reset(environ=environ, s3_client=s3_client, kms_client=kms_client)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        context = LambdaContext(function_name=self.spec.logical_id, memory_limit_in_mb=self.spec.memory_mb)
        response: dict[str, Any] = self.module.lambda_handler(event, context)
        return response


def make_function(
    model: str, s3_client: Any | None, tmp_path: Path, *, kms_client: Any | None = None, **extra: str
) -> FunctionUnderTest:
    environ = {"MODEL_BUCKET": BUCKET, "MODEL_CACHE_DIR": str(tmp_path / "cache"), **extra}
    return FunctionUnderTest(model, environ, s3_client, kms_client)


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])
