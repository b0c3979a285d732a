"""checkov on template.yaml: it reads every resource of every model, and nothing fails unexplained.

checkov pins boto3 1.35 and cannot share this virtual environment; `make install` gives it its
own (``.venv/checkov``, pinned in the Makefile). A plain template matters here: checkov scans
zero resources of an ``Fn::ForEach`` template and reports that as a pass.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops import catalogue
from ops.template import load_template
from training.data import PROJECT_ROOT

CONFIG = PROJECT_ROOT / ".checkov.yaml"


def checkov_binary() -> Path:
    candidates = [
        os.environ.get("CHECKOV"),
        Path(sys.prefix) / "checkov" / "bin" / "checkov",  # .venv/checkov, beside this venv's files
        PROJECT_ROOT / ".venv" / "checkov" / "bin" / "checkov",
        shutil.which("checkov"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("checkov is not installed: `make install` creates .venv/checkov (or set CHECKOV=/path)")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    command = [
        str(checkov_binary()),
        "-f",
        "template.yaml",
        "--framework",
        "cloudformation",
        "--config-file",
        str(CONFIG),
        "--skip-download",
        "--compact",
        "-o",
        "json",
    ]  # not --quiet: its JSON keeps only the failed checks, and we want to see what was scanned
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert result.stdout.strip(), result.stderr
    parsed = json.loads(result.stdout)
    (only,) = parsed if isinstance(parsed, list) else [parsed]
    assert only["check_type"] == "cloudformation"
    summary = only["summary"]
    print(
        f"checkov {summary['checkov_version']}: passed {summary['passed']}, failed {summary['failed']}, "
        f"skipped {summary['skipped']}, resources {summary['resource_count']}"
    )
    return dict(only)


def test_checkov_scanned_every_resource_of_every_model(report: dict[str, Any]) -> None:
    declared = load_template()["Resources"]
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["resource_count"] == len(declared)
    results = report["results"]
    seen = {
        check["resource"]
        for kind in ("passed_checks", "failed_checks", "skipped_checks")
        for check in results.get(kind, [])
    }
    for model in catalogue.load():
        prefix = model.logical_id
        for suffix, kind in [
            ("Function", "AWS::Serverless::Function"),
            ("Role", "AWS::IAM::Role"),
            ("Queue", "AWS::SQS::Queue"),
            ("DeadLetterQueue", "AWS::SQS::Queue"),
            ("LogGroup", "AWS::Logs::LogGroup"),
        ]:
            assert f"{kind}.{prefix}{suffix}" in seen, (model.name, suffix)
    assert "AWS::Serverless::Function.MultiModelFunction" in seen


def test_checkov_reports_no_failure_and_every_skip_says_why(report: dict[str, Any]) -> None:
    results = report["results"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in results["failed_checks"]]
    assert failed == []
    for check in results["skipped_checks"]:  # checkov:skip in a resource's Metadata (infra/)
        assert check["check_result"].get("suppress_comment", "").strip(), check["check_id"]
    # the checks skipped for the whole template: each one with the reason just above it
    lines = [line.strip() for line in CONFIG.read_text().splitlines()]
    skipped = [i for i, line in enumerate(lines) if line.startswith("- CKV")]
    assert skipped
    assert all(lines[i - 1].startswith("#") for i in skipped), CONFIG
