"""Fixtures for the event sources: a registry and a data bucket on the moto server, the real handler."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.predictor import Predictor
from maas.registry import ModelRegistry
from tests.conftest import FunctionUnderTest, body_of, load_event, with_json_body
from training.local import create_bucket

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
        registry = ModelRegistry(MODELS_BUCKET)
        published = registry.publish(spam_nb_dir)
        registry.set_alias("spam_nb", "production", published.version)
    version = ModelRegistry(MODELS_BUCKET).get_alias("spam_nb", "production")
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
