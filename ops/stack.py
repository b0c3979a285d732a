"""A deployed stack's outputs, read with CloudFormation's DescribeStacks: what `maas publish
--stack` needs (the registry bucket and the manifest signing key) without copying ARNs by hand."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.exceptions import ClientError

from maas.core.errors import ConfigurationError

BUCKET_OUTPUT = "ModelsBucketName"
SIGNING_KEY_OUTPUT = "ManifestSigningKeyArn"


def stack_outputs(stack: str, client: Any | None = None) -> dict[str, str]:
    """``{OutputKey: OutputValue}`` of ``stack``; a stack that does not exist is one clear error."""
    cloudformation = client or boto3.client("cloudformation")
    try:
        (found,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error.response.get("Error", {}).get("Message", "")):
            raise ConfigurationError(
                f"no stack {stack!r} in this account and region: deploy it first (sam deploy --guided), "
                "or pass --bucket and --signing-key"
            ) from None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def output(outputs: dict[str, str], stack: str, key: str, instead: str) -> str:
    """One output of ``stack``, or one line saying it is missing and what to pass instead."""
    value = outputs.get(key)
    if not value:
        raise ConfigurationError(
            f"stack {stack!r} has no output {key}: deploy this version's template.yaml (sam deploy), "
            f"or pass {instead}"
        )
    return value
