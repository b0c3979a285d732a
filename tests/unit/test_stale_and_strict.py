"""Stale but safe: a warm function whose registry reads fail keeps serving what it has, up to
``MAX_STALE_SECONDS`` past the TTL, then answers 503; alias documents and names are read strictly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from maas.core.errors import Conflict, ModelUnavailable, NotFound
from maas.core.registry import ModelRegistry, check_alias, check_model_name
from ops.local import LambdaContext, load_function_module
from ops.registry_admin import RegistryAdmin
from ops.template import functions
from tests.conftest import BUCKET, body_of, load_event, make_function
from tests.unit.test_runtime_lifecycle import Clock

PREDICT = load_event("spam_nb", "predict.json")


@pytest.fixture
def published(registry: RegistryAdmin, spam_nb_dir: Path) -> RegistryAdmin:
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    return registry


class Outage:
    """S3 answering ``SlowDown`` to the reads a warm function repeats (alias, status), on demand."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.on = False
        self.refused = 0
        for operation in ("GetObject", "GetObjectTagging"):
            s3.meta.events.register(f"before-parameter-build.s3.{operation}", self.maybe_fail)

    def maybe_fail(self, params: dict[str, Any], **_: Any) -> None:
        if self.on and params.get("Bucket") == BUCKET:
            self.refused += 1
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "GetObject"
            )

    def close(self) -> None:
        for operation in ("GetObject", "GetObjectTagging"):
            self.s3.meta.events.unregister(f"before-parameter-build.s3.{operation}", self.maybe_fail)


@pytest.fixture
def outage(s3: Any) -> Iterator[Outage]:
    injected = Outage(s3)
    yield injected
    injected.close()


def answer(function: Any) -> tuple[int, dict[str, Any], str]:
    response = function(PREDICT)
    return response["statusCode"], body_of(response), response["body"]


def test_a_warm_function_serves_stale_through_slowdown_then_503_past_the_limit(
    published: RegistryAdmin, s3: Any, tmp_path: Path, outage: Outage
) -> None:
    clock = Clock()
    function = make_function("spam_nb", s3, tmp_path, ALIAS_TTL_SECONDS="30", MAX_STALE_SECONDS="60")
    function.module.runtime.service.clock = clock
    assert answer(function)[0] == 200

    outage.on = True
    for step in (31.0, 30.0, 28.0):  # 31, 61, 89 s after the last good read: within TTL + 60
        clock.now += step
        status, body, _ = answer(function)
        assert (status, body["model_version"]) == (200, "1")
    assert outage.refused >= 3  # it did try the registry each time

    clock.now += 2.0  # 91 s: past the limit
    status, body, text = answer(function)
    assert status == 503 and body["error"]["code"] == "registry_unavailable", body
    assert BUCKET not in text and "SlowDown" in body["error"]["message"]

    outage.on = False  # the registry answers again: so does the function
    assert answer(function)[0] == 200


def test_a_cold_function_during_the_outage_answers_503_not_500(
    published: RegistryAdmin, s3: Any, tmp_path: Path, outage: Outage
) -> None:
    outage.on = True
    status, body, text = answer(make_function("spam_nb", s3, tmp_path))
    assert status == 503 and body["error"]["code"] == "registry_unavailable"
    assert BUCKET not in text


@pytest.mark.parametrize(
    "document",
    [
        b'{"version": true}',
        b'{"version": 1.9}',
        b'{"version": 1.0}',
        b'{"version": "1"}',
        b'{"version": 0}',
        b'{"version": -3}',
        b'{"version": null}',
        b"{}",
        b'{"version": 1, "previous": "x"}',
        b'{"version": 1, "history": {}}',
        b'{"version": 1, "revision": false}',
        b'["version", 1]',
        b"{not json",
        b'{"version": ' + b"9" * 5000 + b"}",
        b"[" * 5000,
    ],
)
def test_a_malformed_alias_document_is_a_clear_503_and_a_warm_function_keeps_serving(
    published: RegistryAdmin, s3: Any, tmp_path: Path, document: bytes
) -> None:
    clock = Clock()
    warm = make_function("spam_nb", s3, tmp_path / "warm", ALIAS_TTL_SECONDS="30")
    warm.module.runtime.service.clock = clock
    assert answer(warm)[0] == 200
    s3.put_object(Bucket=BUCKET, Key=ModelRegistry.alias_key("spam_nb", "production"), Body=document)

    with pytest.raises(ModelUnavailable) as refused:
        ModelRegistry(BUCKET, s3).get_alias("spam_nb", "production")
    assert refused.value.code == "invalid_alias_document"

    clock.now += 31.0
    assert answer(warm)[0] == 200  # stale, within the default MAX_STALE_SECONDS
    clock.now += 300.0
    status, body, text = answer(warm)
    assert (status, body["error"]["code"]) == (503, "invalid_alias_document"), body
    assert BUCKET not in text


