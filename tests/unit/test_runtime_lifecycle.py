"""A warm function under lifecycle moves: TTL re-resolution, in-flight requests, retirement,
replaced objects and the byte-bounded cache, through the real spam_nb handler."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from ops.lifecycle import Lifecycle
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET, body_of, load_event, make_function

PREDICT = load_event("spam_nb", "predict.json")


class Clock:
    """An injected monotonic clock: the TTL passes when the test says so, not by sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lifecycle(registry: RegistryAdmin, spam_nb_dir: Path) -> Lifecycle:
    for _ in range(3):
        registry.publish(spam_nb_dir)
    lifecycle = Lifecycle(registry)
    lifecycle.promote("spam_nb", 1, "production")
    return lifecycle


def warm(function: Any, clock: Clock) -> Any:
    function.module.runtime.service.clock = clock
    return function


def answer(function: Any) -> tuple[int, dict[str, Any]]:
    response = function(PREDICT)
    return response["statusCode"], body_of(response)


def version_of(function: Any) -> str:
    status, body = answer(function)
    assert status == 200, body
    assert [p["label"] for p in body["predictions"]] == ["spam", "ham", "ham"]
    return str(body["model_version"])


def test_a_warm_function_switches_after_the_ttl_and_back_on_rollback(
    lifecycle: Lifecycle, s3: Any, tmp_path: Path
) -> None:
    clock = Clock()
    function = warm(make_function("spam_nb", s3, tmp_path, ALIAS_TTL_SECONDS="30"), clock)
    assert version_of(function) == "1"
    lifecycle.promote("spam_nb", 2, "production")
    clock.now += 10
    assert version_of(function) == "1", "within the TTL the resolved alias is kept"
    clock.now += 25
    assert version_of(function) == "2", "after the TTL the alias is read again: no redeploy"
    lifecycle.rollback("spam_nb", "production")
    assert version_of(function) == "2"
    clock.now += 31
    assert version_of(function) == "1"
    assert function.module.runtime.service.loaded_versions() == [2, 1]


def test_a_request_in_flight_finishes_on_the_version_it_started_with(
    lifecycle: Lifecycle, s3: Any, tmp_path: Path
) -> None:
    clock = Clock()
    function = warm(make_function("spam_nb", s3, tmp_path, ALIAS_TTL_SECONDS="30"), clock)
    service = function.module.runtime.service
    first = service.current()
    entered, release = threading.Event(), threading.Event()
    original = first.task.predict

    def slow_predict(feeds: Any) -> Any:
        entered.set()
        assert release.wait(timeout=30)
        return original(feeds)

    first.task.predict = slow_predict  # type: ignore[method-assign]
    results: list[tuple[int, dict[str, Any]]] = []
    in_flight = threading.Thread(target=lambda: results.append(answer(function)))
    in_flight.start()
    assert entered.wait(timeout=30)
    lifecycle.promote("spam_nb", 2, "production")
    clock.now += 31
    assert version_of(function) == "2", "new requests answer with the promoted version meanwhile"
    release.set()
    in_flight.join(timeout=30)
    status, body = results[0]
    assert status == 200 and body["model_version"] == "1"
    assert [p["label"] for p in body["predictions"]] == ["spam", "ham", "ham"]


def test_a_retired_pinned_version_is_refused_with_its_version_and_status(
    lifecycle: Lifecycle, s3: Any, tmp_path: Path
) -> None:
    clock = Clock()
    function = warm(make_function("spam_nb", s3, tmp_path, MODEL_VERSION="2", ALIAS_TTL_SECONDS="30"), clock)
    assert version_of(function) == "2"
    lifecycle.retire("spam_nb", 2)
    clock.now += 31
    status, body = answer(function)
    assert status == 503
    assert body["error"]["code"] == "version_not_active"
    assert "version 2 (pinned by MODEL_VERSION) is retired" in body["error"]["message"]
    assert not (tmp_path / "cache" / "spam_nb" / "2").exists(), "a retired version's files stay in /tmp"
    cold = make_function("spam_nb", s3, tmp_path / "cold", MODEL_VERSION="2")
    status, body = answer(cold)
    assert status == 503 and "version 2 (pinned by MODEL_VERSION) is retired" in body["error"]["message"]


def test_a_replaced_model_object_is_refused_even_with_the_same_bytes(
    lifecycle: Lifecycle, s3: Any, spam_nb_dir: Path, tmp_path: Path
) -> None:
    key = "models/spam_nb/versions/1/model.onnx"
    s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=(spam_nb_dir / "model.onnx").read_bytes(),
        Tagging="model=spam_nb&version=1&status=active",  # a careful replacement: tags and bytes kept
    )
    status, body = answer(make_function("spam_nb", s3, tmp_path))
    assert status == 503
    assert body["error"]["code"] == "object_replaced"
    assert "model.onnx was replaced after publication" in body["error"]["message"]
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert not any(v["VersionId"] in str(body) for v in versions)  # no S3 version id in an answer
    assert not list((tmp_path / "cache" / "spam_nb" / "1").glob("*.onnx"))


def test_a_replaced_manifest_is_refused(lifecycle: Lifecycle, s3: Any, tmp_path: Path) -> None:
    key = "models/spam_nb/versions/2/manifest.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    status, body = answer(make_function("spam_nb", s3, tmp_path, MODEL_VERSION="2"))
    assert status == 503 and body["error"]["code"] == "object_replaced"
    assert "manifest.json was replaced after publication" in body["error"]["message"]


def test_a_version_without_its_publication_record_is_refused(
    lifecycle: Lifecycle, s3: Any, tmp_path: Path
) -> None:
    s3.delete_object(Bucket=BUCKET, Key="models/spam_nb/versions/3/publication.json")
    status, body = answer(make_function("spam_nb", s3, tmp_path, MODEL_VERSION="3"))
    assert status == 503 and body["error"]["code"] == "version_incomplete"


def test_the_cache_stays_within_its_byte_bound_and_removes_evicted_files(
    lifecycle: Lifecycle, s3: Any, spam_nb_dir: Path, tmp_path: Path
) -> None:
    size = sum(p.stat().st_size for p in (spam_nb_dir).iterdir() if p.name != "manifest.json")
    bound = int(size * 2.5)  # two versions fit, three do not
    clock = Clock()
    function = warm(
        make_function("spam_nb", s3, tmp_path, ALIAS_TTL_SECONDS="1", MODEL_CACHE_BYTES=str(bound)), clock
    )
    service = function.module.runtime.service
    cache = tmp_path / "cache" / "spam_nb"
    for version in (1, 2, 3, 1, 2):
        lifecycle.promote("spam_nb", version, "production")
        clock.now += 2
        assert version_of(function) == str(version)
        assert service.cached_bytes <= bound
        on_disk = sorted(int(p.name) for p in cache.iterdir() if any(p.glob("*.onnx")))
        assert on_disk == sorted(service.loaded_versions())
    assert service.loaded_versions() == [1, 2]
    assert not (cache / "3").exists()
