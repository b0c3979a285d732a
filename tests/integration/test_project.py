"""The project is the folder the user stands in (the nearest one up with ``models.toml``), not the
folder the installed code came from; ``maas serve``'s record of its moto server lets ``publish`` and
``models`` talk to it with nothing exported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ops import project
from ops.cli import main
from ops.local import create_bucket, environment, local_aws_environment, moto_server
from ops.template import functions
from tests.integration.tools import maas
from training.data import PROJECT_ROOT

WINE = """
[models.wine_lr]
description = "logistic regression on the wine data set (ONNX)"
family = "text"
memory_mb = 512
"""


def test_template_write_from_a_second_clone_writes_that_clones_template(tmp_path: Path) -> None:
    clone = tmp_path / "second"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{PROJECT_ROOT}", str(clone)],
        check=True,
        capture_output=True,
    )
    (clone / "models.toml").write_text((clone / "models.toml").read_text() + WINE)
    first = PROJECT_ROOT / "template.yaml"
    before = first.read_bytes(), first.stat().st_mtime_ns

    result = maas(clone / "infra", "template", "--write")  # from a subfolder: found upwards, as git does

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{clone.resolve() / 'template.yaml'} written"
    assert "wine_lr" in {s.model_name for s in functions(clone / "template.yaml")}
    assert (first.read_bytes(), first.stat().st_mtime_ns) == before
    assert "wine_lr" not in {s.model_name for s in functions(first)}
    assert maas(clone, "template", "--check").returncode == 0
    # --project points elsewhere: the first tree's template is still up to date with its catalogue
    checked = maas(tmp_path, "template", "--check", "--project", str(PROJECT_ROOT))
    assert checked.returncode == 0 and checked.stdout.strip() == f"{first}: up to date"


@pytest.mark.parametrize(
    "args",
    [
        ["template", "--check"],
        ["openapi", "--check"],
        ["events"],
        ["serve", "--port", "0"],
        ["batch", "run", "spam_nb", "s3://data/inputs/spam_nb/large/x.csv"],
    ],
)
def test_outside_a_project_each_project_command_says_so_in_one_line(tmp_path: Path, args: list[str]) -> None:
    result = maas(tmp_path, *args)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: not in a maas project: no models.toml in {tmp_path.resolve()} or any folder above it "
        "(cd into one, or pass --project DIR)"
    )


def test_a_project_option_without_a_catalogue_is_refused(tmp_path: Path) -> None:
    result = maas(PROJECT_ROOT, "template", "--project", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: --project {tmp_path}: no models.toml there"


def test_publish_and_models_use_the_stand_in_serve_recorded(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spam_nb_dir: Path,
) -> None:
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (root / "models.toml").write_text((PROJECT_ROOT / "models.toml").read_text())
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("MODEL_BUCKET", raising=False)
    monkeypatch.chdir(root / "sub")
    with moto_server() as url:
        with environment(local_aws_environment(url)):
            create_bucket("recorded-bucket")
        stand_in = project.LocalStandIn(url, "recorded-bucket", os.getpid())
        project.record(root, stand_in)
        assert main(["publish", str(spam_nb_dir), "--alias", "production"]) == 0
        assert main(["models", "list"]) == 0
        out, err = capsys.readouterr()
        notice = f"maas: talking to the local stand-in: moto server {url} (maas serve, pid {os.getpid()}), bucket recorded-bucket"
        assert err.splitlines().count(notice) == 2
        assert out.splitlines() == [
            "1",
            f"{'MODEL':<20} {'VERSIONS':<20} ALIASES",
            f"{'spam_nb':<20} {'1':<20} production->v1",
        ]
        assert "AWS_ENDPOINT_URL" not in os.environ  # main() leaves the process as it found it
        project.forget(root, os.getpid())
    assert not (root / project.STATE).exists()
    assert (root / ".maas" / ".gitignore").read_text() == "*\n"


def test_a_record_whose_server_has_stopped_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text("")
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    project.record(tmp_path, project.LocalStandIn("http://127.0.0.1:1", "b", int(finished.stdout)))
    assert project.running_stand_in(tmp_path) is None
    project.record(tmp_path, project.LocalStandIn("http://127.0.0.1:1", "b", os.getpid()))
    assert project.running_stand_in(tmp_path) == project.LocalStandIn("http://127.0.0.1:1", "b", os.getpid())
