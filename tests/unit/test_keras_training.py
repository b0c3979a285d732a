"""The Keras trainers: manifests that say what was made, the tokeniser artifact, the parity gate,
CIFAR-10 when it cannot be downloaded, and a served side that never imports a training framework."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.core.errors import ParityError
from maas.core.tasks.sequences import PAD, UNKNOWN, Tokenizer
from ops import cli
from training.data import PROJECT_ROOT
from training.options import TrainOptions

KERAS_FIXTURES = ["trained_spam_lstm", "trained_digits_cnn", "trained_spam_mlp", "trained_moby_gen"]


@pytest.mark.parametrize("fixture", KERAS_FIXTURES)
def test_each_manifest_records_task_opset_metrics_parity_and_artifacts(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    trained = request.getfixturevalue(fixture)
    manifest = json.loads((trained.directory / "manifest.json").read_text())
    assert manifest == trained.manifest
    assert manifest["framework"]["name"] == "keras"
    assert manifest["framework"]["converter"].startswith("tf2onnx 1.17")
    assert manifest["onnx"]["opsets"]["ai.onnx"] == 17
    assert manifest["parity"]["passed"] is True and manifest["parity"]["label_disagreements"] == 0
    assert manifest["parity"]["max_abs_diff"] <= 1e-4
    for filename, entry in manifest["artifacts"].items():
        assert (trained.directory / filename).stat().st_size == entry["size"]
        assert (
            manifest["io"][{"tokenizer.json": "tokenizer", "vocabulary.json": "vocabulary"}[filename]]
            == filename
        )
    if manifest["task"] == "text-generation":
        assert manifest["parity"]["compared"] == "greedy tokens" and manifest["parity"]["rows"] == 160
        metrics = manifest["metrics"]
        # one epoch on 60,000 characters beats uniform guessing (about 24 against 81), not more
        assert 1.0 < metrics["perplexity"] < len(trained.characters)
        assert math.isclose(metrics["perplexity"], math.exp(metrics["cross_entropy_nats"]), rel_tol=1e-4)
        assert metrics["validation_characters"] > 0
    else:
        assert manifest["parity"]["rows"] == manifest["metrics"]["rows"]
        assert 0.5 < manifest["metrics"]["accuracy"] <= 1.0 and "f1" in manifest["metrics"]


def test_the_lstm_tokeniser_is_a_versioned_artifact_the_runtime_reads(trained_spam_lstm: Any) -> None:
    stored = Tokenizer.from_file(trained_spam_lstm.directory / "tokenizer.json")
    assert stored == trained_spam_lstm.tokenizer
    assert stored.vocabulary[:2] == ("<pad>", "<unk>") and stored.sequence_length == 200


def test_the_tokeniser_lowercases_pads_in_front_and_keeps_the_first_words() -> None:
    tokenizer = Tokenizer(("<pad>", "<unk>", "free", "money", "don't"), 4)
    encoded = tokenizer.encode(["FREE money!", "Don't   send free money now", "ü"])
    assert encoded.tolist() == [[PAD, PAD, 2, 3], [4, UNKNOWN, 2, 3], [PAD, PAD, PAD, UNKNOWN]]


def untrained_export(real_export: Any) -> Any:
    """A faulty converter: it exports a network of the right shape, but not the trained one."""

    def export(model: Any, shape: Any, *names: str) -> Any:
        from training.models import digits_cnn

        return real_export(digits_cnn.build_model(tuple(shape), model.output_shape[-1]), shape, *names)

    return export


def test_the_parity_gate_refuses_a_graph_that_answers_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import keras_common
    from training.models import digits_cnn

    monkeypatch.setattr(keras_common, "export_model", untrained_export(keras_common.export_model))
    with pytest.raises(ParityError, match="refusing to write digits_cnn"):
        digits_cnn.train(TrainOptions(out=tmp_path / "refused", epochs=1, limit=400, quiet=True))
    code = cli.main(
        ["train", "digits_cnn", "--out", str(tmp_path / "m"), "--epochs", "1", "--limit", "400", "--quiet"]
    )
    assert code == 1
    assert "refusing to write digits_cnn" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing written, no staging folder left behind"


def test_cifar10_unreachable_is_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], downloads_refused: str
) -> None:
    """The download is refused (a proxy nobody listens on), whether this machine has a network or not."""
    code = cli.main(["train", "digits_cnn", "--dataset", "cifar10", "--out", str(tmp_path / "c"), "--quiet"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 1
    assert len(errors) == 1 and errors[0].startswith("error: CIFAR-10 could not be downloaded")
    assert not (tmp_path / "c").exists()


def test_the_generator_step_graph_costs_the_same_per_token(trained_moby_gen: Any) -> None:
    """One step: (token, state) -> (logits, state); nothing in the graph grows with the text."""
    from maas.core.predictor import Predictor

    predictor = Predictor(trained_moby_gen.directory / "model.onnx")
    shapes = {spec.name: spec.shape for spec in [*predictor.inputs, *predictor.outputs]}
    units = trained_moby_gen.manifest["provenance"]["parameters"]["gru_units"]
    assert shapes == {
        "token": (None,),
        "state": (None, units),
        "logits": (None, len(trained_moby_gen.characters)),
        "state_out": (None, units),
    }
    state = np.zeros((1, units), np.float32)
    logits, state = predictor.run({"token": np.array([3], np.int32), "state": state}).values()
    assert logits.shape == (1, len(trained_moby_gen.characters)) and np.any(state != 0)


def test_a_generator_graph_is_imported_with_its_vocabulary_and_checked_by_greedy_decoding(
    trained_moby_gen: Any, tmp_path: Path
) -> None:
    """The import path of moby_gen: the step graph, its vocabulary artifact and Keras' greedy
    continuations; a continuation the served generator does not decode is refused, naming the prompt."""
    from training.importer import import_model

    directory, manifest = trained_moby_gen.directory, trained_moby_gen.manifest
    prompts = ["Call me Ishmael", "The whale"]
    keras = [trained_moby_gen.keras_greedy_text(prompt, 40) for prompt in prompts]
    given = {
        "name": "gen",
        "X": prompts,
        "task": "text-generation",
        "io": manifest["io"],
        "artifacts": {"vocabulary.json": (directory / "vocabulary.json").read_bytes()},
        "quiet": True,
    }
    written = import_model(directory / "model.onnx", out=tmp_path / "ok", expected=keras, **given)
    assert written["parity"]["passed"] and written["parity"]["rows"] == 80
    assert written["artifacts"]["vocabulary.json"] == manifest["artifacts"]["vocabulary.json"]
    assert written["io"] == manifest["io"] and written["request_schema"] == manifest["request_schema"]
    other = [keras[0], keras[1][:-1] + ("a" if keras[1][-1] != "a" else "b")]
    with pytest.raises(ParityError) as refused:
        import_model(directory / "model.onnx", out=tmp_path / "refused", expected=other, **given)
    assert str(refused.value) == (
        "refusing to write gen: ONNX disagrees with the source model on 1 of 80 greedy tokens, "
        "max logit difference 0.000e+00 (tolerance 1e-04); rows that differ: [1]"
    )
    assert not (tmp_path / "refused").exists()


def test_a_token_id_graph_is_checked_against_its_source_through_the_served_tokeniser(
    trained_spam_lstm: Any, tmp_path: Path
) -> None:
    """The runtime feeds it token ids from its tokeniser artifact, so the importer cannot run it on
    raw text: without the source's answers it is refused; with answers it does not give, too."""
    from maas.core.errors import TrainingError
    from training.importer import import_model

    directory = trained_spam_lstm.directory
    texts = [e.text for e in trained_spam_lstm.data.test[:5]]
    given = {
        "name": "seq",
        "out": tmp_path / "seq",
        "X": texts,
        "task": "sequence-classification",
        "labels": ["ham", "spam"],
        "io": trained_spam_lstm.manifest["io"],
        "artifacts": {"tokenizer.json": (directory / "tokenizer.json").read_bytes()},
        "quiet": True,
    }
    with pytest.raises(TrainingError) as refused:
        import_model(directory / "model.onnx", **given)
    assert str(refused.value) == (
        "the runtime feeds a 'sequence-classification' graph through an artifact of the version, not "
        "the sample as it is: give the source model's answers to the sample (expected=) for the parity gate"
    )
    other = trained_spam_lstm.keras_probabilities(texts)
    other[[0, 3]] = other[[0, 3], ::-1]  # the other label wins on those rows
    with pytest.raises(ParityError) as refused:
        import_model(directory / "model.onnx", expected=other, **given)
    assert str(refused.value).startswith(
        "refusing to write seq: ONNX disagrees with the source model on 2 of 5 labels, max probability"
    )
    assert str(refused.value).endswith("rows that differ: [0, 3]")
    assert not (tmp_path / "seq").exists()


SERVED_CHECK = """
import importlib, pkgutil, sys
sys.path[:0] = [{layer!r}]
import maas
importlib.import_module({entry!r})
for module in pkgutil.walk_packages(maas.__path__, "maas."):
    importlib.import_module(module.name)
banned = ("tensorflow", "keras", "tf2onnx", "sklearn", "skl2onnx", "PIL", "pandas", "torch", "transformers")
print(sorted(m for m in sys.modules if m.split(".")[0] in banned))
"""


@pytest.mark.parametrize("entry", ["maas.entry.model", "maas.entry.multi_model", "maas.entry.registry"])
def test_the_entry_points_and_every_layer_module_import_no_training_framework(entry: str) -> None:
    code = SERVED_CHECK.format(layer=str(PROJECT_ROOT / "layers" / "runtime"), entry=entry)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
