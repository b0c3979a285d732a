"""SnapStart hooks, run the way Lambda runs them: before the snapshot, then after each restore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import snapshot_restore_py

from maas.core.observability import metrics
from maas.core.runtime import ModelRuntime
from maas.entry import snapstart
from maas.http.app import build_model_app
from ops.local import LambdaContext
from ops.registry_admin import RegistryAdmin
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
def two_versions(registry: RegistryAdmin, spam_nb_dir: Path) -> RegistryAdmin:
    registry.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    return registry


def snapshotted_runtime(tmp_path: Path, ttl: str = "3600") -> ModelRuntime:
    runtime = ModelRuntime("spam_nb")
    snapstart.register_hooks(runtime)
    runtime.reset(
        environ={"MODEL_BUCKET": BUCKET, "MODEL_CACHE_DIR": str(tmp_path), "ALIAS_TTL_SECONDS": ttl}
    )
    return runtime


def answering_version(runtime: ModelRuntime) -> str:
    response = build_model_app(runtime).resolve(
        load_event("spam_nb", "predict.json"), LambdaContext("SpamNb")
    )
    metrics.clear_metrics()  # what the handler's log_metrics decorator flushes after each invocation
    assert response["statusCode"] == 200, response
    return str(json.loads(response["body"])["model_version"])


def test_hooks_are_registered_only_for_a_snapshot_init(monkeypatch: pytest.MonkeyPatch, hooks: None) -> None:
    assert snapstart.register_hooks(ModelRuntime("spam_nb")) is True
    assert len(snapshot_restore_py.get_before_snapshot()) == 1
    assert len(snapshot_restore_py.get_after_restore()) == 1
    monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE")
    assert snapstart.register_hooks(ModelRuntime("spam_nb")) is False
    assert len(snapshot_restore_py.get_before_snapshot()) == 1


def test_the_model_is_loaded_before_the_snapshot(
    hooks: None, two_versions: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    runtime = snapshotted_runtime(tmp_path)
    take_snapshot()
    assert runtime.drain_load_times(), "nothing was loaded before the snapshot"
    downloads: list[str] = []
    runtime.service.registry.s3.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: downloads.append(params["Key"])
    )
    runtime.invocations = 1  # as if the snapshot's own environment had served a request
    restore()
    assert runtime.invocations == 0, "the first request after a restore must count as cold"
    assert answering_version(runtime) == "1"
    assert not [key for key in downloads if key.endswith("model.onnx")], "the model was downloaded again"


def test_a_restore_refreshes_an_alias_resolution_older_than_its_ttl(
    hooks: None, two_versions: RegistryAdmin, tmp_path: Path
) -> None:
    runtime = snapshotted_runtime(tmp_path)
    take_snapshot()
    two_versions.set_alias("spam_nb", "production", 2)  # promoted after the snapshot was taken
    restore()
    assert answering_version(runtime) == "1", "a fresh resolution (within its TTL) is kept"
    assert "spam_nb" in runtime.service._aliases
    runtime.service._aliases["spam_nb"].wall -= 7200  # the snapshot is now two hours old
    restore()
    assert answering_version(runtime) == "2"


def test_a_restore_gives_each_environment_its_own_random_state_and_client(
    hooks: None, two_versions: RegistryAdmin, tmp_path: Path
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
