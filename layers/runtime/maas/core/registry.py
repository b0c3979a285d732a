"""The model registry in S3: immutable numbered versions, alias objects and status tags.

Layout (one bucket, versioning on)::

    models/<name>/versions/<n>/manifest.json   write-once, claims the number (IfNoneMatch="*")
    models/<name>/versions/<n>/model.onnx      tags model=<name>, version=<n>, status=active|retired
    models/<name>/versions/<n>/<artifact>      anything pre/post-processing needs
    models/<name>/versions/<n>/publication.json written last: the S3 version id of every object
    models/<name>/aliases/<alias>.json         {"version": n, "previous": m, "revision": r, "history": [...]}

Conditional writes make the two races safe: two publishers never get the same number, and two
alias moves never lose an update. The publication record makes a version complete and pins each
object's S3 version id, so an object replaced after publication is detected even with equal bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from maas.core.download import PART_BYTES, Downloaded, ranged_download
from maas.core.errors import Conflict, ModelUnavailable, NotFound, RegistryError, aws_reason, shown
from maas.core.settings import Settings
from maas.core.signing import ManifestVerifier

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MODEL_FILE = "model.onnx"
MANIFEST_NAME = "manifest.json"
PUBLICATION_NAME = "publication.json"
STATUS_ACTIVE = "active"
STATUS_RETIRED = "retired"
ROOT = "models"
# Always fullmatch: "$" also matches before a trailing newline.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ALIAS = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,18}")
HISTORY_LIMIT = 100

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default progress sink: say nothing."""


def check_model_name(name: str) -> str:
    """A model name is a Python identifier, so ``functions.<name>.app`` imports."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise NotFound(
            f"model name {name!r} is not valid: a name starts with a letter or '_' and holds only "
            "letters, digits and '_' (a Python identifier, e.g. wine_quality)",
            code="invalid_model_name",
            field="name",
        )
    return name


def check_alias(alias: str) -> str:
    """1-64 letters, digits, '_', '.' or '-', and not ``.`` or ``..`` (path segments, not names)."""
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias in {".", ".."}:
        raise Conflict(
            f"alias {alias!r} must be 1-64 letters, digits, '_', '.' or '-' (not '.' or '..')",
            code="invalid_alias",
            field="alias",
        )
    return alias


def _positive_int(value: Any) -> bool:
    """An integer of JSON, from 1: ``true``, ``1.0``, ``1.9`` and ``"1"`` are not versions."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_missing(error: ClientError) -> bool:
    return _error_code(error) in {"NoSuchKey", "404", "NotFound"}


def _is_precondition(error: ClientError) -> bool:
    return _error_code(error) in {"PreconditionFailed", "412", "ConditionalRequestConflict"}


@dataclass(frozen=True, slots=True)
class Alias:
    """Where an alias points, where it pointed before (for rollback), and how it got there.

    ``revision`` counts the moves; ``history`` holds the last moves, oldest first, each
    ``{"revision", "version", "previous", "at", "action"}``.
    """

    name: str
    alias: str
    version: int
    previous: int | None
    updated_at: str
    etag: str
    revision: int = 1
    history: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": self.previous,
            "updated_at": self.updated_at,
            "revision": self.revision,
            "history": list(self.history),
        }


@dataclass(frozen=True, slots=True)
class PublishedVersion:
    name: str
    version: int
    manifest: dict[str, Any]


