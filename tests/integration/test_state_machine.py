"""The batch-job state machine of each catalogue model: generated from the catalogue, valid
Amazon States Language (asl-validator), started by large inputs only, and least-privileged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ops import catalogue, state_machine
from ops.template import Intrinsic, load_template
from training.data import PROJECT_ROOT

MODELS = catalogue.load()
DATA = "arn:${AWS::Partition}:s3:::${DataBucketName}"
OWN = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}"


def resources() -> dict[str, Any]:
    return dict(load_template()["Resources"])


def asl_validator() -> Path:
    """`make test` puts asl-validator (npm) in .venv/asl; ASL_VALIDATOR=/path overrides."""
    candidates = [
        os.environ.get("ASL_VALIDATOR"),
        PROJECT_ROOT / ".venv" / "asl" / "node_modules" / ".bin" / "asl-validator",
        Path(sys.prefix) / "asl" / "node_modules" / ".bin" / "asl-validator",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    pytest.fail("asl-validator is not installed: `make test` runs npm into .venv/asl (or set ASL_VALIDATOR)")


@pytest.mark.parametrize("model", MODELS.names)
def test_each_model_has_its_state_machine_generated_from_the_catalogue(model: str) -> None:
    entry = MODELS[model]
    machine = resources()[entry.state_machine]
    assert machine["Type"] == "AWS::Serverless::StateMachine"
    props = machine["Properties"]
    assert props["Definition"] == state_machine.definition(entry)
    assert props["DefinitionSubstitutions"] == {"Function": Intrinsic("Ref", f"{entry.function}.Alias")}
    for fmt, name in (("csv", "ScoreCsv"), ("jsonl", "ScoreJsonl")):
        mapped = props["Definition"]["States"][name]
        assert mapped["ItemReader"]["ReaderConfig"] == state_machine.READERS[fmt]
        batcher = mapped["ItemBatcher"]
        assert (batcher["MaxItemsPerBatch"], batcher["MaxInputBytesPerBatch"]) == (
            entry.map_items_per_batch,
            entry.map_input_bytes_per_batch,
        )
        assert {"model.$", "version.$", "job.$"} <= set(batcher["BatchInput"])
        assert mapped["ToleratedFailurePercentage"] == entry.map_tolerated_failure_percent
        (task,) = mapped["ItemProcessor"]["States"].values()
        assert task["Parameters"]["FunctionName"] == "${Function}"
    pattern = props["Events"]["LargeInput"]["Properties"]["Pattern"]
    assert pattern["detail"]["object"]["key"] == [{"prefix": f"inputs/{model}/large/"}]
    assert pattern["detail-type"] == ["Object Created"]


def test_the_data_bucket_sends_its_events_to_eventbridge() -> None:
    bucket = resources()["DataBucket"]["Properties"]
    assert bucket["NotificationConfiguration"]["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


def test_every_state_machine_is_valid_amazon_states_language(tmp_path: Path) -> None:
    validator = asl_validator()
    for entry in MODELS:
        definition = resources()[entry.state_machine]["Properties"]["Definition"]
        path = tmp_path / f"{entry.name}.asl.json"
        path.write_text(json.dumps(definition))
        result = subprocess.run(
            [str(validator), "--json-path", str(path)], capture_output=True, text=True, timeout=120
        )
        print(result.stdout.strip())
        assert result.returncode == 0, result.stdout + result.stderr
    broken = {**definition, "StartAt": "Nowhere"}  # the validator is not vacuous
    path.write_text(json.dumps(broken))
    result = subprocess.run(
        [str(validator), "--json-path", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0


def _statements(role: str) -> list[dict[str, Any]]:
    props = resources()[role]["Properties"]
    return [s for policy in props["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("model", MODELS.names)
def test_the_state_machine_reads_its_inputs_invokes_its_alias_writes_its_outputs_and_nothing_more(
    model: str,
) -> None:
    entry = MODELS[model]
    machine = resources()[entry.state_machine]["Properties"]
    role = str(machine["Role"].value).split(".")[0]
    trust = resources()[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "states.amazonaws.com"}]
    granted = {
        tuple(sorted(_list(s["Action"]))): [getattr(r, "value", r) for r in _list(s["Resource"])]
        for s in _statements(role)
    }
    name = f"${{AWS::StackName}}-{model}-batch"
    assert granted == {
        ("s3:GetObject", "s3:GetObjectVersion"): [f"{DATA}/inputs/{model}/large/*"],
        ("s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"): [
            f"{DATA}/outputs/{model}/large/*"
        ],
        ("lambda:InvokeFunction",): [f"{entry.function}.Alias"],
        # the Distributed Map runs its children as executions of this state machine
        ("states:StartExecution",): [f"{OWN}:stateMachine:{name}"],
        ("states:DescribeExecution", "states:StopExecution"): [f"{OWN}:execution:{name}/*"],
    }
    assert machine["Name"] == Intrinsic("Sub", name)


def test_no_function_may_start_an_execution() -> None:
    everything = resources()
    for entry in MODELS:
        role = str(everything[entry.function]["Properties"]["Role"].value).split(".")[0]
        actions = [a for s in _statements(role) for a in _list(s["Action"])]
        assert not [a for a in actions if a.startswith("states:")], entry.name
    for logical_id, resource in everything.items():
        if resource["Type"] == "AWS::IAM::Role" and not logical_id.endswith("BatchRole"):
            assert "states:" not in json.dumps(resource, default=str), logical_id
