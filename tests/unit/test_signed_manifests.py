"""Signed manifests: with MANIFEST_SIGNING_KEY set, a function serves only versions whose manifest
bytes carry a valid KMS signature from that key; a bucket writer who swaps a whole version (manifest,
model and publication record recreated) is refused. moto's KMS signs and verifies in-process."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import boto3
import onnx
import pytest

from maas.core.registry import ModelRegistry
from maas.core.signing import ManifestVerifier
from maas.http.server import repository_index
from ops.lifecycle import Lifecycle
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET, body_of, load_event, make_function

PREDICT = load_event("spam_nb", "predict.json")
PREFIX = "models/spam_nb/versions/1/"


def new_key(kms: Any) -> str:
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    return str(key["Arn"])


@pytest.fixture
def kms(s3: Any) -> Any:  # s3 holds the mock_aws context
    return boto3.client("kms", region_name="us-east-1")


@pytest.fixture
def key(kms: Any) -> str:
    return new_key(kms)


@pytest.fixture
def signer(s3: Any, kms: Any, key: str) -> RegistryAdmin:
    return RegistryAdmin(BUCKET, s3, signing_key=key, kms_client=kms)


def answer(s3: Any, kms: Any, key: str | None, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    extra = {} if key is None else {"MANIFEST_SIGNING_KEY": key}
    function = make_function("spam_nb", s3, tmp_path, kms_client=kms, MODEL_VERSION="1", **extra)
    response = function(PREDICT)
    return response["statusCode"], body_of(response)


def publication(s3: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(
        s3.get_object(Bucket=BUCKET, Key=PREFIX + "publication.json")["Body"].read()
    )
    return record


def put(s3: Any, filename: str, body: bytes, **extra: Any) -> str:
    return str(s3.put_object(Bucket=BUCKET, Key=PREFIX + filename, Body=body, **extra)["VersionId"])


def assert_refused(status: int, body: dict[str, Any], code: str) -> None:
    assert status == 503, body
    assert body["error"]["code"] == code, body


def test_a_signed_version_is_served_and_its_record_holds_the_signature(
    signer: RegistryAdmin, s3: Any, kms: Any, key: str, spam_nb_dir: Path, tmp_path: Path
) -> None:
    signer.publish(spam_nb_dir)
    entry = publication(s3)["manifest_signature"]
    assert entry["key_id"] == key and entry["algorithm"] == "ECDSA_SHA_256"
    assert entry["message_type"] == "DIGEST"
    status, body = answer(s3, kms, key, tmp_path)
    assert status == 200, body
    assert body["model_version"] == "1"


def test_without_a_configured_key_nothing_is_checked(
    registry: RegistryAdmin, s3: Any, kms: Any, spam_nb_dir: Path, tmp_path: Path
) -> None:
    registry.publish(spam_nb_dir)
    assert "manifest_signature" not in publication(s3)
    status, body = answer(s3, kms, None, tmp_path)
    assert status == 200, body


def test_an_unsigned_version_is_refused_when_a_key_is_configured(
    registry: RegistryAdmin, s3: Any, kms: Any, key: str, spam_nb_dir: Path, tmp_path: Path
) -> None:
    registry.publish(spam_nb_dir)
    status, body = answer(s3, kms, key, tmp_path)
    assert_refused(status, body, "signature_missing")
    assert "has no manifest signature" in body["error"]["message"]
    assert not (tmp_path / "cache" / "spam_nb" / "1" / "model.onnx").exists()


def test_a_version_signed_with_another_key_is_refused(
    s3: Any, kms: Any, key: str, spam_nb_dir: Path, tmp_path: Path
) -> None:
    other = new_key(kms)
    RegistryAdmin(BUCKET, s3, signing_key=other, kms_client=kms).publish(spam_nb_dir)
    status, body = answer(s3, kms, key, tmp_path)
    assert_refused(status, body, "signature_invalid")
    assert other not in json.dumps(body) and key not in json.dumps(body), "key ids go to the log only"


def test_a_modified_manifest_is_refused_even_with_a_rewritten_publication_record(
    signer: RegistryAdmin, s3: Any, kms: Any, key: str, spam_nb_dir: Path, tmp_path: Path
) -> None:
    signer.publish(spam_nb_dir)
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "manifest.json")["Body"].read())
    manifest["labels"] = list(reversed(manifest["labels"]))
    record = publication(s3)
    record["objects"]["manifest.json"]["version_id"] = put(
        s3, "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode()
    )
    put(s3, "publication.json", json.dumps(record).encode())  # the old signature kept
    status, body = answer(s3, kms, key, tmp_path)
    assert_refused(status, body, "signature_invalid")
    assert "is not signed by this function's signing key" in body["error"]["message"]
    assert not (tmp_path / "cache" / "spam_nb" / "1" / "model.onnx").exists(), "nothing past the manifest"


def _delete_every_version(s3: Any) -> None:
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=PREFIX)
    doomed = [
        {"Key": v["Key"], "VersionId": v["VersionId"]}
        for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
    ]
    s3.delete_objects(Bucket=BUCKET, Delete={"Objects": doomed})


def test_the_full_swap_of_a_version_is_refused(
    signer: RegistryAdmin, s3: Any, kms: Any, key: str, spam_nb_dir: Path, tmp_path: Path
) -> None:
    """Every S3 version of manifest, model and record deleted, then all three recreated
    consistently (the substitute's sha256 in the manifest, its version ids in the record, the
    genuine signature copied): without kms:Sign the writer cannot make it servable."""
    signer.publish(spam_nb_dir)
    stolen = publication(s3)["manifest_signature"]
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=PREFIX + "manifest.json")["Body"].read())
    _delete_every_version(s3)
    model = onnx.load(spam_nb_dir / "model.onnx")
    model.doc_string = "a substitute"  # any other valid model
    substitute = model.SerializeToString()

    manifest["model"]["sha256"] = hashlib.sha256(substitute).hexdigest()
    ids = {
        "model.onnx": put(s3, "model.onnx", substitute, Tagging="model=spam_nb&version=1&status=active"),
        "manifest.json": put(s3, "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode()),
    }
    for filename in manifest.get("artifacts", {}):
        ids[filename] = put(s3, filename, (spam_nb_dir / filename).read_bytes())
    record = {"name": "spam_nb", "version": 1, "objects": {f: {"version_id": v} for f, v in ids.items()}}
    put(s3, "publication.json", json.dumps(record).encode())
    assert_refused(*answer(s3, kms, key, tmp_path), "signature_missing")
    status, _ = answer(s3, kms, None, tmp_path / "unchecked")
    assert status == 200, "without a signing key the swap is served: what the signature prevents"
    put(s3, "publication.json", json.dumps({**record, "manifest_signature": stolen}).encode())
    assert_refused(*answer(s3, kms, key, tmp_path / "again"), "signature_invalid")


def test_a_genuine_signature_copied_to_another_version_is_refused(
    signer: RegistryAdmin, s3: Any, kms: Any, key: str, spam_nb_dir: Path, tmp_path: Path
) -> None:
    signer.publish(spam_nb_dir)
    signer.publish(spam_nb_dir)
    v2 = "models/spam_nb/versions/2/"
    for filename in ("manifest.json", "publication.json"):
        s3.put_object(
            Bucket=BUCKET,
            Key=v2 + filename,
            Body=s3.get_object(Bucket=BUCKET, Key=PREFIX + filename)["Body"].read(),
        )
    record = publication(s3)
    record["objects"]["manifest.json"]["version_id"] = s3.head_object(
        Bucket=BUCKET, Key=v2 + "manifest.json"
    )["VersionId"]
    record["objects"]["model.onnx"]["version_id"] = s3.head_object(Bucket=BUCKET, Key=v2 + "model.onnx")[
        "VersionId"
    ]
    s3.put_object(Bucket=BUCKET, Key=v2 + "publication.json", Body=json.dumps(record).encode())
    function = make_function(
        "spam_nb", s3, tmp_path, kms_client=kms, MODEL_VERSION="2", MANIFEST_SIGNING_KEY=key
    )
    response = function(PREDICT)
    assert_refused(response["statusCode"], body_of(response), "signature_invalid")


def test_the_index_and_describe_report_an_unsigned_version(
    signer: RegistryAdmin, registry: RegistryAdmin, s3: Any, kms: Any, key: str, spam_nb_dir: Path
) -> None:
    signer.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)  # version 2, unsigned
    checked = ModelRegistry(BUCKET, s3, verifier=ManifestVerifier(key, kms))
    entries = {e.version: e for e in repository_index(checked, only_ready=False)}
    assert entries["1"].state == "READY"
    assert entries["2"].state == "UNAVAILABLE"
    assert "has no manifest signature" in entries["2"].reason
    admin = RegistryAdmin(BUCKET, s3, verifier=ManifestVerifier(key, kms))
    assert Lifecycle(admin).describe("spam_nb", 1)["integrity"] == "intact"
    assert Lifecycle(admin).describe("spam_nb", 2)["integrity"].startswith("signature_missing: ")
    unchecked = {e.version: e.state for e in repository_index(ModelRegistry(BUCKET, s3), only_ready=False)}
    assert unchecked == {"1": "READY", "2": "READY"}
