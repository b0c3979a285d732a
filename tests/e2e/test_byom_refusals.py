"""What `maas import`, `maas publish` and `maas models promote` refuse: one line on stderr, exit 1,
never a traceback. The registry is moto in-process; the CLI runs in-process (``ops.cli.main``)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops.cli import main
from tests.conftest import BUCKET
from tests.e2e.byom import ImportedModel


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The one error line of a refused command."""
    code, _, err = run(capsys, *argv)
    lines = [line for line in err.splitlines() if not line.startswith("[")]  # progress lines
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def edited(source: Path, destination: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    shutil.copytree(source, destination)
    manifest = json.loads((destination / "manifest.json").read_text())
    edit(manifest)
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


@pytest.fixture
def wine_dir(imported: dict[str, ImportedModel]) -> Path:
    return imported["wine_clf"].directory


# --- publish ---------------------------------------------------------------------------------------


def test_publish_refuses_what_cannot_be_served(
    wine_dir: Path, registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def task(m: dict[str, Any]) -> None:
        m["task"] = "forecasting"

    line = refused(capsys, "publish", str(edited(wine_dir, tmp_path / "task", task)), "--bucket", BUCKET)
    assert line.startswith(
        "error: refusing to publish wine_clf: this runtime cannot serve task 'forecasting'"
    )
    assert "'regression'" in line and "'tabular-classification'" in line

    def labels(m: dict[str, Any]) -> None:
        m["labels"] = ["red", "white"]

    line = refused(capsys, "publish", str(edited(wine_dir, tmp_path / "labels", labels)), "--bucket", BUCKET)
    assert line == (
        "error: refusing to publish wine_clf: the manifest has 2 labels ['red', 'white'] but the "
        "probability output 'probabilities' has 3 columns"
    )

    def name(m: dict[str, Any]) -> None:
        m["name"] = "wine-quality"

    line = refused(capsys, "publish", str(edited(wine_dir, tmp_path / "name", name)), "--bucket", BUCKET)
    assert line == (
        "error: model name 'wine-quality' is not valid: a name starts with a letter or '_' and holds "
        "only letters, digits and '_' (a Python identifier, e.g. wine_quality)"
    )
    assert registry.list_models() == []


def test_publish_refuses_missing_or_changed_files_and_a_broken_manifest(
    wine_dir: Path, registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = shutil.copytree(wine_dir, tmp_path / "missing")
    (missing / "model.onnx").unlink()
    line = refused(capsys, "publish", str(missing), "--bucket", BUCKET)
    assert line == f"error: {missing / 'model.onnx'} is named in the manifest but missing"

    changed = shutil.copytree(wine_dir, tmp_path / "changed")
    with (changed / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    line = refused(capsys, "publish", str(changed), "--bucket", BUCKET)
    assert line == (
        f"error: {changed / 'model.onnx'} does not match the sha256 in its manifest "
        "(the file changed after the parity gate)"
    )

    broken = shutil.copytree(wine_dir, tmp_path / "broken")
    (broken / "manifest.json").write_text('{"name": "wine_clf", ')
    line = refused(capsys, "publish", str(broken), "--bucket", BUCKET)
    assert line.startswith(f"error: {broken / 'manifest.json'} is not valid JSON: Expecting property name")

    line = refused(capsys, "publish", str(tmp_path / "nowhere"), "--bucket", BUCKET)
    assert line == f"error: {tmp_path / 'nowhere'} is not a folder: give the folder maas train/import wrote"
    assert registry.list_models() == []


def test_publish_refuses_an_unversioned_or_missing_bucket(
    wine_dir: Path, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.create_bucket(Bucket="plain-bucket")
    line = refused(capsys, "publish", str(wine_dir), "--bucket", "plain-bucket")
    assert line.startswith(
        "error: registry bucket 'plain-bucket' does not have versioning enabled (status never enabled)"
    )
    line = refused(capsys, "publish", str(wine_dir), "--bucket", "no-such-bucket")
    assert line == "error: registry bucket 'no-such-bucket' does not exist"


def test_without_credentials_the_cli_says_so(
    wine_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it found
    line = refused(capsys, "publish", str(wine_dir), "--bucket", BUCKET)
    assert line.startswith("error: no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


# --- promote: the version must load and answer its stored sample ----------------------------------


def test_promote_refuses_a_version_that_answers_its_sample_differently(
    wine_dir: Path, registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def tamper(m: dict[str, Any]) -> None:
        m["sample"]["predictions"][1]["label"] = "2"

    published = registry.publish(edited(wine_dir, tmp_path / "tampered", tamper))
    line = refused(capsys, "models", "promote", "wine_clf", str(published.version), "--bucket", BUCKET)
    assert line.startswith(
        f"error: refusing to move an alias to wine_clf v{published.version}: its answers to the stored "
        "sample differ from those written with it: row 1: label '0', stored '2'"
    )
    assert registry.get_alias("wine_clf", "production") is None


def test_promote_refuses_a_version_that_does_not_load(
    wine_dir: Path, registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = b"this is not an ONNX graph"

    def replace(m: dict[str, Any]) -> None:
        m["model"].update(sha256=hashlib.sha256(garbage).hexdigest(), size=len(garbage))

    folder = edited(wine_dir, tmp_path / "garbage", replace)
    (folder / "model.onnx").write_bytes(garbage)
    published = registry.publish(folder)
    line = refused(capsys, "publish", str(folder), "--bucket", BUCKET, "--alias", "production")
    assert line.startswith(
        f"error: refusing to move an alias to wine_clf v{published.version + 1}: it does not load: "
    )
    line = refused(capsys, "models", "promote", "wine_clf", str(published.version), "--bucket", BUCKET)
    assert line.startswith(
        f"error: refusing to move an alias to wine_clf v{published.version}: it does not load"
    )
    assert registry.get_alias("wine_clf", "production") is None


def test_promote_checks_a_good_version_and_only_warns_for_one_without_a_sample(
    wine_dir: Path, registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "publish", str(wine_dir), "--bucket", BUCKET, "--alias", "production")
    assert code == 0, err
    assert out.strip() == "1" and "wine_clf v1 loads and answers its stored sample (3 rows)" in err

    def no_sample(m: dict[str, Any]) -> None:
        del m["sample"]

    old = registry.publish(edited(wine_dir, tmp_path / "old", no_sample))
    code, out, err = run(capsys, "models", "promote", "wine_clf", str(old.version), "--bucket", BUCKET)
    assert code == 0, err
    assert (
        f"warning: wine_clf v{old.version} has no stored sample: it loads, its answers were not checked"
        in err
    )
    assert out.startswith(f"wine_clf: alias production -> v{old.version} (was v1")


# --- import ------------------------------------------------------------------------------------------


def test_import_refusals_are_one_line(
    imported: dict[str, ImportedModel], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    topics = imported["topics"].directory / "model.onnx"
    sample = tmp_path / "texts.jsonl"
    sample.write_text("\n".join(json.dumps(t) for t in ["win money now", "see you at lunch"]) + "\n")
    labels = tmp_path / "labels.txt"
    labels.write_text("work\nspam\nsport\n")
    line = refused(
        capsys,
        "import",
        str(topics),
        "--name",
        "topics",
        "--out",
        str(tmp_path / "o"),
        "--sample",
        str(sample),
        "--labels",
        str(labels),
    )
    assert line == (
        "error: the labels file lists ['work', 'spam', 'sport'] but the model's class order "
        "(the graph's class labels) is ['spam', 'sport', 'work']"
    )
    line = refused(
        capsys,
        "import",
        str(topics),
        "--name",
        "topics",
        "--out",
        str(tmp_path / "o"),
        "--sample",
        str(sample),
        "--task",
        "ranking",
    )
    assert line.startswith("error: unknown task 'ranking': the runtime serves [")
    line = refused(
        capsys,
        "import",
        str(tmp_path / "model.joblib"),
        "--name",
        "m",
        "--out",
        str(tmp_path / "o"),
        "--sample",
        str(sample),
    )
    assert line == f"error: {tmp_path / 'model.joblib'} does not exist"
    line = refused(capsys, "import", str(topics), "--name", "topics", "--out", str(tmp_path / "o"))
    assert line == "error: a sample is needed (--sample): the parity gate compares ONNX with the model on it"
    line = refused(
        capsys,
        "import",
        str(topics),
        "--name",
        "2topics",
        "--out",
        str(tmp_path / "o"),
        "--sample",
        str(sample),
    )
    assert line.startswith("error: model name '2topics' is not valid")
    assert not (tmp_path / "o").exists()


def test_an_onnx_file_onnxruntime_cannot_load_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.e2e.byom import MIXER_ROWS, mixer_graph

    graph = mixer_graph()
    graph.ir_version = 99  # newer than any onnxruntime reads
    model = tmp_path / "mixer.onnx"
    model.write_bytes(graph.SerializeToString())
    sample = tmp_path / "rows.jsonl"
    sample.write_text("\n".join(json.dumps(row) for row in MIXER_ROWS) + "\n")
    line = refused(
        capsys, "import", str(model), "--name", "mixer", "--out", str(tmp_path / "o"), "--sample", str(sample)
    )
    assert (
        line.startswith("error: onnxruntime ")
        and "cannot load the ONNX graph: Unsupported model IR version: 99" in line
    )
    assert not (tmp_path / "o").exists()
    graph.ir_version = 9  # and the same file, readable, imports from its JSON Lines sample
    model.write_bytes(graph.SerializeToString())
    from ops import cli

    assert (
        cli.main(
            [
                "import",
                str(model),
                "--name",
                "mixer",
                "--out",
                str(tmp_path / "o"),
                "--sample",
                str(sample),
                "--quiet",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["task"] == "tensors"
