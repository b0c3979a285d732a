"""The trainer: a reproducible split, a manifest that says what was made, and the parity gate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from sklearn.pipeline import Pipeline

from maas.core.errors import ParityError
from ops import cli
from ops.local import moto_server_process
from training import importer
from training.data import load_spamassassin, split_by_id
from training.models import spam_nb
from training.options import TrainOptions


def test_the_split_is_reproducible_stratified_and_keeps_hard_ham_on_both_sides() -> None:
    examples = load_spamassassin()
    first = split_by_id(examples, seed=13)
    again = split_by_id(list(reversed(examples)), seed=13)
    assert [e.id for e in first.test] == [e.id for e in again.test]
    assert {e.id for e in first.test}.isdisjoint(e.id for e in first.train)
    assert len(first.test) + len(first.train) == len(examples)
    for side in (first.train, first.test):
        assert sum(e.group == "hard-ham-1" for e in side) > 0
    spam_share = [sum(e.label == "spam" for e in side) / len(side) for side in (first.train, first.test)]
    assert spam_share[0] == pytest.approx(spam_share[1], abs=0.01)
    assert [e.id for e in split_by_id(examples, seed=14).test] != [e.id for e in first.test]


def test_the_manifest_records_metrics_parity_signature_and_provenance(
    trained_spam_nb: spam_nb.Trained,
) -> None:
    manifest = json.loads((trained_spam_nb.directory / "manifest.json").read_text())
    assert manifest["name"] == "spam_nb" and manifest["task"] == "text-classification"
    assert manifest["labels"] == ["ham", "spam"]
    assert set(manifest["metrics"]) >= {"accuracy", "precision", "recall", "f1"}
    assert manifest["metrics"]["accuracy"] > 0.85
    assert manifest["parity"]["passed"] is True
    assert manifest["parity"]["label_disagreements"] == 0
    assert manifest["parity"]["max_abs_probability_diff"] <= 1e-4
    assert manifest["parity"]["rows"] == manifest["provenance"]["rows_test"]
    assert manifest["signature"]["inputs"][0]["dtype"] == "string"
    assert manifest["onnx"]["opsets"]["ai.onnx"] >= 13
    assert manifest["model"]["size"] == (trained_spam_nb.directory / "model.onnx").stat().st_size
    assert manifest["provenance"]["dataset"] == "spamassassin"
    assert manifest["provenance"]["split"]["groups"]["hard-ham-1"] > 0
    assert manifest["framework"]["name"] == "scikit-learn"


def exporter_of_another_model(real_export: Callable[[Pipeline], Any]) -> Callable[[Pipeline], Any]:
    """A faulty converter: it exports a real pipeline, but not the one it was given."""

    def export(_: Pipeline) -> Any:
        sample = spam_nb.load_spamassassin()[::10]
        other = spam_nb.build_pipeline().set_params(nb__alpha=5.0)
        return real_export(other.fit([e.text for e in sample], [e.label for e in sample]))

    return export


def test_the_parity_gate_refuses_a_graph_that_answers_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converter that exported a different model (here: the same pipeline with another alpha)."""
    monkeypatch.setattr(
        importer, "convert_text_classifier", exporter_of_another_model(importer.convert_text_classifier)
    )
    out = tmp_path / "refused"
    with pytest.raises(ParityError, match="refusing to write"):
        spam_nb.train(TrainOptions(out=out, limit=800, quiet=True))
    assert not out.exists()
    assert not list(tmp_path.iterdir()), "the staging folder was left behind"


def test_the_cli_exits_non_zero_and_says_why_when_parity_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        importer, "convert_text_classifier", exporter_of_another_model(importer.convert_text_classifier)
    )
    code = cli.main(["train", "spam_nb", "--out", str(tmp_path / "m"), "--limit", "800", "--quiet"])
    assert code != 0
    assert "refusing to write spam_nb" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_20_newsgroups_unreachable_is_one_line_and_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], downloads_refused: str
) -> None:
    """The download is refused (a proxy nobody listens on), whether this machine has a network or not."""
    code = cli.main(
        [
            "train",
            "spam_nb",
            "--dataset",
            "20newsgroups",
            "--data",
            str(tmp_path / "home"),
            "--out",
            str(tmp_path / "ng"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("error: 20 newsgroups could not be downloaded")
    assert not (tmp_path / "ng").exists()


def test_a_local_moto_server_starts_after_a_download_refused_by_a_proxy(
    tmp_path: Path, downloads_refused: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """urllib's global opener keeps the proxy of the process's first download: a local server's
    probe must not go through it (a shuffled CI run once failed every e2e module this way)."""
    assert (
        cli.main(
            [
                "train",
                "spam_nb",
                "--dataset",
                "20newsgroups",
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "ng"),
                "--quiet",
            ]
        )
        == 1
    )
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name)
    with moto_server_process() as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="after-a-refused-download")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["after-a-refused-download"]
