"""Fixtures of the integration tests."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.integration.tools import PICKED_DEPLOYMENT
from training.data import PROJECT_ROOT


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """The template after the SAM transform (what CloudFormation receives), without deploying."""
    from cfnlint.decode import decode
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    template, errors = decode(str(PROJECT_ROOT / "template.yaml"))
    assert not errors and template is not None
    for resource in template["Resources"].values():  # local folders: `sam build` uploads them
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                resource["Properties"][key] = "s3://bucket/key"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    output: dict[str, Any] = transform(template, {"DeploymentType": PICKED_DEPLOYMENT}, NoManagedPolicies())
    return output
