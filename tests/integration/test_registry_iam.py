"""The registry's write policies, evaluated as AWS evaluates them (identity policy + bucket policy,
conditions included) by @cloud-copilot/iam-simulate: publish, promote and retire are separate,
each limited to the models it names, and retired is final for every principal."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ops import catalogue
from ops.template import Intrinsic, load_template
from training.data import PROJECT_ROOT

SIMULATOR = PROJECT_ROOT / ".venv" / "node"
SCRIPT = Path(__file__).with_name("iam_simulate.cjs")
ACCOUNT = "123456789012"
BUCKET_ARN = "arn:aws:s3:::maas-models"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ATTRIBUTES = {
    "ModelsBucket.Arn": BUCKET_ARN,
    "ManifestSigningKey.Arn": KEY_ARN,
    "AWS::Partition": "aws",
    "AWS::AccountId": ACCOUNT,
}
MODELS = catalogue.load()
OURS, THEIRS = MODELS.names[0], "not_in_the_catalogue"


# The stack's PublisherRoleNames: the roles that hold RegistryPublishPolicy and may sign.
PUBLISHERS = ["maas-ci-publisher", "trainer"]
PARAMETERS: dict[str, Any] = {"PublisherRoleNames": PUBLISHERS}
CONDITIONS = {"HasPublishers": True}
NO_VALUE = object()


def resolve(node: Any) -> Any:
    """The few intrinsics the registry and key policies use, with this test's bucket, key and
    publisher roles."""
    if isinstance(node, Intrinsic):
        value = node.value
        if node.tag == "GetAtt":
            return ATTRIBUTES[value if isinstance(value, str) else ".".join(value)]
        if node.tag == "Sub":
            return re.sub(r"\$\{([^}]+)\}", lambda m: ATTRIBUTES[m.group(1)], value)
        if node.tag == "Ref":
            return NO_VALUE if value == "AWS::NoValue" else PARAMETERS[value]
        if node.tag == "If":
            return resolve(value[1] if CONDITIONS[value[0]] else value[2])
        if node.tag == "Join":
            return value[0].join(resolve(value[1]))
        if node.tag == "Split":
            return resolve(value[1]).split(value[0])
        raise AssertionError(f"unexpected intrinsic {node.tag} in a registry policy")
    if isinstance(node, dict):
        return {key: resolve(value) for key, value in node.items()}
    if isinstance(node, list):
        return [item for item in (resolve(item) for item in node) if item is not NO_VALUE]
    return node


RESOURCES = load_template()["Resources"]


def policy(logical_id: str) -> dict[str, Any]:
    return {"name": logical_id, "policy": resolve(RESOURCES[logical_id]["Properties"]["PolicyDocument"])}


BUCKET_POLICY = resolve(RESOURCES["ModelsBucketPolicy"]["Properties"]["PolicyDocument"])
KEY_POLICY = resolve(RESOURCES["ManifestSigningKey"]["Properties"]["KeyPolicy"])


def obj(model: str, rest: str) -> str:
    return f"{BUCKET_ARN}/models/{model}/{rest}"


def case(
    name: str, policies: list[str], action: str, resource: str, role: str | None = None, **context: str
) -> dict[str, Any]:
    principal = f"arn:aws:iam::{ACCOUNT}:role/{role or '-'.join(policies) or 'nobody'}"
    return {
        "name": name,
        "principal": principal,
        "accountId": ACCOUNT,
        "action": action,
        "resource": resource,
        "context": {"aws:SecureTransport": "true", "aws:PrincipalArn": principal, **context},
        "identityPolicies": [IDENTITY[p] if p in IDENTITY else policy(p) for p in policies],
        "resourcePolicy": KEY_POLICY if action.startswith("kms:") else BUCKET_POLICY,
    }


# Identity policies that are not the template's: what an administrator or a function holds.
KMS_ADMIN, VERIFIER = "AdministratorKms", "FunctionVerifies"
IDENTITY = {
    KMS_ADMIN: {
        "name": KMS_ADMIN,
        "policy": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}],
        },
    },
    VERIFIER: {
        "name": VERIFIER,
        "policy": {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:Verify", "Resource": KEY_ARN}],
        },
    },
}
PUBLISH, PROMOTE, RETIRE, ADMIN = (
    "RegistryPublishPolicy",
    "RegistryPromotePolicy",
    "RegistryRetirePolicy",
    "RegistryAdminPolicy",
)
MODEL = obj(OURS, "versions/7/model.onnx")
NEW = {"s3:if-none-match": "*"}
EXPECTED = {
    # publish: create version objects (with their status=active tag) of the models it names
    "publish creates a version": (case("", [PUBLISH], "s3:PutObject", MODEL, **NEW), "Allowed"),
    "publish tags it active": (
        case("", [PUBLISH], "s3:PutObjectTagging", MODEL, **{"s3:RequestObjectTag/status": "active"}),
        "Allowed",
    ),
    "publish cannot retire": (
        case("", [PUBLISH], "s3:PutObjectTagging", MODEL, **{"s3:RequestObjectTag/status": "retired"}),
        "ImplicitlyDenied",
    ),
    "publish cannot promote": (
        case("", [PUBLISH], "s3:PutObject", obj(OURS, "aliases/production.json"), **NEW),
        "ImplicitlyDenied",
    ),
    "publish names its models": (
        case("", [PUBLISH], "s3:PutObject", obj(THEIRS, "versions/1/model.onnx"), **NEW),
        "ImplicitlyDenied",
    ),
    "publish cannot overwrite": (case("", [PUBLISH], "s3:PutObject", MODEL), "ExplicitlyDenied"),
    # signing: the key policy names who signs (PublisherRoleNames, holding the publish policy)
    "a publisher role signs": (case("", [PUBLISH], "kms:Sign", KEY_ARN, role=PUBLISHERS[1]), "Allowed"),
    "the publish policy on another role does not sign": (
        case("", [PUBLISH], "kms:Sign", KEY_ARN, role="someone-else"),
        "ImplicitlyDenied",
    ),
    "a publisher role without the publish policy does not sign": (
        case("", [], "kms:Sign", KEY_ARN, role=PUBLISHERS[0]),
        "ImplicitlyDenied",
    ),
    "an administrator with kms:* does not sign": (
        case("", [KMS_ADMIN], "kms:Sign", KEY_ARN, role="Administrator"),
        "ImplicitlyDenied",
    ),
    "an administrator cannot grant itself Sign": (
        case("", [KMS_ADMIN], "kms:CreateGrant", KEY_ARN, role="Administrator"),
        "ImplicitlyDenied",
    ),
    "an administrator administers the key": (
        case("", [KMS_ADMIN], "kms:ScheduleKeyDeletion", KEY_ARN, role="Administrator"),
        "Allowed",
    ),
    "a function verifies": (case("", [VERIFIER], "kms:Verify", KEY_ARN, role="SpamNbRole"), "Allowed"),
    "a function does not sign": (
        case("", [VERIFIER], "kms:Sign", KEY_ARN, role="SpamNbRole"),
        "ImplicitlyDenied",
    ),
    # promote: move aliases (compare-and-swap) of the models it names, nothing else
    "promote moves an alias": (
        case("", [PROMOTE], "s3:PutObject", obj(OURS, "aliases/production.json"), **{"s3:if-match": "e"}),
        "Allowed",
    ),
    "promote names its models": (
        case("", [PROMOTE], "s3:PutObject", obj(THEIRS, "aliases/production.json"), **NEW),
        "ImplicitlyDenied",
    ),
    "promote cannot publish": (case("", [PROMOTE], "s3:PutObject", MODEL, **NEW), "ImplicitlyDenied"),
    "promote cannot sign": (case("", [PROMOTE], "kms:Sign", KEY_ARN), "ImplicitlyDenied"),
    "promote cannot retire": (
        case("", [PROMOTE], "s3:PutObjectTagging", MODEL, **{"s3:RequestObjectTag/status": "retired"}),
        "ImplicitlyDenied",
    ),
    # retire: the status tag of an active version's model object, of the models it names
    "retire retires": (
        case(
            "",
            [RETIRE],
            "s3:PutObjectTagging",
            MODEL,
            **{"s3:RequestObjectTag/status": "retired", "s3:ExistingObjectTag/status": "active"},
        ),
        "Allowed",
    ),
    "retire names its models": (
        case("", [RETIRE], "s3:PutObjectTagging", obj(THEIRS, "versions/1/model.onnx")),
        "ImplicitlyDenied",
    ),
    "retire cannot promote": (
        case("", [RETIRE], "s3:PutObject", obj(OURS, "aliases/production.json"), **NEW),
        "ImplicitlyDenied",
    ),
    # retired is final: no policy, however broad, changes or removes a retired object's tags
    **{
        f"{' + '.join(who)} cannot un-retire by {action}": (
            case(
                "",
                list(who),
                action,
                MODEL,
                **{"s3:RequestObjectTag/status": "active", "s3:ExistingObjectTag/status": "retired"},
            ),
            "ExplicitlyDenied",
        )
        for who in ((PUBLISH,), (RETIRE,), (PUBLISH, PROMOTE, RETIRE, ADMIN))
        for action in ("s3:PutObjectTagging", "s3:DeleteObjectTagging")
    },
    "admin deletes version objects": (case("", [ADMIN], "s3:DeleteObjectVersion", MODEL), "Allowed"),
    "admin cannot publish": (case("", [ADMIN], "s3:PutObject", MODEL, **NEW), "ImplicitlyDenied"),
}


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Any]:
    cases = [{**spec, "name": name} for name, (spec, _) in EXPECTED.items()]
    result = subprocess.run(
        ["node", str(SCRIPT), str(SIMULATOR)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    decided: dict[str, Any] = json.loads(result.stdout)
    return decided


@pytest.mark.parametrize("name", list(EXPECTED))
def test_registry_write_policies_decide_as_designed(outcomes: dict[str, Any], name: str) -> None:
    assert outcomes[name] == EXPECTED[name][1], name


def test_every_write_policy_names_exactly_the_registry_models() -> None:
    for logical_id in (PUBLISH, PROMOTE, RETIRE):
        named = {
            match.group(1)
            for statement in policy(logical_id)["policy"]["Statement"]
            for resource in statement["Resource"]
            if isinstance(statement["Resource"], list)
            for match in [re.match(rf"{re.escape(BUCKET_ARN)}/models/(\w+)/", resource)]
            if match
        }
        assert named == set(MODELS.registry_models), logical_id


def test_extra_registry_models_are_named_after_the_catalogues_once_each() -> None:
    import tomllib

    document = tomllib.loads(catalogue.CATALOGUE.read_text())
    document["registry"] = {"extra_models": ["wine", MODELS.names[0], "wine"]}
    assert catalogue.parse(document).registry_models == (*MODELS.names, "wine")
