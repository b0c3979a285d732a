"""spam_minilm: the MiniLM encoder and a logistic-regression head in one graph, trained on a
small stratified sample on the session's one MiniLM export, checked against sentence-transformers
through the scikit-learn head, compared with spam_nb on the same split, and served from raw text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ops.events import SPAM_TEXTS
from ops.registry_admin import RegistryAdmin
from tests.conftest import FunctionUnderTest, body_of, load_event, with_json_body
from tests.e2e.conftest import Stack
from training.models import spam_minilm
from training.options import TrainOptions
from training.progress import Progress


@pytest.fixture(scope="module")
def spam_minilm_dir(minilm_export: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "spam_minilm"
    spam_minilm.train_on(
        minilm_export, TrainOptions(out=out, limit=300, quiet=True), Progress("", quiet=True)
    )
    return out


def test_the_merged_graph_passes_parity_and_is_compared_with_spam_nb(spam_minilm_dir: Path) -> None:
    manifest: dict[str, Any] = json.loads((spam_minilm_dir / "manifest.json").read_text())
    assert manifest["task"] == "transformer-classification" and manifest["labels"] == ["ham", "spam"]
    assert manifest["parity"]["passed"] and manifest["parity"]["label_disagreements"] == 0
    metrics = manifest["metrics"]
    assert metrics["accuracy"] > 0.8 and 0.5 < metrics["spam_nb_on_this_split"]["accuracy"] <= 1.0
    assert metrics["rows"] == manifest["provenance"]["rows_test"]
    assert {o["name"] for o in manifest["signature"]["outputs"]} == {"probabilities"}  # one graph


def test_it_is_served_from_raw_text_by_its_function(stack: Stack, spam_minilm_dir: Path) -> None:
    registry = RegistryAdmin(stack.models_bucket)
    if registry.get_alias("spam_minilm", "production") is None:
        registry.set_alias("spam_minilm", "production", registry.publish(spam_minilm_dir).version)
    function = FunctionUnderTest("spam_minilm", stack.environ, None)
    response = function(load_event("spam_minilm", "predict.json"))
    assert response["statusCode"] == 200, response["body"]
    predictions = body_of(response)["predictions"]
    # a head fitted on 240 rows: its labels are not the point, its ordering is
    assert {p["label"] for p in predictions} <= {"ham", "spam"}
    assert predictions[0]["probabilities"]["spam"] > predictions[1]["probabilities"]["spam"]
    assert len(predictions) == len(SPAM_TEXTS) and all(p["truncated"] is False for p in predictions)
    long = function(
        with_json_body(load_event("spam_minilm", "predict.json"), {"instances": ["free money " * 300]})
    )
    assert body_of(long)["predictions"][0]["truncated"] is True


def test_its_http_answers_are_sentence_transformers_and_the_head(
    stack: Stack, spam_minilm_dir: Path, minilm_export: Any
) -> None:
    """The served probabilities, not the manifest's parity record, against the source pipeline:
    sentence-transformers' vectors of held-out texts through the fitted scikit-learn head."""
    registry = RegistryAdmin(stack.models_bucket)
    if registry.get_alias("spam_minilm", "production") is None:
        registry.set_alias("spam_minilm", "production", registry.publish(spam_minilm_dir).version)
    reference_dir = minilm_export.directory / "spam-reference"
    texts = json.loads((reference_dir / "texts.json").read_text())[:12]
    expected = np.load(reference_dir / "probabilities.npy")[:12]
    function = FunctionUnderTest("spam_minilm", stack.environ, None)
    response = function(with_json_body(load_event("spam_minilm", "predict.json"), {"instances": texts}))
    assert response["statusCode"] == 200, response["body"]
    served = np.array(
        [[p["probabilities"]["ham"], p["probabilities"]["spam"]] for p in body_of(response)["predictions"]]
    )
    assert np.abs(served - expected).max() < 1e-4
