"""Bring your own transformer: Hugging Face-style ONNX folders (model.onnx, tokenizer.json,
config.json) of a tiny BERT that the test exports itself, imported as an embedding model and as
a sequence classifier, then published and served from raw text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.core.errors import TrainingError
from maas.core.predictor import Predictor
from maas.core.tasks import task_for
from ops.cli import main as maas
from ops.registry_admin import RegistryAdmin
from tests.conftest import FunctionUnderTest, body_of, load_event, with_json_body
from tests.e2e.conftest import Stack
from training.data import load_spamassassin
from training.hf_import import import_transformer
from training.transformers.environment import run_export

TEXTS = [e.text.split("\n", 1)[0] or "(no subject)" for e in load_spamassassin()[:40]]


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2-layer, 32-wide BERT with MiniLM's WordPiece vocabulary, exported by PyTorch the way
    Hugging Face's exporters lay it out: ``last_hidden_state`` and a classifier's ``logits``."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "texts.json").write_text(json.dumps(TEXTS))
    command = [
        "--tiny",
        str(root),
        "--head",
        "hidden",
        "--head",
        "logits",
        "--texts",
        str(root / "texts.json"),
    ]
    run_export([*command, "--out", str(root)])
    return {head: root / head for head in ("hidden", "logits")}


def torch_answers(folder: Path, count: int) -> np.ndarray:
    """PyTorch's answers to the first ``count`` TEXTS (pooled embeddings, or probabilities),
    computed in the export environment from the same weights: not from the ONNX graph."""
    answers: np.ndarray = np.load(folder / "torch_answers.npy")[:count]
    return answers


def test_a_feature_extraction_folder_is_imported_as_an_embedding_model(
    hf_folders: dict[str, Path], tmp_path: Path
) -> None:
    manifest = import_transformer(
        hf_folders["hidden"], name="tiny_embed", out=tmp_path / "v", texts=TEXTS, quiet=True
    )
    assert manifest["task"] == "text-embedding" and manifest["labels"] == []
    assert manifest["parity"]["passed"] and manifest["parity"]["min_cosine"] >= 0.9999
    assert manifest["io"]["max_length"] == 128  # the tokenizer's truncation, within 128 positions
    served = task_for(Predictor(tmp_path / "v" / "model.onnx"), manifest)
    vectors = np.array([p["embedding"] for p in served.predict(served.prepare(TEXTS[:5]))])  # type: ignore[attr-defined]
    expected = torch_answers(hf_folders["hidden"], 5)
    assert np.allclose(vectors, expected, atol=1e-5)


def test_a_sequence_classification_folder_is_imported_with_its_id2label(
    hf_folders: dict[str, Path], tmp_path: Path, stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = tmp_path / "texts.jsonl"
    sample.write_text("".join(json.dumps(t) + "\n" for t in TEXTS))
    out = tmp_path / "v"
    assert (
        maas(
            [
                "import",
                str(hf_folders["logits"]),
                "--name",
                "tiny_cls",
                "--out",
                str(out),
                "--sample",
                str(sample),
            ]
        )
        == 0
    )
    assert "transformer-classification, labels ['negative', 'positive']" in capsys.readouterr().out
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["passed"] and manifest["parity"]["label_disagreements"] == 0

    # served by the multi-model function (no catalogue entry), from raw text
    registry = RegistryAdmin(stack.models_bucket)
    version = registry.publish(out).version
    registry.set_alias("tiny_cls", "production", version)
    function = FunctionUnderTest("multi_model", stack.environ, None)
    event = load_event("spam_nb", "predict.json")
    event = json.loads(json.dumps(event).replace("/models/spam_nb/", "/models/tiny_cls/"))
    response = function(with_json_body(event, {"instances": TEXTS[:3]}))
    assert response["statusCode"] == 200, response["body"]
    predictions = body_of(response)["predictions"]
    expected = torch_answers(hf_folders["logits"], 3)
    assert [p["label"] for p in predictions] == [["negative", "positive"][i] for i in expected.argmax(1)]
    assert np.allclose([p["probabilities"]["positive"] for p in predictions], expected[:, 1], atol=1e-4)


def test_a_folder_without_id2label_or_with_a_foreign_graph_is_refused(
    hf_folders: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (folder / name).write_bytes((hf_folders["logits"] / name).read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(TrainingError, match="id2label"):
        import_transformer(folder, name="nolabels", out=tmp_path / "v", texts=TEXTS, quiet=True)
    with pytest.raises(TrainingError, match="gives 'logits'"):
        import_transformer(
            hf_folders["hidden"],
            name="wrong",
            out=tmp_path / "w",
            texts=TEXTS,
            task="transformer-classification",
        )
