"""minilm end to end: both variants through their parity gates, a damaged quantisation refused,
and the published versions served by the minilm function over HTTP, the protocol, S3 and SQS."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.core.errors import ParityError
from ops.events import EMBED_TEXTS
from ops.lifecycle import Lifecycle
from ops.registry_admin import RegistryAdmin
from tests.conftest import FunctionUnderTest, body_of, load_event, with_json_body
from tests.e2e.conftest import Stack
from tests.e2e.test_keras_event_sources import check_mixed_batch, score_sample_file
from training.models import minilm
from training.progress import Progress

DIMENSIONS = 384


def manifest(folder: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return document


def test_fp32_and_int8_pass_their_gates_and_the_manifests_say_so(minilm_versions: dict[str, Path]) -> None:
    fp32, int8 = manifest(minilm_versions["fp32"]), manifest(minilm_versions["int8"])
    assert fp32["task"] == int8["task"] == "text-embedding"
    assert fp32["parity"]["passed"] and fp32["parity"]["min_cosine"] >= 0.9999
    assert fp32["parity"]["truncated_texts"] == 16  # the long bodies are checked truncated
    assert int8["parity"]["passed"] and int8["parity"]["min_cosine"] >= 0.99
    assert int8["parity"]["top5_overlap"] >= 0.9 and int8["parity"]["paraphrase_nearer"] == 1.0
    assert int8["quantisation"]["scheme"] == "int8"
    # SmoothQuant, then int8 kernels for nearly every MatMul: at most 8 of 36 kept fp32 by the gate
    assert int8["quantisation"]["method"].startswith("SmoothQuant")
    assert int8["quantisation"]["matmuls_int8"] >= 28 and int8["quantisation"]["attempts"][-1]["passed"]
    assert int8["quantisation"]["fp32_parity"]["min_cosine"] >= 0.9999
    # fp32 weights are external data (memory-mapped); int8 holds them inline, at about a quarter
    assert set(fp32["artifacts"]) == {"tokenizer.json", "model.onnx.data"}
    assert set(int8["artifacts"]) == {"tokenizer.json"}
    fp32_bytes = fp32["model"]["size"] + fp32["artifacts"]["model.onnx.data"]["size"]
    assert int8["model"]["size"] < 0.3 * fp32_bytes
    assert fp32["metrics"]["paraphrase_nearer"] == 1.0


def test_a_damaged_quantisation_is_refused_and_writes_nothing(minilm_export: Any, tmp_path: Path) -> None:
    # per-tensor activations (quantize_dynamic): min cosine ~0.97 on these subjects, under the gate
    small = replace(minilm_export, texts=minilm_export.texts[:120], reference=minilm_export.reference[:120])
    out = tmp_path / "minilm_bad"
    with pytest.raises(ParityError, match=r"int8-dynamic.*misses its gate"):
        minilm.write_variant(small, out, "int8-dynamic", Progress("minilm", quiet=True))
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def minilm_published(stack: Stack, minilm_versions: dict[str, Path]) -> Stack:
    """fp32 published as version 1, int8 as version 2; production on fp32."""
    registry = RegistryAdmin(stack.models_bucket)
    if registry.get_alias("minilm", "production") is None:
        registry.publish(minilm_versions["fp32"])
        registry.publish(minilm_versions["int8"])
        registry.set_alias("minilm", "production", 1)
    return stack


@pytest.fixture
def minilm_function(minilm_published: Stack) -> FunctionUnderTest:
    """A fresh execution environment per test: every FunctionUnderTest of minilm shares the one
    handler module, so a test that pins a version or moves the alias leaves nothing behind."""
    return FunctionUnderTest("minilm", minilm_published.environ, None)


def embed(function: FunctionUnderTest, instances: Any) -> tuple[int, dict[str, Any]]:
    response = function(with_json_body(load_event("minilm", "embed.json"), {"instances": instances}))
    return response["statusCode"], body_of(response)


def test_the_embed_route_answers_unit_vectors_where_a_paraphrase_is_nearer(
    minilm_function: FunctionUnderTest,
) -> None:
    response = minilm_function(load_event("minilm", "embed.json"))
    assert response["statusCode"] == 200, response["body"]
    body = body_of(response)
    assert (body["model_name"], body["model_version"], body["truncated"]) == ("minilm", "1", 0)
    vectors = np.array(body["embeddings"])
    assert vectors.shape == (len(EMBED_TEXTS), DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    question, paraphrase, unrelated = vectors
    assert question @ paraphrase > question @ unrelated + 0.2


def test_tokeniser_edges_empty_is_a_400_long_is_truncated_and_counted_unicode_works(
    minilm_function: FunctionUnderTest,
) -> None:
    status, body = embed(minilm_function, ["fine", "  "])
    assert status == 400 and body["error"]["field"] == "instances[1]"
    assert body["error"]["code"] == "empty_text"
    status, body = embed(minilm_function, ["word " * 1000, "short", "naïve café ✓ 日本語 😀"])
    assert status == 200 and body["truncated"] == 1
    assert np.isfinite(np.array(body["embeddings"])).all()
    # a text is embedded from its first 256 tokens: what follows them changes nothing
    _, cut = embed(minilm_function, ["word " * 1000 + "entirely different ending"])
    assert np.allclose(cut["embeddings"][0], body["embeddings"][0], atol=1e-5)
    status, body = body_of_predict(minilm_function)
    assert status == 400 and body["error"]["code"] == "wrong_route"
    assert "/models/minilm/embed" in body["error"]["message"]


def test_a_batch_of_mixed_lengths_answers_each_text_as_it_is_answered_alone(
    minilm_function: FunctionUnderTest,
) -> None:
    """The batch runs in length groups (the long text apart): each row is the text's own answer."""
    texts = [
        "hi",
        "ok thanks",
        "naïve café",
        "a longer subject line about the meeting on Friday",
        "word " * 300,
    ]
    status, body = embed(minilm_function, texts)
    assert status == 200 and body["truncated"] == 1
    alone = [embed(minilm_function, [text])[1]["embeddings"][0] for text in texts]
    assert np.allclose(body["embeddings"], alone, atol=1e-5)


