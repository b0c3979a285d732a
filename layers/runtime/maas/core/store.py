"""The model store: download a version's files to the cache directory, verify them, reuse them.

A file whose sha256 differs from the manifest is deleted and refused: it is never served. So is a
version without a publication record (its upload never finished), and one whose manifest or model
object has a different S3 version id than the publication recorded (replaced after publication,
even with equal bytes). With ``MANIFEST_SIGNING_KEY`` set, so is a version whose manifest has no
valid KMS signature from that key (``maas.core.signing``). A version already verified in this execution environment is not
downloaded again while warm.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maas.core.download import PART_BYTES
from maas.core.errors import IntegrityError
from maas.core.manifest import Manifest, ManifestError
from maas.core.observability import logger
from maas.core.registry import MANIFEST_NAME, MODEL_FILE, ModelRegistry, sha256_file


@dataclass(frozen=True, slots=True)
class LocalVersion:
    """A verified copy of one version: its manifest and the folder that holds its files."""

    name: str
    version: int
    manifest: dict[str, Any]
    directory: Path

    @property
    def size_bytes(self) -> int:
        """What this version occupies in /tmp (and, roughly, in memory once opened)."""
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    def artifact(self, filename: str) -> Path:
        return self.directory / filename

    @property
    def typed(self) -> Manifest:
        """The manifest as a ``Manifest`` (``fetch`` has already checked that it parses)."""
        return Manifest.from_dict(self.manifest)


def _check_version_id(
    name: str, version: int, filename: str, actual: str | None, recorded: dict[str, str | None]
) -> None:
    """The object must be the one the publication recorded, not a later replacement."""
    expected = recorded.get(filename)
    if actual != expected:
        # the ids go to the log only: an answer never shows S3 version ids
        logger.error(
            "object replaced after publication",
            extra={
                "model": name,
                "version": version,
                "file": filename,
                "s3_version_id": actual,
                "published_s3_version_id": expected,
            },
        )
        raise IntegrityError(
            f"{name} version {version}: {filename} was replaced after publication (its S3 version "
            "id is not the published one); refusing to serve it",
            code="object_replaced",
        )


@dataclass
class ModelStore:
    registry: ModelRegistry
    cache_dir: Path
    #: the size of each ranged GET of a large file (``maas.core.download``)
    part_bytes: int = PART_BYTES
    _verified: dict[tuple[str, int], LocalVersion] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, name: str, version: int) -> LocalVersion:
        key = (name, int(version))
        with self._lock:
            cached = self._verified.get(key)
            if cached is not None:
                return cached
            publication = self.registry.read_publication(name, version)
            if publication is None:
                raise IntegrityError(
                    f"{name} version {version} has no publication record: its upload is incomplete; "
                    "refusing to serve it",
                    code="version_incomplete",
                )
            recorded = {k: v.get("version_id") for k, v in publication.get("objects", {}).items()}
            manifest, manifest_vid, raw = self.registry.read_manifest_bytes(name, version)
            _check_version_id(name, int(version), MANIFEST_NAME, manifest_vid, recorded)
            # before anything else is downloaded: the manifest names what the files must be
            self.registry.check_signature(name, int(version), raw, manifest, publication)
            try:
                typed = Manifest.from_dict(manifest)
            except ManifestError as error:
                raise IntegrityError(
                    f"{name} version {version}: its {MANIFEST_NAME} is malformed: {error.message}; "
                    "refusing to serve it",
                    code="manifest_invalid",
                    field=error.field,
                ) from None
            directory = self.cache_dir / name / str(version)
            directory.mkdir(parents=True, exist_ok=True)
            for filename, meta in typed.files.items():
                self._ensure_file(name, int(version), filename, meta.sha256, directory, recorded)
            local = LocalVersion(name=name, version=int(version), manifest=manifest, directory=directory)
            self._verified[key] = local
            return local

    def _ensure_file(
        self,
        name: str,
        version: int,
        filename: str,
        sha256: str,
        directory: Path,
        recorded: dict[str, str | None],
    ) -> None:
        target = directory / filename
        if target.is_file() and sha256_file(target) == sha256:
            # left in /tmp by an earlier load in this environment and intact; S3 must still hold
            # the published object, not a replacement
            current = self.registry.object_version_id(name, version, filename)
            _check_version_id(name, version, filename, current, recorded)
            return
        partial = directory / f".{filename}.part"
        downloaded = self.registry.download(name, version, filename, partial, part_bytes=self.part_bytes)
        actual, version_id = downloaded.sha256, downloaded.version_id
        logger.info(
            "downloaded",
            extra={
                "model": name,
                "version": version,
                "file": filename,
                "bytes": downloaded.size,
                "seconds": round(downloaded.seconds, 3),
                "mb_per_s": round(downloaded.mb_per_s, 1),
                "parts": downloaded.parts,
            },
        )
        try:
            if actual != sha256:
                raise IntegrityError(
                    f"{name} version {version}: {filename} has sha256 {actual[:12]}…, the manifest says "
                    f"{sha256[:12]}…; refusing to serve it"
                )
            _check_version_id(name, version, filename, version_id, recorded)
        except IntegrityError:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, target)

    def evict(self, name: str, version: int) -> None:
        """Forget a version and remove its files from the cache directory."""
        with self._lock:
            self._verified.pop((name, int(version)), None)
            shutil.rmtree(self.cache_dir / name / str(version), ignore_errors=True)