def test_the_registry_function_is_503_without_the_bucket_name_when_the_registry_cannot_be_read(
    s3: Any,
) -> None:
    spec = next(s for s in functions() if s.logical_id == "RegistryFunction")
    module = load_function_module(spec)
    missing = "maas-no-such-registry-bucket"
    module.runtime.reset(environ={"MODEL_BUCKET": missing}, s3_client=s3)
    event = load_event("registry", "live.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v2/health/ready"
    response = module.lambda_handler(event, LambdaContext(function_name=spec.logical_id))
    assert response["statusCode"] == 503
    body = json.loads(response["body"])
    assert body["code"] == "registry_unavailable" and missing not in response["body"]
    module.runtime.reset(environ={"MODEL_BUCKET": BUCKET}, s3_client=s3)


@pytest.mark.parametrize("name", ["spam_nb\n", "spam nb", "", "1spam", "spam_nb\x00", "spæm"])
def test_model_names_are_identifiers_with_nothing_after(name: str) -> None:
    with pytest.raises(NotFound):
        check_model_name(name)


@pytest.mark.parametrize("alias", [".", "..", "production\n", "", "a" * 65, "pro/duction", "prod uction"])
def test_aliases_refuse_dots_newlines_and_paths(alias: str) -> None:
    with pytest.raises(Conflict):
        check_alias(alias)


def test_good_names_and_aliases_still_pass() -> None:
    assert check_model_name("spam_nb") == "spam_nb"
    assert [check_alias(a) for a in ("production", "v1.2", "canary-2", "...")] == [
        "production",
        "v1.2",
        "canary-2",
        "...",
    ]


def test_the_cache_is_bounded_by_count_and_refuses_a_version_beyond_it_with_a_503(
    registry: RegistryAdmin, spam_nb_dir: Path, s3: Any, tmp_path: Path
) -> None:
    from tests.unit.test_inference_protocol import versioned

    for _ in range(3):
        registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    infer = load_event("spam_nb", "infer.json")

    two = make_function("spam_nb", s3, tmp_path / "two", MODEL_CACHE_VERSIONS="2")
    assert two(PREDICT)["statusCode"] == 200  # resolves the alias: version 1 is in use
    for version in (2, 3, 2, 1):
        assert two(versioned(infer, version))["statusCode"] == 200
        assert len(two.module.runtime.service.loaded()) <= 2
    assert 1 in two.module.runtime.service.loaded_versions()  # the alias's version is never evicted

    one = make_function("spam_nb", s3, tmp_path / "one", MODEL_CACHE_VERSIONS="1")
    assert one(PREDICT)["statusCode"] == 200  # version 1, the alias's: in use
    response = one(versioned(infer, 2))
    assert response["statusCode"] == 503 and json.loads(response["body"])["code"] == "cache_full"
    assert one(PREDICT)["statusCode"] == 200


def test_retirement_cannot_be_reversed_by_the_tools(registry: RegistryAdmin, spam_nb_dir: Path) -> None:
    from maas.core.registry import STATUS_ACTIVE, STATUS_RETIRED

    registry.publish(spam_nb_dir)
    registry.set_status("spam_nb", 1, STATUS_RETIRED)
    with pytest.raises(Conflict) as refused:
        registry.set_status("spam_nb", 1, STATUS_ACTIVE)
    assert refused.value.code == "status_irreversible"
    assert registry.status("spam_nb", 1) == STATUS_RETIRED
