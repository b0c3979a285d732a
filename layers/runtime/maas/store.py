"""The model store: download a version's files to the cache directory, verify them, reuse them.

A file whose sha256 differs from the manifest is deleted and refused: it is never served. A
version already verified in this execution environment is not downloaded again while warm.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maas.errors import IntegrityError
from maas.registry import MODEL_FILE, ModelRegistry, sha256_file


@dataclass(frozen=True, slots=True)
class LocalVersion:
    """A verified copy of one version: its manifest and the folder that holds its files."""

    name: str
    version: int
    manifest: dict[str, Any]
    directory: Path

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    def artifact(self, filename: str) -> Path:
        return self.directory / filename


@dataclass
class ModelStore:
    registry: ModelRegistry
    cache_dir: Path
    _verified: dict[tuple[str, int], LocalVersion] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fetch(self, name: str, version: int) -> LocalVersion:
        key = (name, int(version))
        with self._lock:
            cached = self._verified.get(key)
            if cached is not None:
                return cached
            manifest = self.registry.read_manifest(name, version)
            directory = self.cache_dir / name / str(version)
            directory.mkdir(parents=True, exist_ok=True)
            expected = {MODEL_FILE: manifest.get("model", {}), **manifest.get("artifacts", {})}
            for filename, meta in expected.items():
                self._ensure_file(name, int(version), filename, str(meta.get("sha256", "")), directory)
            local = LocalVersion(name=name, version=int(version), manifest=manifest, directory=directory)
            self._verified[key] = local
            return local

    def _ensure_file(self, name: str, version: int, filename: str, sha256: str, directory: Path) -> None:
        target = directory / filename
        if target.is_file() and sha256_file(target) == sha256:
            return  # left in /tmp by an earlier load in this environment, and still intact
        partial = directory / f".{filename}.part"
        self.registry.download(name, version, filename, partial)
        actual = sha256_file(partial)
        if actual != sha256:
            partial.unlink(missing_ok=True)
            raise IntegrityError(
                f"{name} version {version}: {filename} has sha256 {actual[:12]}…, the manifest says "
                f"{sha256[:12]}…; refusing to serve it"
            )
        os.replace(partial, target)

    def evict(self, name: str, version: int) -> None:
        """Forget a version and remove its files from the cache directory."""
        with self._lock:
            self._verified.pop((name, int(version)), None)
            shutil.rmtree(self.cache_dir / name / str(version), ignore_errors=True)
