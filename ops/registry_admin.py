"""The registry's write side, for operators and CI: publish a version, move aliases, set status, delete.

Serving only reads (``maas.core.registry``); what writes lives here, outside the layer, so no
function carries code its role may not run. Conditional writes make the two races safe: two
publishers never get the same number (``IfNoneMatch="*"`` on the manifest), and two alias moves
never lose an update (``IfMatch`` on the alias object's ETag).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from maas.core.errors import Conflict, MaasError, NotFound, RegistryError
from maas.core.manifest import Manifest, ManifestError
from maas.core.registry import (
    HISTORY_LIMIT,
    MANIFEST_NAME,
    MODEL_FILE,
    PUBLICATION_NAME,
    STATUS_ACTIVE,
    STATUS_RETIRED,
    Alias,
    ModelRegistry,
    Progress,
    PublishedVersion,
    _error_code,
    _is_precondition,
    _quiet,
    check_model_name,
    sha256_file,
    utc_now,
)
from maas.core.signing import (
    MESSAGE_TYPE,
    SIGNATURE_FIELD,
    SIGNING_ALGORITHM,
    ManifestVerifier,
    manifest_digest,
    signature_record,
)

_MAX_CLAIM_ATTEMPTS = 50
#: the bucket tag that says how long publish locks a version (the template's RegistryObjectLockDays)
LOCK_DAYS_TAG = "maas:object-lock-days"
DEFAULT_LOCK_DAYS = 30


def read_manifest_file(model_dir: Path) -> dict[str, Any]:
    """A version folder's manifest, or a one-line reason why there is none to read."""
    manifest_path = model_dir / MANIFEST_NAME
    if not model_dir.is_dir():
        raise NotFound(
            f"{model_dir} is not a folder: give the folder maas train/import wrote", code="folder_missing"
        )
    if not manifest_path.is_file():
        raise NotFound(
            f"{manifest_path} does not exist: train or import a model into {model_dir} first",
            code="manifest_missing",
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise MaasError(f"{manifest_path} is not valid JSON: {error}", code="manifest_invalid") from None
    if not isinstance(manifest, dict):
        raise MaasError(f"{manifest_path} is not a JSON object", code="manifest_invalid")
    return manifest


def check_manifest(manifest: dict[str, Any], model_dir: Path) -> Manifest:
    """The manifest as the runtime will read it (``maas.core.manifest``), or a ``ManifestError``
    naming the field: the first check of a publish, before anything is read from S3."""
    try:
        return Manifest.from_dict(manifest)
    except ManifestError as error:
        raise ManifestError(f"refusing to publish {model_dir}: {error.message}", field=error.field) from None


def servable_problem(manifest: dict[str, Any]) -> str | None:
    """Why the runtime could not serve this manifest (checked before anything is uploaded)."""
    from maas.core.tasks import unservable_task

    reason = unservable_task(manifest)
    if reason is not None:
        return reason
    io = manifest.get("io", {}) if isinstance(manifest.get("io"), dict) else {}
    output = io.get("probability_output")
    labels = manifest.get("labels") or []
    if output:
        outputs = {spec.get("name"): spec for spec in manifest.get("signature", {}).get("outputs", [])}
        spec = outputs.get(output)
        if spec is None:
            return f"the probability output {output!r} is not an output of the graph ({sorted(outputs)})"
        width = (spec.get("shape") or [None])[-1]
        binary = width == 1 and len(labels) == 2  # one sigmoid column: P(labels[1])
        if isinstance(width, int) and width != len(labels) and not binary:
            return f"the manifest has {len(labels)} labels {labels} but the probability output {output!r} has {width} columns"
    return None


class RegistryAdmin(ModelRegistry):
    """The registry with its write operations: what ``maas publish`` and ``maas models`` use.

    With ``signing_key`` (a KMS asymmetric key id, ARN or alias; ``maas publish --signing-key``
    or ``MANIFEST_SIGNING_KEY``), ``publish`` signs each manifest's stored bytes with KMS ``Sign``
    and records the signature in the publication record.
    """

    def __init__(
        self,
        bucket: str,
        s3_client: Any | None = None,
        *,
        verifier: ManifestVerifier | None = None,
        signing_key: str | None = None,
        kms_client: Any | None = None,
    ) -> None:
        super().__init__(bucket, s3_client, verifier=verifier)
        self.signing_key = signing_key
        self._signing_kms = kms_client
        self._lock: dict[str, Any] = {}

    def _object_lock(self) -> dict[str, Any]:
        """The Object Lock arguments of this publication's objects: none when the bucket has no
        Object Lock, else COMPLIANCE until now + the bucket's ``maas:object-lock-days`` tag (30)."""
        try:
            config = self.s3.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as error:
            if "ObjectLockConfigurationNotFound" in _error_code(error):
                return {}
            raise RegistryError(
                f"cannot read the Object Lock setting of s3://{self.bucket}: {error}"
            ) from error
        if config.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") != "Enabled":
            return {}
        days = DEFAULT_LOCK_DAYS
        try:
            tags = self.s3.get_bucket_tagging(Bucket=self.bucket).get("TagSet", [])
            days = int(next((t["Value"] for t in tags if t["Key"] == LOCK_DAYS_TAG), DEFAULT_LOCK_DAYS))
        except ClientError as error:
            if _error_code(error) != "NoSuchTagSet":
                raise RegistryError(f"cannot read the tags of s3://{self.bucket}: {error}") from error
        if days <= 0:
            return {}
        until = datetime.now(UTC) + timedelta(days=days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    @property
    def signing_kms(self) -> Any:
        if self._signing_kms is None:
            self._signing_kms = boto3.client("kms")
        return self._signing_kms

    def _sign(self, name: str, version: int, raw: bytes) -> dict[str, str]:
        """KMS ``Sign`` over the SHA-256 digest of the manifest's exact stored bytes."""
        assert self.signing_key is not None
        try:
            response = self.signing_kms.sign(
                KeyId=self.signing_key,
                Message=manifest_digest(raw),
                MessageType=MESSAGE_TYPE,
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except (ClientError, BotoCoreError) as error:
            raise RegistryError(
                f"cannot sign the manifest of {name} v{version} with {self.signing_key}: {error}; "
                "the version stays incomplete (no publication record) and is never served",
                code="signing_failed",
            ) from error
        return signature_record(str(response["KeyId"]), bytes(response["Signature"]), raw)

    def next_version(self, name: str) -> int:
        versions = self.list_versions(name)
        return (versions[-1] + 1) if versions else 1

    def _claim(self, name: str, manifest: dict[str, Any]) -> tuple[int, dict[str, Any], str | None, bytes]:
        """Claim the next free number by creating its manifest; a taken number is skipped, never
        overwritten. Returns the number, the manifest, its S3 version id and its exact bytes."""
        candidate = self.next_version(name)
        for _ in range(_MAX_CLAIM_ATTEMPTS):
            claimed = {**manifest, "name": name, "version": candidate, "published_at": utc_now()}
            body = json.dumps(claimed, indent=2, sort_keys=True).encode()
            try:
                response = self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.object_key(name, candidate, MANIFEST_NAME),
                    Body=body,
                    ContentType="application/json",
                    IfNoneMatch="*",
                    **self._lock,
                )
            except ClientError as error:
                if _is_precondition(error):
                    candidate = max(candidate + 1, self.next_version(name))
                    continue
                raise RegistryError(f"cannot write to s3://{self.bucket}: {error}") from error
            return candidate, claimed, response.get("VersionId"), body
        raise Conflict(f"could not claim a version number for {name!r} after {_MAX_CLAIM_ATTEMPTS} attempts")

    def _put_file(
        self, name: str, version: int, path: Path, *, tags: dict[str, str] | None = None
    ) -> str | None:
        """Create one object of a version (never overwrite); returns its S3 version id."""
        extra: dict[str, Any] = {}
        if tags:
            extra["Tagging"] = "&".join(f"{quote(k)}={quote(v)}" for k, v in tags.items())
        with path.open("rb") as body:
            try:
                response = self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.object_key(name, version, path.name),
                    Body=body,
                    IfNoneMatch="*",
                    **extra,
                    **self._lock,
                )
            except ClientError as error:
                raise RegistryError(f"cannot upload {path.name} for {name} v{version}: {error}") from error
        return response.get("VersionId")

    def check_bucket(self) -> None:
        """The registry bucket exists and keeps object versions (publication records pin them)."""
        try:
            status = self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in {"NoSuchBucket", "404", "NotFound"}:
                raise NotFound(
                    f"registry bucket {self.bucket!r} does not exist", code="bucket_missing"
                ) from None
            raise RegistryError(
                f"cannot read the versioning of bucket {self.bucket!r}: {code or error}"
            ) from None
        if status != "Enabled":
            raise Conflict(
                f"registry bucket {self.bucket!r} does not have versioning enabled (status "
                f"{status or 'never enabled'}): the registry needs it; enable it with "
                f"aws s3api put-bucket-versioning --bucket {self.bucket} --versioning-configuration Status=Enabled",
                code="bucket_unversioned",
            )

    def publish(
        self, model_dir: Path, *, progress: Progress = _quiet, validate: bool = True
    ) -> PublishedVersion:
        """Upload a trained model directory as the next version of its model.

        The files are checked against the manifest's sha256 first, so what is published is what
        passed the parity gate; with ``validate`` (the default) a manifest the runtime could not
        serve (unknown task, labels that do not match the probability output) is refused.
        """
        manifest = read_manifest_file(model_dir)
        name = check_model_name(str(manifest.get("name", "")))
        if validate:
            check_manifest(manifest, model_dir)
            problem = servable_problem(manifest)
            if problem:
                raise Conflict(f"refusing to publish {name}: {problem}", code="unservable_version")
        self.check_bucket()
        files = {MODEL_FILE: manifest.get("model", {}), **manifest.get("artifacts", {})}
        for filename, expected in files.items():
            path = model_dir / filename
            if not path.is_file():
                raise NotFound(f"{path} is named in the manifest but missing", code="artifact_missing")
            if sha256_file(path) != expected.get("sha256"):
                raise Conflict(
                    f"{path} does not match the sha256 in its manifest (the file changed after the parity gate)",
                    code="sha256_mismatch",
                )
        self._lock = self._object_lock()
        version, claimed, manifest_version_id, body = self._claim(name, manifest)
        progress(f"claimed {name} version {version}")
        signature = None if self.signing_key is None else self._sign(name, version, body)
        version_ids = {MANIFEST_NAME: manifest_version_id}
        for filename in files:
            if filename == MODEL_FILE:
                continue
            version_ids[filename] = self._put_file(name, version, model_dir / filename)
        tags = {"model": name, "version": str(version), "status": STATUS_ACTIVE}
        version_ids[MODEL_FILE] = self._put_file(name, version, model_dir / MODEL_FILE, tags=tags)
        self._write_publication(name, version, version_ids, signature)
        progress(f"uploaded {len(files)} file(s) to s3://{self.bucket}/{self.version_prefix(name, version)}")
        return PublishedVersion(name=name, version=version, manifest=claimed)

    def _write_publication(
        self,
        name: str,
        version: int,
        version_ids: dict[str, str | None],
        signature: dict[str, str] | None = None,
    ) -> None:
        """Written last: a version without it is incomplete, and it pins each object's S3 version
        id (and holds the manifest's signature, when signed)."""
        record: dict[str, Any] = {
            "name": name,
            "version": version,
            "published_at": utc_now(),
            "objects": {filename: {"version_id": vid} for filename, vid in sorted(version_ids.items())},
        }
        if signature is not None:
            record[SIGNATURE_FIELD] = signature
        try:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.object_key(name, version, PUBLICATION_NAME),
                Body=json.dumps(record, indent=2).encode(),
                ContentType="application/json",
                IfNoneMatch="*",
                **self._lock,
            )
        except ClientError as error:
            raise RegistryError(f"cannot record the publication of {name} v{version}: {error}") from error

    def set_status(self, name: str, version: int, status: str) -> None:
        """Change the status tag of a version's model object (its other tags are kept).

        Retirement is final: a retired version is never made active again (publish it anew).
        This guards the tools; in AWS the bucket policy's ``RetiredIsFinal`` makes it final for everyone.
        """
        current = self.tags(name, version)
        if current.get("status") == STATUS_RETIRED and status != STATUS_RETIRED:
            raise Conflict(
                f"{name} version {version} is retired: retirement cannot be reversed; publish it again",
                code="status_irreversible",
                field="status",
            )
        tags = {**current, "status": status}
        try:
            self.s3.put_object_tagging(
                Bucket=self.bucket,
                Key=self.object_key(name, version, MODEL_FILE),
                Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]},
            )
        except ClientError as error:
            raise RegistryError(f"cannot tag {name} v{version} as {status}: {error}") from error

    def delete_version(self, name: str, version: int) -> int:
        """Remove every S3 version of every object of a version; returns how many were deleted.

        A version under S3 Object Lock is refused before anything is deleted (``version_locked``).
        """
        self._refuse_locked(name, version)
        prefix = self.version_prefix(name, version)
        paginator = self.s3.get_paginator("list_object_versions")
        doomed: list[dict[str, str]] = []
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    doomed.append({"Key": entry["Key"], "VersionId": entry["VersionId"]})
            # the manifest last: until it goes, the number stays claimed and is never reused
            doomed.sort(key=lambda entry: entry["Key"].endswith(MANIFEST_NAME))
            for start in range(0, len(doomed), 1000):
                response = self.s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
                )
                if response.get("Errors"):
                    failed = sorted({e.get("Key", "?").rsplit("/", 1)[-1] for e in response["Errors"]})
                    raise RegistryError(
                        f"cannot delete {name} v{version}: S3 refused {', '.join(failed)}",
                        code="delete_refused",
                    )
        except ClientError as error:
            raise RegistryError(f"cannot delete {name} v{version}: {error}") from error
        return len(doomed)

    def _refuse_locked(self, name: str, version: int) -> None:
        for filename in (MANIFEST_NAME, MODEL_FILE, PUBLICATION_NAME):
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=self.object_key(name, version, filename))
            except ClientError:
                continue  # missing: nothing locked there
            until = head.get("ObjectLockRetainUntilDate")
            if until is not None and until > datetime.now(UTC):
                raise Conflict(
                    f"{name} version {version} is under S3 Object Lock ({head.get('ObjectLockMode')}) until "
                    f"{until.date().isoformat()}: it cannot be deleted before then",
                    code="version_locked",
                    field="version",
                )

    def set_alias(
        self, name: str, alias: str, version: int, *, action: str = "promote", expected: Alias | None = None
    ) -> Alias:
        """Point ``alias`` at ``version``, remembering the previous target and the move in its history.

        The write is conditional on the alias object's ETag (or on its absence), so a concurrent
        move makes this one fail with ``Conflict`` instead of being silently overwritten.
        ``expected`` is the alias as the caller read it (a rollback decides from it); by default
        it is read here.
        """
        self.read_manifest(name, version)
        status = self.status(name, version)
        if status != STATUS_ACTIVE:
            raise Conflict(
                f"model {name!r} version {version} is {status}: only active versions can be aliased",
                code="version_not_active",
                field="version",
            )
        current = expected if expected is not None else self.get_alias(name, alias)
        now = utc_now()
        revision = 1 if current is None else current.revision + 1
        previous = None if current is None else current.version
        entry = {
            "revision": revision,
            "version": int(version),
            "previous": previous,
            "at": now,
            "action": action,
        }
        history = [*(current.history if current else ()), entry][-HISTORY_LIMIT:]
        document = {
            "version": int(version),
            "previous": previous,
            "updated_at": now,
            "revision": revision,
            "history": history,
        }
        condition = {"IfNoneMatch": "*"} if current is None else {"IfMatch": current.etag}
        try:
            response = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.alias_key(name, alias),
                Body=json.dumps(document).encode(),
                ContentType="application/json",
                **condition,  # type: ignore[arg-type]
            )
        except ClientError as error:
            if _is_precondition(error):
                raise Conflict(
                    f"alias {alias!r} of {name!r} was moved by someone else meanwhile; read it again and retry",
                    code="alias_conflict",
                    field="alias",
                ) from error
            raise RegistryError(f"cannot write alias {alias!r} of {name!r}: {error}") from error
        return Alias(
            name, alias, int(version), previous, now, str(response["ETag"]), revision, tuple(history)
        )
