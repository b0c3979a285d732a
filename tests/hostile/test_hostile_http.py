"""No request content produces a 5xx: the hostile corpus and generated bodies, through the REAL
handler of spam_nb (a classifier) and moby_gen (a generator), against moto's S3 in-process.

Every answer must be below 500, a JSON body with an error code when it is a 4xx, and name no
bucket and no S3 version id. The counts are printed (``pytest -s``): requests tried, and 5xx (0).
"""

from __future__ import annotations

import copy
import json
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET, load_event, make_function
from tests.hostile.corpus import CASES

TALLY: Counter[str] = Counter()
TEMPLATE = load_event("spam_nb", "predict.json")
ROUTES = {
    "predict": ("POST", "/models/{m}/predict"),
    "generate": ("POST", "/models/{m}/generate"),
    "infer": ("POST", "/v2/models/{m}/infer"),
    "version_infer": ("POST", "/v2/models/{m}/versions/1/infer"),
    "describe": ("GET", "/models/{m}"),
    "metadata": ("GET", "/v2/models/{m}"),
}
GENERATED = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


def request_event(
    model: str, route: str, body: str | None, path: str | None = None, base64: bool = False
) -> dict[str, Any]:
    method, pattern = ROUTES[route]
    raw_path = (path or pattern).replace("{m}", model).replace("spam_nb", model)
    event = copy.deepcopy(TEMPLATE)
    event["rawPath"] = raw_path
    event["routeKey"] = f"{method} {raw_path}"
    event["requestContext"]["http"]["method"] = method
    event["requestContext"]["http"]["path"] = raw_path
    event["requestContext"]["requestId"] = "hostile-req-1"
    event["body"] = body
    event["isBase64Encoded"] = base64
    if method == "GET":
        event.pop("body", None)
    return event


class Target:
    """One model's real handler, and what no answer of it may show."""

    def __init__(self, model: str, function: Any, registry: RegistryAdmin) -> None:
        self.model = model
        self.function = function
        publication = registry.read_publication(model, 1) or {}
        self.secrets = [BUCKET, *(m.get("version_id") or "" for m in publication.get("objects", {}).values())]

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        TALLY["tried"] += 1
        try:
            response: dict[str, Any] = self.function(event)
        except Exception:
            TALLY["5xx"] += 1
            raise
        status = response["statusCode"]
        if status >= 500:
            TALLY["5xx"] += 1
        assert status < 500, (event.get("rawPath", "")[:200], (event.get("body") or "")[:200], response)
        text = response["body"]
        body = json.loads(text)  # every answer is JSON
        if status >= 400:
            code = body["error"]["code"] if isinstance(body["error"], dict) else body["code"]
            assert isinstance(code, str) and code, body
            message = body["error"]["message"] if isinstance(body["error"], dict) else body["error"]
            assert len(message) <= 400, message
            request_id = (
                body["error"].get("request_id") if isinstance(body["error"], dict) else body["request_id"]
            )
            assert request_id == "hostile-req-1", body
        for secret in self.secrets:
            assert not secret or secret not in text, (secret, text[:300])
        return response


def published(registry: RegistryAdmin, directory: Path, model: str) -> RegistryAdmin:
    registry.publish(directory)
    registry.set_alias(model, "production", 1)
    return registry


@pytest.fixture
def spam_nb(registry: RegistryAdmin, spam_nb_dir: Path, s3: Any, tmp_path: Path) -> Target:
    published(registry, spam_nb_dir, "spam_nb")
    return Target("spam_nb", make_function("spam_nb", s3, tmp_path, MAX_BATCH="16"), registry)


@pytest.fixture
def moby_gen(registry: RegistryAdmin, trained_moby_gen: Any, s3: Any, tmp_path: Path) -> Target:
    published(registry, trained_moby_gen.directory, "moby_gen")
    return Target("moby_gen", make_function("moby_gen", s3, tmp_path), registry)


def report(label: str) -> None:
    print(f"\nhostile HTTP ({label}): {TALLY['tried']} requests tried so far, {TALLY['5xx']} answered 5xx")


