"""Fixtures of the end-to-end tests: the event sources' registry and data buckets on the moto
server, and `maas serve` as a subprocess over a registry holding every model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from maas.core.predictor import Predictor
from maas.core.registry import MODEL_FILE
from ops.local import create_bucket
from ops.registry_admin import RegistryAdmin
from tests.conftest import FunctionUnderTest, body_of, load_event, with_json_body
from tests.e2e.byom import imported, keras_files, wine  # noqa: F401  (session fixtures)
from training.data import PROJECT_ROOT

MODELS_BUCKET = "maas-events-models"
DATA_BUCKET = "maas-data"  # the bucket the stored s3_put.json event names


@dataclass(frozen=True)
class Stack:
    endpoint: str
    models_bucket: str
    data_bucket: str
    version: int
    cache_dir: Path

    @property
    def environ(self) -> dict[str, str]:
        return {
            "MODEL_BUCKET": self.models_bucket,
            "DATA_BUCKET": self.data_bucket,
            "MODEL_CACHE_DIR": str(self.cache_dir),
        }

    def s3(self) -> Any:
        return boto3.client("s3")

    def read(self, key: str) -> bytes:
        body: bytes = self.s3().get_object(Bucket=self.data_bucket, Key=key)["Body"].read()
        return body

    def read_lines(self, key: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read(key).decode().splitlines()]

    def keys(self, prefix: str) -> list[str]:
        pages = self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.data_bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


@pytest.fixture(scope="module")
def stack(moto_endpoint: str, spam_nb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """spam_nb published and promoted in a registry bucket, and an empty versioned data bucket."""
    s3 = boto3.client("s3")
    if MODELS_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        create_bucket(MODELS_BUCKET)
        create_bucket(DATA_BUCKET)
        registry = RegistryAdmin(MODELS_BUCKET)
        published = registry.publish(spam_nb_dir)
        registry.set_alias("spam_nb", "production", published.version)
    version = RegistryAdmin(MODELS_BUCKET).get_alias("spam_nb", "production")
    assert version is not None
    return Stack(moto_endpoint, MODELS_BUCKET, DATA_BUCKET, version.version, tmp_path_factory.mktemp("cache"))


@pytest.fixture
def spam_nb_function(stack: Stack) -> FunctionUnderTest:
    """The spam_nb function's real handler in a fresh execution environment, on the moto server."""
    return FunctionUnderTest("spam_nb", stack.environ, None)


@pytest.fixture
def session_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The batch size of every ``session.run`` the handler makes (the real run still happens)."""
    sizes: list[int] = []
    real_run = Predictor.run

    def counting_run(self: Predictor, feeds: Any, outputs: Any = None) -> Any:
        sizes.append(len(next(iter(feeds.values()))))
        return real_run(self, feeds, outputs)

    monkeypatch.setattr(Predictor, "run", counting_run)
    return sizes


def http_predictions(function: FunctionUnderTest, texts: list[str]) -> list[dict[str, Any]]:
    """What the HTTP endpoint answers for ``texts`` (the reference for the other event sources)."""
    response = function(with_json_body(load_event("spam_nb", "predict.json"), {"instances": texts}))
    assert response["statusCode"] == 200, response
    predictions: list[dict[str, Any]] = body_of(response)["predictions"]
    return predictions


# --- `maas serve` over real HTTP -----------------------------------------------------------------

MAAS = str(Path(sys.executable).parent / "maas")
SERVE_BUCKET = "maas-serve-models"
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


@dataclass(frozen=True)
class Served:
    url: str
    registry: RegistryAdmin
    log: Path

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=60)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return requests.post(self.url + path, timeout=60, **kwargs)


def start_serve(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `maas serve --port 0` and wait for its banner's address."""
    handle = log.open("wb")
    process = subprocess.Popen(
        [MAAS, "serve", "--port", "0", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"maas serve did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def serve_api(
    moto_endpoint: str,
    spam_nb_dir: Path,
    trained_spam_lstm: Any,
    trained_digits_cnn: Any,
    trained_spam_mlp: Any,
    trained_moby_gen: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """Every model behind `maas serve`: spam_nb versions 1-3 (production -> 1, version 3 retired),
    one version (production) of each Keras model."""
    create_bucket(SERVE_BUCKET)
    registry = RegistryAdmin(SERVE_BUCKET)
    for _ in range(3):
        registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    tags = [{"Key": "model", "Value": "spam_nb"}, {"Key": "version", "Value": "3"}]
    registry.s3.put_object_tagging(
        Bucket=SERVE_BUCKET,
        Key=registry.object_key("spam_nb", 3, MODEL_FILE),
        Tagging={"TagSet": [*tags, {"Key": "status", "Value": "retired"}]},
    )
    for trained in (trained_spam_lstm, trained_digits_cnn, trained_spam_mlp, trained_moby_gen):
        published = registry.publish(trained.directory)
        registry.set_alias(published.name, "production", published.version)
    work = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "MODEL_CACHE_DIR": str(work / "cache")}
    process, url = start_serve(["--bucket", SERVE_BUCKET], env, work / "serve.log")
    try:
        yield Served(url, registry, work / "serve.log")
    finally:
        process.terminate()
        process.wait(timeout=30)
