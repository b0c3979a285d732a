"""No answer carries an ARN, an account id, a bucket, a key id or a role, whatever AWS says.

A moto server of its own, with IAM enforced (``INITIAL_NO_AUTH_ACTION_COUNT``), so AWS's own
error messages come back as they would on AWS: KMS ``NotFoundException`` naming the key's ARN,
``AccessDeniedException``/``AccessDenied`` naming the caller's assumed role and the account, and
credentials STS no longer recognises. The real spam_nb handler answers each on every route; every
body is scanned. The log, where the detail belongs, must hold what the answers do not.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.core.observability import logger
from ops.local import LOCAL_CREDENTIALS, moto_server_process
from ops.registry_admin import RegistryAdmin
from tests.conftest import FunctionUnderTest, make_function
from tests.hostile.test_hostile_http import request_event

MODELS = "maas-redact-models-q7"
DATA = "maas-redact-data-q7"
ROLE = "maas-redact-SpamNbRole"
ACCOUNT = re.compile(r"(?<!\d)\d{12}(?!\d)")
ROUTES = [
    ("predict", json.dumps({"instances": ["win a free prize now"]})),
    ("infer", json.dumps({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]})),
    ("describe", None),
    ("metadata", None),
]
COUNTS: Counter[str] = Counter()


def client(service: str, endpoint: str, credentials: dict[str, str]) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=credentials.get("AWS_SESSION_TOKEN"),
    )


@pytest.fixture(scope="module")
def guarded(spam_nb_dir: Path) -> Iterator[dict[str, Any]]:
    """An IAM-enforcing moto server: an administrator user (made by its first 3 unauthenticated
    calls), spam_nb published and signed, and a serving role allowed to read the registry only."""
    with moto_server_process({"INITIAL_NO_AUTH_ACTION_COUNT": "3"}) as endpoint:
        iam = client("iam", endpoint, LOCAL_CREDENTIALS)
        iam.create_user(UserName="admin")
        everything = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(everything))
        made = iam.create_access_key(UserName="admin")["AccessKey"]
        admin = {"AWS_ACCESS_KEY_ID": made["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": made["SecretAccessKey"]}
        s3 = client("s3", endpoint, admin)
        kms = client("kms", endpoint, admin)
        for bucket in (MODELS, DATA):
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
        registry = RegistryAdmin(MODELS, s3, signing_key=key["Arn"], kms_client=kms)
        registry.publish(spam_nb_dir)
        registry.set_alias("spam_nb", "production", 1)
        reads_only = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": f"arn:aws:s3:::{MODELS}*"}],
        }
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
        }
        iam = client("iam", endpoint, admin)
        role = iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]
        iam.put_role_policy(RoleName=ROLE, PolicyName="reads", PolicyDocument=json.dumps(reads_only))
        assumed = client("sts", endpoint, admin).assume_role(RoleArn=role["Arn"], RoleSessionName="fn")
        creds = assumed["Credentials"]
        serving = {
            "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"],
        }
        yield {"endpoint": endpoint, "admin": admin, "serving": serving, "key": key, "role": role["Arn"]}


def scan(text: str, secrets: list[str]) -> list[str]:
    """What of an answer would tell a client about the account: ARNs, account ids, names."""
    found = [m.group(0) for m in ACCOUNT.finditer(text)]
    found += ["arn:"] if "arn:" in text else []
    return found + [s for s in secrets if s in text]


MISSING_KEY = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
# case: (whose credentials, which key, what the log must hold that no answer may)
CASES = {
    # the key does not exist: KMS's message names its ARN, with the account
    "kms-not-found": ("admin", "missing-key", f"123456789012:key/{MISSING_KEY}"),
    # the role may read S3 but not kms:Verify: the message names the assumed role and the account
    "kms-access-denied": ("serving", "key", f"arn:aws:sts::123456789012:assumed-role/{ROLE}"),
    # the role may not read a bucket outside MODELS: S3's AccessDenied, the bucket in the log
    "s3-access-denied": ("serving-no-s3", "key", f"s3://{DATA}/"),
    # credentials STS issued that the service does not recognise (expired, revoked)
    "sts-invalid-token": ("bogus", "key", "InvalidAccessKeyId"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_aws_error_reaches_the_log_but_no_answer_names_the_account(
    guarded: dict[str, Any], case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    who, which_key, in_log = CASES[case]
    key_arn = str(guarded["key"]["Arn"])
    if which_key == "missing-key":
        key_arn = key_arn.replace(str(guarded["key"]["KeyId"]), MISSING_KEY)
    credentials = {
        "admin": guarded["admin"],
        "serving": guarded["serving"],
        "serving-no-s3": {**guarded["serving"]},
        "bogus": {
            "AWS_ACCESS_KEY_ID": "ASIAEXPIREDTOKEN0000",
            "AWS_SECRET_ACCESS_KEY": "expired",
            "AWS_SESSION_TOKEN": "expired",
        },
    }[who]
    models_bucket = MODELS if who != "serving-no-s3" else DATA  # the role may not read DATA
    environ = {
        "MODEL_BUCKET": models_bucket,
        "DATA_BUCKET": DATA,
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "MANIFEST_SIGNING_KEY": key_arn,
        "MODEL_VERSION": "1",
    }
    log = io.StringIO()
    monkeypatch.setattr(logger.logger_handler, "stream", log)
    secrets = [MODELS, DATA, ROLE, str(guarded["key"]["KeyId"]), key_arn.rsplit("/", 1)[-1]]
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for name, value in {"AWS_ENDPOINT_URL": guarded["endpoint"], **credentials}.items():
        monkeypatch.setenv(name, value)
    # clients of their own: boto3's default session would keep the first test's credentials
    function = FunctionUnderTest(
        "spam_nb",
        environ,
        client("s3", guarded["endpoint"], credentials),
        client("kms", guarded["endpoint"], credentials),
    )
    statuses = []
    for route, body in ROUTES:
        response = function(request_event("spam_nb", route, body))
        COUNTS["bodies"] += 1
        statuses.append(response["statusCode"])
        leaks = scan(response["body"], secrets)
        COUNTS["leaks"] += len(leaks)
        assert leaks == [], (case, route, response["body"])
    assert set(statuses) == {503}, (case, statuses)  # each route met the AWS error
    details = [json.loads(line).get("detail") or "" for line in log.getvalue().splitlines()]
    assert sum(in_log in detail for detail in details) == len(ROUTES), details  # the log keeps it
    COUNTS["details_logged"] += len(ROUTES)
    print(
        f"\nredaction {case}: {COUNTS['bodies']} bodies scanned so far, {COUNTS['leaks']} leaks, "
        f"{COUNTS['details_logged']} AWS details in the log"
    )


def test_a_bucket_named_like_a_word_leaves_the_messages_intact(
    registry: RegistryAdmin, spam_nb_dir: Path, s3: Any, tmp_path: Path
) -> None:
    """Redaction by structure: a data bucket named ``data`` no longer turns a protocol message's
    ``inputs[0].data`` into ``inputs[0].<bucket>`` (messages never held the bucket to begin with)."""
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    function = make_function("spam_nb", s3, tmp_path, DATA_BUCKET="data")
    body = {"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}
    response = function(request_event("spam_nb", "infer", json.dumps(body)))
    assert response["statusCode"] == 400
    assert (
        json.loads(response["body"])["error"]
        == "inputs[0].shape [2] holds 2 elements, but inputs[0].data has 1"
    )