class ModelRegistry:
    """Reads the registry bucket: what serving needs. The write side (publish, aliases, status,
    delete) is the operators' and lives in ``ops.registry_admin``. The client is injected so
    tests pass moto's. With a ``verifier`` (``MANIFEST_SIGNING_KEY``), a version is servable
    only if its manifest carries a valid signature from that key.

    With ``light_reads`` and no injected client (a model function in Lambda), the reads a
    version's load makes (objects, tags, HEAD) go through ``maas.core.s3_reads``: signed requests,
    no SDK client to build. Listings, and every read otherwise, use boto3's client (which an
    in-process mock such as moto's ``mock_aws`` intercepts; it cannot see the reader's requests).
    """

    def __init__(
        self,
        bucket: str,
        s3_client: S3Client | None = None,
        *,
        verifier: ManifestVerifier | None = None,
        light_reads: bool = False,
    ) -> None:
        self.bucket = bucket
        self._s3 = s3_client
        self._owns_client = s3_client is None
        self.light_reads = light_reads
        self._reader: Any | None = None
        self.verifier = verifier

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        s3_client: Any | None = None,
        kms_client: Any | None = None,
        *,
        light_reads: bool = False,
    ) -> ModelRegistry:
        """The registry a function reads: ``MODEL_BUCKET``, and ``MANIFEST_SIGNING_KEY``'s verifier."""
        key = settings.manifest_signing_key
        verifier = None if key is None else ManifestVerifier(key, kms_client)
        return cls(settings.model_bucket, s3_client, verifier=verifier, light_reads=light_reads)

    @property
    def s3(self) -> S3Client:
        if self._s3 is None:
            import boto3  # here: a model function's cold start reads without it

            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def reads(self) -> Any:
        """What GETs objects and tags and HEADs them: the injected client, else the reader."""
        if not self._owns_client or not self.light_reads:
            return self.s3
        if self._reader is None:
            from maas.core.s3_reads import reader_or_client

            self._reader = reader_or_client()
        return self._reader

    def prepare(self) -> None:
        """Import and build the reader now, if it reads with the environment's own credentials
        (Lambda's): nothing here may wait on the network (an instance-metadata lookup) at init."""
        if self.light_reads and self._owns_client and os.environ.get("AWS_ACCESS_KEY_ID"):
            self.reads  # noqa: B018 (built for its side effect)

    def reset_connections(self) -> None:
        """Drop a client this registry created, so the next call opens new connections."""
        if self._owns_client:
            self._s3 = None
            self._reader = None
        if self.verifier is not None:
            self.verifier.reset_connections()

    # --- layout -------------------------------------------------------------------------------

    @staticmethod
    def model_prefix(name: str) -> str:
        return f"{ROOT}/{check_model_name(name)}/"

    @classmethod
    def version_prefix(cls, name: str, version: int) -> str:
        return f"{cls.model_prefix(name)}versions/{int(version)}/"

    @classmethod
    def object_key(cls, name: str, version: int, filename: str) -> str:
        return cls.version_prefix(name, version) + filename

    @classmethod
    def alias_key(cls, name: str, alias: str) -> str:
        return f"{cls.model_prefix(name)}aliases/{check_alias(alias)}.json"

    # --- reading ------------------------------------------------------------------------------

    def _common_prefixes(self, prefix: str) -> Iterator[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for entry in page.get("CommonPrefixes", []):
                    yield entry["Prefix"][len(prefix) :].rstrip("/")
        except (ClientError, BotoCoreError) as error:
            raise RegistryError(
                f"cannot list {prefix}: {aws_reason(error)}", detail=f"s3://{self.bucket}/{prefix}: {error}"
            ) from error

    def list_models(self) -> list[str]:
        return sorted(p for p in self._common_prefixes(f"{ROOT}/") if _NAME.fullmatch(p))

    def list_versions(self, name: str) -> list[int]:
        found = self._common_prefixes(f"{self.model_prefix(name)}versions/")
        return sorted(int(v) for v in found if _DIGITS.fullmatch(v))

    def list_aliases(self, name: str) -> list[Alias]:
        prefix = f"{self.model_prefix(name)}aliases/"
        paginator = self.s3.get_paginator("list_objects_v2")
        names = [
            entry["Key"][len(prefix) : -len(".json")]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for entry in page.get("Contents", [])
            if entry["Key"].endswith(".json")
        ]
        aliases = [self.get_alias(name, alias) for alias in sorted(names)]
        return [a for a in aliases if a is not None]

    def _unreadable(self, key: str, error: BaseException) -> RegistryError:
        """The registry's answer to a failed read: the key and the service's error code for the
        client; the bucket and what the service said for the log."""
        return RegistryError(
            f"cannot read {key}: {aws_reason(error)}", detail=f"s3://{self.bucket}/{key}: {error}"
        )

    def _get_json(self, key: str) -> tuple[dict[str, Any], str, str | None] | None:
        """A JSON object with its ETag and S3 version id, or None when it does not exist."""
        found = self._get_json_bytes(key)
        return None if found is None else found[:3]

    def _get_json_bytes(self, key: str) -> tuple[dict[str, Any], str, str | None, bytes] | None:
        """``_get_json`` and the object's exact bytes (what a manifest signature covers)."""
        try:
            response = self.reads.get_object(Bucket=self.bucket, Key=key)
            raw = response["Body"].read()
        except ClientError as error:
            if _is_missing(error):
                return None
            raise self._unreadable(key, error) from error
        except BotoCoreError as error:  # a timeout, a dropped connection
            raise self._unreadable(key, error) from error
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            raise RegistryError(f"{key} is not valid JSON", code="malformed_document") from None
        if not isinstance(document, dict):
            raise RegistryError(f"{key} is not a JSON object", code="malformed_document")
        return document, str(response["ETag"]), response.get("VersionId"), raw

    def read_manifest_object(self, name: str, version: int) -> tuple[dict[str, Any], str | None]:
        """The manifest and the S3 version id of the object it was read from."""
        manifest, version_id, _ = self.read_manifest_bytes(name, version)
        return manifest, version_id

    def read_manifest_bytes(self, name: str, version: int) -> tuple[dict[str, Any], str | None, bytes]:
        """The manifest, its object's S3 version id and its exact bytes."""
        found = self._get_json_bytes(self.object_key(name, version, MANIFEST_NAME))
        if found is None:
            raise NotFound(
                f"model {name!r} has no version {version}", code="version_not_found", field="version"
            )
        return found[0], found[2], found[3]

    def check_signature(
        self, name: str, version: int, raw: bytes, manifest: dict[str, Any], publication: dict[str, Any]
    ) -> None:
        """With a verifier, refuse (``IntegrityError``) a manifest not signed by its key; without
        one, accept everything."""
        if self.verifier is not None:
            self.verifier.verify(name, int(version), raw, manifest, publication)

    def read_manifest(self, name: str, version: int) -> dict[str, Any]:
        return self.read_manifest_object(name, version)[0]

    def read_publication(self, name: str, version: int) -> dict[str, Any] | None:
        """The record written last by ``publish``; None while (or if) the publication is incomplete."""
        found = self._get_json(self.object_key(name, version, PUBLICATION_NAME))
        return None if found is None else found[0]

    def get_alias(self, name: str, alias: str) -> Alias | None:
        """The alias, None when it is not set; a document that is not JSON or not an alias (a
        ``version`` that is not a positive integer: ``true``, ``1.9``, ``"1"``) is a
        ``ModelUnavailable`` naming what is wrong, never a guess."""
        try:
            found = self._get_json(self.alias_key(name, alias))
        except RegistryError as error:
            if error.code != "malformed_document":
                raise
            raise ModelUnavailable(
                f"alias {alias!r} of model {name!r} is not a valid alias document: it is not a JSON object",
                code="invalid_alias_document",
            ) from None
        if found is None:
            return None
        document, etag, _ = found

        def bad(what: str) -> ModelUnavailable:
            return ModelUnavailable(
                f"alias {alias!r} of model {name!r} is not a valid alias document: {what}",
                code="invalid_alias_document",
            )

        version: Any = document.get("version")
        if not _positive_int(version):
            raise bad(f"'version' must be a positive integer, got {shown(version)}")
        previous: Any = document.get("previous")
        if previous is not None and not _positive_int(previous):
            raise bad(f"'previous' must be a positive integer or null, got {shown(previous)}")
        revision: Any = document.get("revision", 1)
        if not _positive_int(revision):
            raise bad(f"'revision' must be a positive integer, got {shown(revision)}")
        history = document.get("history", [])
        if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
            raise bad("'history' must be a list of objects")
        updated_at = document.get("updated_at", "")
        if not isinstance(updated_at, str):
            raise bad(f"'updated_at' must be a string, got {shown(updated_at)}")
        return Alias(
            name=name,
            alias=alias,
            version=int(version),
            previous=None if previous is None else int(previous),
            updated_at=updated_at,
            etag=etag,
            revision=int(revision),
            history=tuple(history),
        )

    def tags(self, name: str, version: int) -> dict[str, str]:
        """The model object's tags; a version whose model object is missing is not servable."""
        try:
            tags = self.reads.get_object_tagging(
                Bucket=self.bucket, Key=self.object_key(name, version, MODEL_FILE)
            )
        except ClientError as error:
            if _is_missing(error):
                raise NotFound(
                    f"model {name!r} version {version} has no model object",
                    code="version_not_found",
                    field="version",
                ) from error
            raise self._unreadable(self.object_key(name, version, MODEL_FILE), error) from error
        except BotoCoreError as error:
            raise self._unreadable(self.object_key(name, version, MODEL_FILE), error) from error
        return {tag["Key"]: tag["Value"] for tag in tags.get("TagSet", [])}

    def status(self, name: str, version: int) -> str:
        """The version's status tag (``active``, ``retired``; ``unknown`` when untagged)."""
        return self.tags(name, version).get("status", "unknown")

    def object_version_id(self, name: str, version: int, filename: str) -> str | None:
        """The S3 version id of the object's current version."""
        key = self.object_key(name, version, filename)
        try:
            found: str | None = self.reads.head_object(Bucket=self.bucket, Key=key).get("VersionId")
            return found
        except ClientError as error:
            if _is_missing(error):
                raise NotFound(f"{key} does not exist", code="object_missing") from error
            raise self._unreadable(key, error) from error

    def download(
        self, name: str, version: int, filename: str, destination: Path, *, part_bytes: int = PART_BYTES
    ) -> Downloaded:
        """The current object to ``destination``, hashed as it arrives: one ranged GET on the
        serving reader up to ``part_bytes``, parallel ranged GETs beyond (``maas.core.download``)."""
        key = self.object_key(name, version, filename)
        try:
            return ranged_download(self.reads, self.bucket, key, destination, part_bytes=part_bytes)
        except ClientError as error:
            if _is_missing(error):
                raise NotFound(f"{key} does not exist", code="object_missing") from error
            raise self._unreadable(key, error) from error
