"""SnapStart hooks, run the way Lambda runs them: before the snapshot, then after each restore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import snapshot_restore_py

from maas.http import build_http_app
from maas.observability import metrics
from maas.registry import ModelRegistry
from maas.runtime import ModelRuntime
from ops.local import LambdaContext
from tests.conftest import BUCKET, load_event


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    snapshot_restore_py.get_before_snapshot().clear()
    snapshot_restore_py.get_after_restore().clear()
    yield
    snapshot_restore_py.get_before_snapshot().clear()
    snapshot_restore_py.get_after_restore().clear()


def take_snapshot() -> None:
    for func, args, kwargs in reversed(snapshot_restore_py.get_before_snapshot()):
        func(*args, **kwargs)


def restore() -> None:
    for func, args, kwargs in snapshot_restore_py.get_after_restore():
        func(*args, **kwargs)


@pytest.fixture
def two_versions(registry: ModelRegistry, spam_nb_dir: Path) -> ModelRegistry:
    registry.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    return registry


def snapshotted_runtime(tmp_path: Path, ttl: str = "3600") -> ModelRuntime:
    runtime = ModelRuntime("spam_nb")
    runtime.reset(
        environ={"MODEL_BUCKET": BUCKET, "MODEL_CACHE_DIR": str(tmp_path), "ALIAS_TTL_SECONDS": ttl}
    )
    return runtime


def answering_version(runtime: ModelRuntime) -> str:
    response = build_http_app(runtime).resolve(load_event("spam_nb", "predict.json"), LambdaContext("SpamNb"))
    metrics.clear_metrics()  # what the handler's log_metrics decorator flushes after each invocation
    assert response["statusCode"] == 200, response
    return str(json.loads(response["body"])["model_version"])


def test_hooks_are_registered_only_for_a_snapshot_init(monkeypatch: pytest.MonkeyPatch, hooks: None) -> None:
    ModelRuntime("spam_nb")
    assert len(snapshot_restore_py.get_before_snapshot()) == 1
    assert len(snapshot_restore_py.get_after_restore()) == 1
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE")
    ModelRuntime("spam_nb")
    assert len(snapshot_restore_py.get_before_snapshot()) == 1


def test_the_model_is_loaded_before_the_snapshot(
    hooks: None, two_versions: ModelRegistry, s3: Any, tmp_path: Path
) -> None:
    runtime = snapshotted_runtime(tmp_path)
    take_snapshot()
    assert runtime.service.take_load_ms() is not None, "nothing was loaded before the snapshot"
    downloads: list[str] = []
    runtime.service.registry.s3.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: downloads.append(params["Key"])
    )
    runtime.take_cold_start()  # as if the snapshot's own environment had served a request
    restore()
    assert runtime.take_cold_start() is True, "the first request after a restore must count as cold"
    assert answering_version(runtime) == "1"
    assert not [key for key in downloads if key.endswith("model.onnx")], "the model was downloaded again"


def test_a_restore_refreshes_an_alias_resolution_older_than_its_ttl(
    hooks: None, two_versions: ModelRegistry, tmp_path: Path
) -> None:
    runtime = snapshotted_runtime(tmp_path)
    take_snapshot()
    two_versions.set_alias("spam_nb", "production", 2)  # promoted after the snapshot was taken
    restore()
    assert answering_version(runtime) == "1", "a fresh resolution (within its TTL) is kept"
    assert runtime.service._alias is not None
    runtime.service._alias.wall -= 7200  # the snapshot is now two hours old
    restore()
    assert answering_version(runtime) == "2"


def test_a_restore_gives_each_environment_its_own_random_state_and_client(
    hooks: None, two_versions: ModelRegistry, tmp_path: Path
) -> None:
    runtime = snapshotted_runtime(tmp_path)
    take_snapshot()
    client = runtime.service.registry.s3
    state = np.random.get_state()
    draws = []
    for _ in range(2):
        np.random.set_state(state)  # two environments restored from the same snapshot
        restore()
        draws.append(np.random.random(4).tolist())
    assert draws[0] != draws[1]
    assert runtime.service.registry.s3 is not client