def run_corpus(target: Target) -> list[int]:
    statuses = []
    for case in CASES:
        statuses.append(
            target.send(request_event(target.model, case.route, case.body, case.path))["statusCode"]
        )
    return statuses


def test_the_hostile_corpus_is_refused_with_4xx_by_a_classifier(spam_nb: Target) -> None:
    statuses = run_corpus(spam_nb)
    assert all(s < 500 for s in statuses)
    assert sum(1 for s in statuses if s >= 400) > len(CASES) // 2
    report("corpus, spam_nb")


# What a generator may accept from the corpus: a temperature of (nearly) zero is greedy decoding.
GENERATOR_ACCEPTS = {
    "temperature-5e-324",
    "temperature-1e-308",
    "temperature-2.2250738585072014e-308",
    "temperature-1e-300",
    "temperature--0.0",
    "infer-temperature-tiny",
}


def test_the_hostile_corpus_is_refused_with_4xx_by_a_generator(moby_gen: Target) -> None:
    statuses = dict(zip((case.name for case in CASES), run_corpus(moby_gen), strict=True))
    refused = {name for name, status in statuses.items() if 400 <= status < 500}
    assert refused == set(statuses) - GENERATOR_ACCEPTS, sorted(set(statuses) - GENERATOR_ACCEPTS - refused)
    assert all(statuses[name] == 200 for name in GENERATOR_ACCEPTS)
    report("corpus, moby_gen")


def by_name(target: Target, name: str) -> dict[str, Any]:
    (case,) = [c for c in CASES if c.name == name]
    response = target.send(request_event(target.model, case.route, case.body, case.path))
    body: dict[str, Any] = json.loads(response["body"])
    return {"status": response["statusCode"], **body}


def test_the_findings_name_their_field(spam_nb: Target, moby_gen: Target) -> None:
    deep = by_name(spam_nb, "deep-100000-predict")
    assert (
        deep["status"] == 400
        and deep["error"]["code"] == "too_deeply_nested"
        and deep["error"]["field"] == "body"
    )
    deep_infer = by_name(spam_nb, "deep-100000-infer")
    assert deep_infer["status"] == 400 and deep_infer["code"] == "too_deeply_nested"
    surrogate = by_name(spam_nb, "surrogate-predict")
    assert (surrogate["status"], surrogate["error"]["code"], surrogate["error"]["field"]) == (
        400,
        "invalid_text",
        "instances[0]",
    )
    surrogate_infer = by_name(spam_nb, "surrogate-infer")
    assert surrogate_infer["status"] == 400 and surrogate_infer["code"] == "invalid_text"
    big = by_name(spam_nb, "bigint-data")
    assert big["status"] == 400 and big["code"] == "invalid_json"
    for label in ("4301-nines", "superscript", "arabic-indic"):
        version = by_name(spam_nb, f"version-{label}-/ready")
        assert version["status"] == 404 and version["code"] == "version_not_found", version
    for t in ("5e-324", "1e-308"):
        tiny = by_name(moby_gen, f"temperature-{t}")
        assert tiny["status"] == 200 and len(tiny["continuations"][0]) == 5, tiny
    tiny_infer = by_name(moby_gen, "infer-temperature-tiny")
    assert tiny_infer["status"] == 200


# --- generated -----------------------------------------------------------------------------------

