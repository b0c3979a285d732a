"""``maas batch start``: a model's deployed batch-job state machine, started on an S3 object and followed.

The execution's input is the EventBridge "Object Created" event S3 would send for the object, so
a job started by hand runs exactly as one started by a drop under ``inputs/<model>/large/``.
Progress is the Distributed Map run's item counts (``DescribeMapRun``), drawn as a bar.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import boto3

from maas.core.errors import NotFound
from ops.batch_run import bar, object_created_event

POLL_SECONDS = 2.0


def state_machine_arn(model: str, stack: str, sfn: Any) -> str:
    """The state machine infra/model.yaml names ``<stack>-<model>-batch``."""
    name = f"{stack}-{model}-batch"
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
    raise NotFound(
        f"no state machine named {name!r}: is the stack {stack!r} deployed? (--stack, --state-machine)"
    )


def start(model: str, bucket: str, key: str, *, state_machine: str | None, stack: str) -> str:
    sfn = boto3.client("stepfunctions")
    arn = state_machine or state_machine_arn(model, stack, sfn)
    event = object_created_event(bucket, key)
    started = sfn.start_execution(stateMachineArn=arn, input=json.dumps(event))
    return str(started["executionArn"])


def _items(sfn: Any, execution: str) -> tuple[int, int, int]:
    """(done, failed, total) items of the execution's map run; zeros before it starts."""
    runs = sfn.list_map_runs(executionArn=execution).get("mapRuns", [])
    if not runs:
        return 0, 0, 0
    counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
    return int(counts["succeeded"]) + int(counts["failed"]), int(counts["failed"]), int(counts["total"])


def follow(execution: str, sfn: Any | None = None) -> int:
    """Poll until the execution ends: 0 when it succeeded (its summary printed), else 1."""
    client = sfn or boto3.client("stepfunctions")
    while True:
        described = client.describe_execution(executionArn=execution)
        status = described["status"]
        try:
            done, failed, total = _items(client, execution)
        except client.exceptions.ClientError:  # no map run yet, or not supported by the endpoint
            done, failed, total = 0, 0, 0
        print(
            f"\r{bar(done, total)} {done}/{total} rows, {failed} in failed batches, {status}",
            end="",
            file=sys.stderr,
        )
        if status != "RUNNING":
            print(file=sys.stderr)
            break
        time.sleep(POLL_SECONDS)
    if status == "SUCCEEDED":
        output: dict[str, Any] = json.loads(described.get("output") or "{}")
        print(
            f"{output.get('rows_read')} rows read: {output.get('rows_scored')} scored, "
            f"{output.get('rows_refused')} refused, by version {output.get('model_version')}; "
            f"summary s3://{output.get('input', {}).get('bucket')}/{output.get('success_object')}"
        )
        return 0
    print(
        f"error: the job {status.lower()}: {described.get('error', '')}: {described.get('cause', '')}",
        file=sys.stderr,
    )
    return 1