def body_of_predict(function: FunctionUnderTest) -> tuple[int, dict[str, Any]]:
    event = with_json_body(load_event("minilm", "embed.json"), {"instances": ["x"]})
    response = function(
        json.loads(json.dumps(event).replace("/models/minilm/embed", "/models/minilm/predict"))
    )
    return response["statusCode"], body_of(response)


def test_the_protocol_infer_takes_bytes_and_gives_embeddings_and_truncation(
    minilm_function: FunctionUnderTest,
) -> None:
    response = minilm_function(load_event("minilm", "infer.json"))
    assert response["statusCode"] == 200, response["body"]
    outputs = {o["name"]: o for o in body_of(response)["outputs"]}
    assert outputs["embeddings"]["shape"] == [2, DIMENSIONS] and outputs["embeddings"]["datatype"] == "FP32"
    assert outputs["truncated"] == {**outputs["truncated"], "datatype": "BOOL", "data": [False, False]}
    _, plain = embed(minilm_function, EMBED_TEXTS[:2])
    got = np.array(outputs["embeddings"]["data"]).reshape(2, DIMENSIONS)
    assert np.allclose(got, np.array(plain["embeddings"]), atol=1e-6)


def test_s3_and_sqs_answer_the_vectors_http_answers(stack: Stack, minilm_function: FunctionUnderTest) -> None:
    for answered in check_mixed_batch(stack, minilm_function, "minilm"):
        _, expected = embed(minilm_function, answered["request"]["instances"])
        got = [p["embedding"] for p in answered["result"]["predictions"]]
        assert np.allclose(got, expected["embeddings"], atol=1e-6)
    lines = score_sample_file(stack, minilm_function, "minilm")
    assert [line["error"] for line in lines if line["prediction"] is None] == ["empty_text"]
    texts = [json.loads(raw) for raw in (Path("events") / "minilm" / "inputs" / "sample.jsonl").open()]
    valid = [texts[line["line"] - 1] for line in lines if line["prediction"] is not None]
    _, expected = embed(minilm_function, valid)
    got = [line["prediction"]["embedding"] for line in lines if line["prediction"] is not None]
    assert np.allclose(got, expected["embeddings"], atol=1e-6)


def test_the_int8_version_answers_near_the_fp32_one_when_the_alias_moves(
    stack: Stack, minilm_function: FunctionUnderTest
) -> None:
    _, fp32 = embed(minilm_function, EMBED_TEXTS)
    lifecycle = Lifecycle(RegistryAdmin(stack.models_bucket))
    # promote loads int8 and makes it answer its stored sample (an embedding, by cosine) first
    assert lifecycle.promote("minilm", 2, "production").version == 2
    try:
        int8_function = FunctionUnderTest("minilm", stack.environ, None)
        _, int8 = embed(int8_function, EMBED_TEXTS)
    finally:
        assert lifecycle.rollback("minilm", "production").version == 1
    assert int8["model_version"] == "2"
    cosines = (np.array(fp32["embeddings"]) * np.array(int8["embeddings"])).sum(axis=1)
    assert cosines.min() >= 0.99


def test_the_served_vectors_are_sentence_transformers_vectors(
    stack: Stack, minilm_function: FunctionUnderTest, minilm_export: Any
) -> None:
    """The HTTP answers themselves, not the manifest's parity record, against the vectors
    sentence-transformers computed in the export environment (held-out subjects, and a long
    body the tokeniser truncates): fp32 (version 1) to 1e-4, int8 (version 2, pinned) by cosine."""
    picked = [*range(8), len(minilm_export.texts) - 1]
    texts = [minilm_export.texts[i] for i in picked]
    reference = minilm_export.reference[picked]
    status, fp32 = embed(minilm_function, texts)
    assert status == 200 and fp32["model_version"] == "1" and fp32["truncated"] >= 1
    served = np.array(fp32["embeddings"])
    assert np.abs(served - reference).max() < 1e-4
    assert (served * reference).sum(axis=1).min() >= 0.9999
    status, int8 = embed(FunctionUnderTest("minilm", {**stack.environ, "MODEL_VERSION": "2"}, None), texts)
    assert status == 200 and int8["model_version"] == "2"
    assert (np.array(int8["embeddings"]) * reference).sum(axis=1).min() >= 0.99