CHARS = st.characters(exclude_categories=()) | st.sampled_from(
    ["\ud800", "\udfff", "\x00", "\u2028", "²", "\n"]
)
TEXT = st.text(CHARS, max_size=30)
NUMBERS = (
    st.integers()
    | st.integers(min_value=-(10**4200), max_value=10**4200)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([5e-324, 1e-308, -0.0, 1e308, 2**63, -(2**63) - 1, 2**64])
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def dumps(value: Any) -> str:
    try:
        return json.dumps(value)
    except ValueError:  # an integer past the int-string limit: written by hand
        return "1" + "0" * 4400


def predict_bodies() -> st.SearchStrategy[str]:
    return st.one_of(
        JSON.map(dumps),
        JSON.map(lambda v: dumps({"instances": v})),
        st.lists(SCALARS, min_size=1, max_size=20).map(lambda v: dumps({"instances": v})),
        st.lists(TEXT, min_size=1, max_size=20).map(lambda v: dumps({"instances": v})),
        st.text(CHARS, max_size=200),
    )


def generate_bodies() -> st.SearchStrategy[str]:
    fields = st.fixed_dictionaries(
        {"prompt": st.one_of(TEXT, st.text(string.ascii_lowercase + " ", min_size=1, max_size=40), SCALARS)},
        optional={
            "temperature": st.one_of(NUMBERS, SCALARS),
            "max_new_tokens": st.one_of(st.integers(-5, 12), SCALARS),
            "num_return_sequences": st.one_of(st.integers(-2, 4), SCALARS),
            "top_k": st.one_of(st.integers(-2, 100), SCALARS),
            "seed": st.one_of(st.integers(), SCALARS),
        },
    )
    return st.one_of(fields.map(dumps), JSON.map(dumps), st.text(CHARS, max_size=100))


def infer_bodies() -> st.SearchStrategy[str]:
    tensor = st.fixed_dictionaries(
        {
            "name": st.one_of(st.sampled_from(["text", "prompt"]), TEXT, SCALARS),
            "shape": st.one_of(st.lists(st.integers(-3, 2**40), max_size=4), JSON),
            "datatype": st.one_of(st.sampled_from(["BYTES", "FP32", "INT64", "BOOL"]), TEXT),
            "data": JSON,
        },
        optional={"parameters": JSON},
    )
    request = st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(tensor, max_size=3), JSON)},
        optional={
            "id": st.one_of(TEXT, SCALARS),
            "parameters": st.one_of(st.dictionaries(TEXT, JSON, max_size=3), JSON),
            "outputs": JSON,
        },
    )
    return st.one_of(request.map(dumps), JSON.map(dumps), st.text(CHARS, max_size=100))


SEGMENTS = st.one_of(
    TEXT.filter(lambda s: s and "/" not in s and "?" not in s and "#" not in s), NUMBERS.map(str)
)


@GENERATED
@given(body=predict_bodies(), base64=st.booleans())
def test_generated_predict_bodies(spam_nb: Target, body: str, base64: bool) -> None:
    spam_nb.send(request_event("spam_nb", "predict", body, base64=base64))


@GENERATED
@given(body=infer_bodies(), versioned=st.booleans())
def test_generated_infer_bodies(spam_nb: Target, body: str, versioned: bool) -> None:
    spam_nb.send(request_event("spam_nb", "version_infer" if versioned else "infer", body))


@GENERATED
@given(
    segment=SEGMENTS,
    route=st.sampled_from(
        [
            "/v2/models/{m}/versions/{s}/ready",
            "/v2/models/{m}/versions/{s}",
            "/models/{s}",
            "/v2/models/{s}/ready",
            "/models/{s}/predict",
        ]
    ),
)
def test_generated_describe_and_versioned_paths(spam_nb: Target, segment: str, route: str) -> None:
    method_route = "predict" if route.endswith("/predict") else "metadata"
    body = '{"instances": ["hi"]}' if method_route == "predict" else None
    spam_nb.send(request_event("spam_nb", method_route, body, path=route.replace("{s}", segment)))


@GENERATED
@given(body=generate_bodies())
def test_generated_generate_bodies(moby_gen: Target, body: str) -> None:
    moby_gen.send(request_event("moby_gen", "generate", body))


@GENERATED
@given(body=infer_bodies())
def test_generated_infer_bodies_on_a_generator(moby_gen: Target, body: str) -> None:
    moby_gen.send(request_event("moby_gen", "infer", body))


@pytest.fixture(scope="module", autouse=True)
def counts_reported_after_the_module() -> Iterator[None]:
    """After every test of this module, in whatever order they ran: how many hostile requests
    were tried, and how many were 5xx (each one already failed its own test)."""
    yield
    report("total")
    assert TALLY["tried"] > 0 and TALLY["5xx"] == 0, TALLY
