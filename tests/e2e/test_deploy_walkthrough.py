"""The README's "Deploying to AWS", run here: a stack in CloudFormation (moto) with the registry
bucket, the signing key and the two outputs template.yaml declares for them; `maas publish DIR
--stack` reads both from the stack; a function configured as the template configures it
(MANIFEST_SIGNING_KEY set, as every deployed function has it) then answers 200."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from ops import cli
from ops.stack import BUCKET_OUTPUT, SIGNING_KEY_OUTPUT
from ops.template import Intrinsic, load_template
from tests.conftest import FunctionUnderTest, body_of, load_event

STACK = "maas-walkthrough"


@pytest.fixture(scope="module")
def deployed(moto_endpoint: str) -> dict[str, str]:
    """The stack's registry bucket and signing key (what `sam deploy` creates), with the two
    outputs named as template.yaml names them. moto's CloudFormation makes every AWS::KMS::Key a
    symmetric key and drops a bucket's versioning, so the key is made with the template's
    KeySpec and KeyUsage through KMS itself, and versioning is turned on as the template has it."""
    template = load_template()
    key_properties = template["Resources"]["ManifestSigningKey"]["Properties"]
    key = boto3.client("kms").create_key(
        KeySpec=key_properties["KeySpec"], KeyUsage=key_properties["KeyUsage"]
    )
    outputs = template["Outputs"]
    assert outputs[BUCKET_OUTPUT]["Value"] == Intrinsic("Ref", "ModelsBucket")
    assert outputs[SIGNING_KEY_OUTPUT]["Value"] == Intrinsic("GetAtt", "ManifestSigningKey.Arn")
    body = {
        "Resources": {"ModelsBucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {
            BUCKET_OUTPUT: {"Value": {"Ref": "ModelsBucket"}},
            SIGNING_KEY_OUTPUT: {"Value": key["KeyMetadata"]["Arn"]},
        },
    }
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps(body))
    (bucket,) = cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
    boto3.client("s3").put_bucket_versioning(
        Bucket=bucket["PhysicalResourceId"], VersioningConfiguration={"Status": "Enabled"}
    )
    # what !Ref gives each: the bucket's name, the key's id
    return {"ModelsBucket": bucket["PhysicalResourceId"], "ManifestSigningKey": key["KeyMetadata"]["KeyId"]}


def test_the_walkthrough_publishes_with_the_stacks_key_and_the_deployed_function_answers_200(
    deployed: dict[str, str], spam_nb_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # maas publish build/spam_nb --stack maas --alias production (the folder `maas train` wrote)
    assert cli.main(["publish", str(spam_nb_dir), "--stack", STACK, "--alias", "production"]) == 0
    assert capsys.readouterr().out.strip() == "1"
    publication = json.loads(
        boto3.client("s3")
        .get_object(Bucket=deployed["ModelsBucket"], Key="models/spam_nb/versions/1/publication.json")["Body"]
        .read()
    )
    assert publication["manifest_signature"]["key_id"].endswith(deployed["ManifestSigningKey"])

    # the function as template.yaml configures it: MODEL_BUCKET and MANIFEST_SIGNING_KEY (!Ref: the key id)
    environ = {
        "MODEL_BUCKET": deployed["ModelsBucket"],
        "MANIFEST_SIGNING_KEY": deployed["ManifestSigningKey"],
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    response = FunctionUnderTest("spam_nb", environ, None)(load_event("spam_nb", "predict.json"))
    assert response["statusCode"] == 200, response
    assert body_of(response)["model_version"] == "1"


def test_a_stack_without_the_key_output_or_no_stack_is_one_line(
    moto_endpoint: str, spam_nb_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("cloudformation").create_stack(
        StackName="maas-old",
        TemplateBody=json.dumps(
            {
                "Resources": {"ModelsBucket": {"Type": "AWS::S3::Bucket"}},
                "Outputs": {BUCKET_OUTPUT: {"Value": {"Ref": "ModelsBucket"}}},
            }
        ),
    )
    assert cli.main(["publish", str(spam_nb_dir), "--stack", "maas-old"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "error: stack 'maas-old' has no output ManifestSigningKeyArn: deploy this version's template.yaml "
        "(sam deploy), or pass --signing-key"
    )
    assert cli.main(["publish", str(spam_nb_dir), "--stack", "maas-nowhere"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: no stack 'maas-nowhere' in this account and region: deploy it first")
