"""The batch job of one catalogue model as an Amazon States Language definition.

``template.yaml`` gets one ``AWS::Serverless::StateMachine`` per model (infra/model.yaml); its
``Definition`` is written here, from the catalogue, so the ItemBatcher and the failure tolerance
follow ``models.toml`` and a person edits no ASL by hand. ``maas batch run`` executes the same
definition, read back from ``template.yaml``.

The steps: the model function resolves the alias once (``Start``), a Distributed Map reads the
object (CSV with a header, or JSON Lines) and hands each batch, with the resolved version in its
``BatchInput``, to the function's alias; the function checks the counts and writes ``_SUCCESS.json``
(``Finish``). ``${Function}`` is the alias ARN (``DefinitionSubstitutions``).
"""

from __future__ import annotations

from typing import Any

from ops.catalogue import ModelEntry

INVOKE = "arn:aws:states:::lambda:invoke"
# Lambda's own transient errors: worth several tries with backoff (AWS's recommended set)
LAMBDA_ERRORS = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
TRANSIENT = {"ErrorEquals": LAMBDA_ERRORS, "IntervalSeconds": 2, "MaxAttempts": 6, "BackoffRate": 2}
# A batch may fail for a reason of its own (a timeout, a throttled S3 write): once more, later.
# Its outputs have deterministic keys, so the retry rewrites them; it never adds rows.
ANY_ERROR = {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 5, "MaxAttempts": 2, "BackoffRate": 2}
READERS = {"csv": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}, "jsonl": {"InputType": "JSONL"}}


def _invoke(payload: dict[str, Any]) -> dict[str, Any]:
    return {"FunctionName": "${Function}", "Payload": payload}


def _map(entry: ModelEntry, fmt: str) -> dict[str, Any]:
    """The Distributed Map over one format: every child gets ``{"Items": [...], "BatchInput": ...}``."""
    return {
        "Type": "Map",
        "ItemReader": {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": READERS[fmt],
            "Parameters": {
                "Bucket.$": "$.job.bucket",
                "Key.$": "$.job.key",
                "VersionId.$": "$.job.version_id",
            },
        },
        # the row's index travels with it: the batch's first index names its output objects
        "ItemSelector": {"row.$": "$$.Map.Item.Index", "item.$": "$$.Map.Item.Value"},
        "ItemBatcher": {
            "MaxItemsPerBatch": entry.map_items_per_batch,
            "MaxInputBytesPerBatch": entry.map_input_bytes_per_batch,
            "BatchInput": {
                "model.$": "$.job.model",
                "version.$": "$.job.version",
                "job.$": "$.job.job_id",
                "bucket.$": "$.job.bucket",
                "key.$": "$.job.key",
                "version_id.$": "$.job.version_id",
                "prefix.$": "$.job.prefix",
                "format": fmt,
            },
        },
        "MaxConcurrency": entry.map_max_concurrency,
        "ToleratedFailurePercentage": entry.map_tolerated_failure_percent,
        "ItemProcessor": {
            "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": f"Score{fmt.capitalize()}Batch",  # state names are unique in the whole machine
            "States": {
                f"Score{fmt.capitalize()}Batch": {
                    "Type": "Task",
                    "Resource": INVOKE,
                    "Parameters": {"FunctionName": "${Function}", "Payload.$": "$"},
                    "OutputPath": "$.Payload",
                    "Retry": [TRANSIENT, ANY_ERROR],
                    "End": True,
                }
            },
        },
        # children's results go to S3, not into the state (256 KiB), under the job's prefix
        "ResultWriter": {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket.$": "$.job.bucket", "Prefix.$": "$.job.map_prefix"},
        },
        "ResultPath": "$.map",
        "Next": "Finish",
    }


def definition(entry: ModelEntry) -> dict[str, Any]:
    """The state machine of ``entry``'s batch jobs (JSONPath ASL)."""
    return {
        "Comment": f"{entry.name}: score one large S3 object with one model version, batch by batch",
        "StartAt": "Start",
        "States": {
            "Start": {
                "Type": "Task",
                "Resource": INVOKE,
                "Comment": "resolve the alias to a version once: every batch uses it",
                "Parameters": _invoke({"BatchJob": "start", "event.$": "$"}),
                "ResultSelector": {"job.$": "$.Payload"},
                "ResultPath": "$",
                "Retry": [TRANSIENT],
                "Next": "ByFormat",
            },
            "ByFormat": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.job.format", "StringEquals": "csv", "Next": "ScoreCsv"}],
                "Default": "ScoreJsonl",
            },
            "ScoreCsv": _map(entry, "csv"),
            "ScoreJsonl": _map(entry, "jsonl"),
            "Finish": {
                "Type": "Task",
                "Resource": INVOKE,
                "Comment": "rows read = scored + refused, or the job fails; then _SUCCESS.json",
                "Parameters": _invoke(
                    {
                        "BatchJob": "finish",
                        "job.$": "$.job",
                        "map.$": "$.map",
                        "execution.$": "$$.Execution.Id",
                        "started_at.$": "$$.Execution.StartTime",
                    }
                ),
                "OutputPath": "$.Payload",
                "Retry": [TRANSIENT],
                "End": True,
            },
        },
    }
