"""Signed manifests: a version is served only if its manifest's exact bytes carry a valid KMS
signature from the function's key (``MANIFEST_SIGNING_KEY``).

``publish`` signs the SHA-256 digest of the manifest object's bytes as stored with an asymmetric
KMS key (``ECDSA_SHA_256``, ``MessageType="DIGEST"``: any manifest size, one KMS call) and writes
the signature into the publication record. A bucket writer can delete and recreate every object of
a version, publication record included, but cannot sign: the substitute is refused. The signed
manifest names its model and version, so a genuine signature copied to another version is refused
too. Verification uses the configured key, never the key id a record claims.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from maas.core.errors import IntegrityError, RegistryError, aws_reason

SIGNING_ALGORITHM = "ECDSA_SHA_256"
MESSAGE_TYPE = "DIGEST"
#: the publication record's field that holds the signature
SIGNATURE_FIELD = "manifest_signature"


def manifest_digest(raw: bytes) -> bytes:
    """What is signed: the SHA-256 digest of the manifest object's exact bytes."""
    return hashlib.sha256(raw).digest()


def signature_record(key_id: str, signature: bytes, raw: bytes) -> dict[str, str]:
    """The publication record's ``signature`` entry."""
    return {
        "key_id": key_id,
        "algorithm": SIGNING_ALGORITHM,
        "message_type": MESSAGE_TYPE,
        "manifest_sha256": hashlib.sha256(raw).hexdigest(),
        "value": base64.b64encode(signature).decode("ascii"),
    }


class ManifestVerifier:
    """Verifies manifest signatures with KMS ``Verify`` against one key. The client is created
    on first use, or injected (tests pass moto's)."""

    def __init__(self, key_id: str, kms_client: Any | None = None) -> None:
        self.key_id = key_id
        self._kms = kms_client
        self._owns_client = kms_client is None

    @property
    def kms(self) -> Any:
        if self._kms is None:
            import boto3  # only a function that checks signatures needs it

            self._kms = boto3.client("kms")
        return self._kms

    def reset_connections(self) -> None:
        if self._owns_client:
            self._kms = None

    def verify(
        self, name: str, version: int, raw: bytes, manifest: dict[str, Any], publication: dict[str, Any]
    ) -> None:
        """Return if ``raw`` (the manifest of ``name`` version ``version``) is signed by the key;
        raise ``IntegrityError`` (``signature_missing`` / ``signature_invalid``) if not, and
        ``RegistryError`` when KMS cannot be asked (that is not the version's fault)."""
        entry = publication.get(SIGNATURE_FIELD)
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
            raise IntegrityError(
                f"{name} version {version} has no manifest signature and this function requires one "
                "(MANIFEST_SIGNING_KEY is set); refusing to serve it",
                code="signature_missing",
            )
        try:
            signature = base64.b64decode(entry["value"], validate=True)
        except (binascii.Error, ValueError):
            signature = b""
        if not signature or manifest.get("name") != name or manifest.get("version") != version:
            self._invalid(name, version, entry, "malformed, or the signed manifest is of another version")
        try:
            response = self.kms.verify(
                KeyId=self.key_id,
                Message=manifest_digest(raw),
                MessageType=MESSAGE_TYPE,
                Signature=signature,
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in {"KMSInvalidSignatureException", "ValidationException"}:
                self._invalid(name, version, entry, code)
            raise self._unverifiable(name, version, error) from error
        except BotoCoreError as error:
            raise self._unverifiable(name, version, error) from error
        if response.get("SignatureValid") is not True:
            self._invalid(name, version, entry, "SignatureValid is false")

    def _unverifiable(self, name: str, version: int, error: BaseException) -> RegistryError:
        """KMS could not be asked: its error code for the client; the key's ARN, the role and the
        account that KMS's message names go to the log only."""
        return RegistryError(
            f"cannot verify the manifest signature of {name} v{version}: KMS answered {aws_reason(error)}",
            code="signature_unverifiable",
            detail=f"key {self.key_id}: {error}",
        )

    def _invalid(self, name: str, version: int, entry: dict[str, Any], why: str) -> NoReturn:
        # imported here: the registry imports this module, and observability reads its settings
        # from the environment on import (tools set it after importing the registry)
        from maas.core.observability import logger

        # the key ids go to the log only, like S3 version ids
        logger.error(
            "manifest signature invalid",
            extra={
                "model": name,
                "version": version,
                "why": why,
                "claimed_key_id": entry.get("key_id"),
                "key_id": self.key_id,
            },
        )
        raise IntegrityError(
            f"{name} version {version}: its manifest is not signed by this function's signing key "
            "(modified or replaced after publication); refusing to serve it",
            code="signature_invalid",
        )
