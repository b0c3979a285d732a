"""A fault of the network is not a fault of the file: a read that times out or a connection cut
while an S3 input streams fails the invocation (Lambda retries it; the last failure goes to the
dead-letter queue), and leaves no ``.error.json``; the retry then scores every row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from maas.core.errors import TransientError
from ops.event_sources import s3_put_event
from tests.conftest import FunctionUnderTest
from tests.e2e.conftest import Stack
from tests.e2e.faults import FaultPlan, faulty_forwarder
from tests.unit.test_metrics import emf_records

ROWS = 400


@pytest.fixture(scope="module")
def forwarder(stack: Stack) -> Iterator[tuple[str, FaultPlan]]:
    with faulty_forwarder(stack.endpoint) as pair:
        yield pair


@pytest.mark.parametrize("fault", ["stall", "cut"])
def test_a_transient_read_fault_fails_the_invocation_and_the_retry_scores_every_row(
    stack: Stack,
    forwarder: tuple[str, FaultPlan],
    fault: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    endpoint, plan = forwarder
    # one attempt, and a read timeout of half a second: the stall is noticed at once
    client = boto3.client(
        "s3", endpoint_url=endpoint, config=Config(read_timeout=0.5, retries={"max_attempts": 1})
    )
    function = FunctionUnderTest("spam_nb", stack.environ, client)
    key = f"inputs/spam_nb/transient/{fault}.jsonl"
    body = "".join(json.dumps(f"message {i} about a meeting on thursday") + "\n" for i in range(ROWS))
    stack.s3().put_object(Bucket=stack.data_bucket, Key=key, Body=body.encode())
    event = s3_put_event("spam_nb", stack.data_bucket, key)
    plan.key, plan.fault, plan.hits = key, fault, 0

    with pytest.raises(TransientError) as raised:
        function(event)
    assert plan.hits == 1  # the fault really happened, on the input's GET
    assert raised.value.code == "transient_error"
    assert stack.keys(f"outputs/spam_nb/transient/{fault}.jsonl.") == []  # no .error.json, no parts
    assert not [r for r in emf_records(capsys.readouterr().out) if "BatchUnreadableInputs" in r]

    plan.fault = None  # the network is back: Lambda's retry delivers the same event again
    (outcome,) = function(event)["files"]
    assert outcome["status"] == "scored"
    assert (outcome["rows"], outcome["scored"], outcome["failed"]) == (ROWS, ROWS, 0)
    written = stack.keys(f"outputs/spam_nb/transient/{fault}.jsonl.")
    assert not [k for k in written if k.endswith(".error.json")]
    assert len(stack.read_lines(outcome["outputs"]["predictions"])) == ROWS
