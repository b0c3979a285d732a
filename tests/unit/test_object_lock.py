"""S3 Object Lock: on a bucket with Object Lock enabled, publish locks a version's objects in
COMPLIANCE mode for the bucket's ``maas:object-lock-days``; nobody deletes them before that date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.core.errors import Conflict
from ops import cli
from ops.lifecycle import Lifecycle
from ops.registry_admin import RegistryAdmin
from tests.conftest import in_process_aws

LOCKED = "maas-test-locked-models"
PREFIX = "models/spam_nb/versions/1/"


@pytest.fixture
def locked_s3() -> Any:
    with in_process_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=LOCKED, ObjectLockEnabledForBucket=True)
        client.put_bucket_tagging(
            Bucket=LOCKED, Tagging={"TagSet": [{"Key": "maas:object-lock-days", "Value": "7"}]}
        )
        yield client


def test_publish_locks_each_object_of_the_version_and_its_deletion_is_refused(
    locked_s3: Any, spam_nb_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = RegistryAdmin(LOCKED, locked_s3)
    registry.publish(spam_nb_dir)
    versions = locked_s3.list_object_versions(Bucket=LOCKED, Prefix=PREFIX)["Versions"]
    assert {v["Key"].rsplit("/", 1)[-1] for v in versions} >= {
        "manifest.json",
        "model.onnx",
        "publication.json",
    }
    for entry in versions:
        head = locked_s3.head_object(Bucket=LOCKED, Key=entry["Key"], VersionId=entry["VersionId"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert abs(head["ObjectLockRetainUntilDate"] - (datetime.now(UTC) + timedelta(days=7))) < timedelta(
            hours=1
        )
    # a bucket writer's delete of a locked object version is refused by S3
    model = next(v for v in versions if v["Key"].endswith("model.onnx"))
    with pytest.raises(locked_s3.exceptions.ClientError, match="AccessDenied"):
        locked_s3.delete_object(Bucket=LOCKED, Key=model["Key"], VersionId=model["VersionId"])
    # and maas models delete says so, in one line, before deleting anything
    Lifecycle(registry).retire("spam_nb", 1)
    with pytest.raises(Conflict, match="under S3 Object Lock") as refused:
        Lifecycle(registry).delete("spam_nb", 1)
    assert refused.value.code == "version_locked"
    monkeypatch.setenv("MODEL_BUCKET", LOCKED)
    monkeypatch.setattr(cli, "RegistryAdmin", lambda bucket, **kw: RegistryAdmin(bucket, locked_s3, **kw))
    assert cli.main(["models", "delete", "spam_nb", "1"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: spam_nb version 1 is under S3 Object Lock (COMPLIANCE) until ")
    assert line.endswith(": it cannot be deleted before then")
    assert len(locked_s3.list_object_versions(Bucket=LOCKED, Prefix=PREFIX)["Versions"]) == len(versions)


def test_a_bucket_without_object_lock_publishes_unlocked(
    registry: RegistryAdmin, s3: Any, spam_nb_dir: Path
) -> None:
    registry.publish(spam_nb_dir)
    head = s3.head_object(Bucket=registry.bucket, Key=PREFIX + "model.onnx")
    assert "ObjectLockMode" not in head
