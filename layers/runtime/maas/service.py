"""Which version answers, and its loaded session: alias resolution with a TTL, over the store.

One ``ModelService`` lives per execution environment. Nothing here touches AWS until the first
request asks for a model, so importing a handler is cheap and safe in tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from maas.errors import ModelUnavailable, NotFound, Retired
from maas.predictor import Predictor
from maas.registry import STATUS_ACTIVE, ModelRegistry
from maas.settings import Settings
from maas.store import LocalVersion, ModelStore
from maas.tasks import Task, task_for


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A loaded version: what answers a request, and what the response names."""

    name: str
    version: int
    manifest: dict[str, Any]
    task: Task
    load_ms: float

    def describe(self) -> dict[str, Any]:
        return {
            "model_name": self.name,
            "model_version": str(self.version),
            "task": self.manifest.get("task"),
            "created_at": self.manifest.get("created_at"),
            "published_at": self.manifest.get("published_at"),
            "signature": {
                "inputs": [spec.to_dict() for spec in self.task.predictor.inputs],
                "outputs": [spec.to_dict() for spec in self.task.predictor.outputs],
            },
            "labels": self.manifest.get("labels", []),
            "metrics": self.manifest.get("metrics", {}),
            "framework": self.manifest.get("framework", {}),
        }


@dataclass
class _Resolved:
    version: int
    at: float
    wall: float = field(default_factory=time.time)


@dataclass
class ModelService:
    settings: Settings
    registry: ModelRegistry
    store: ModelStore
    clock: Callable[[], float] = time.monotonic
    _loaded: dict[int, ServedModel] = field(default_factory=dict)
    _status_read: dict[int, float] = field(default_factory=dict)
    _alias: _Resolved | None = None
    _unreported_load_ms: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings, s3_client: Any | None = None) -> ModelService:
        registry = ModelRegistry(settings.model_bucket, s3_client)
        return cls(settings=settings, registry=registry, store=ModelStore(registry, settings.model_cache_dir))

    @property
    def name(self) -> str:
        return self.settings.model_name

    def current(self) -> ServedModel:
        """The version that answers now: the pinned one, else the alias's (re-read after its TTL)."""
        version = self.settings.model_version or self._resolve_alias()
        return self.load(version)

    def _resolve_alias(self) -> int:
        now = self.clock()
        cached = self._alias
        if cached is not None and now - cached.at < self.settings.alias_ttl_seconds:
            return cached.version
        alias = self.registry.get_alias(self.name, self.settings.model_alias)
        if alias is None:
            raise ModelUnavailable(
                f"no usable version of model {self.name!r}: alias {self.settings.model_alias!r} is not set "
                f"in s3://{self.settings.model_bucket}",
                code="no_usable_version",
            )
        self._alias = _Resolved(alias.version, now)
        return alias.version

    def version(self, version: int) -> ServedModel:
        """A version asked for by number (the protocol's versioned routes), whatever the aliases say:
        an unknown version is ``NotFound``, a retired one ``Retired``. Its status is read again after
        the alias TTL, so retiring a loaded version stops it being served without a redeploy."""
        served = self.load(version, by_number=True)
        if self.clock() - self._status_read.get(version, 0.0) >= self.settings.alias_ttl_seconds:
            self._check_status(version, by_number=True)
        return served

    def _check_status(self, version: int, *, by_number: bool) -> None:
        """Refuse a version that is missing or not active, in the caller's terms."""
        try:
            status = self.registry.status(self.name, version)
        except NotFound as error:
            if by_number:
                raise NotFound(
                    f"model {self.name!r} has no version {version}", code="version_not_found", field="version"
                ) from error
            raise ModelUnavailable(
                f"no usable version of model {self.name!r}: version {version} "
                f"(alias {self.settings.model_alias!r}) is not in the registry",
                code="no_usable_version",
            ) from error
        self._status_read[version] = self.clock()
        if status != STATUS_ACTIVE:
            message = f"model {self.name!r} version {version} is {status} and is not served"
            if by_number:
                raise Retired(message, code="version_not_active", field="version")
            raise ModelUnavailable(message, code="version_not_active")

    def load(self, version: int, *, by_number: bool = False) -> ServedModel:
        """Download, verify and open a version once; later calls reuse the open session."""
        with self._lock:
            served = self._loaded.get(version)
            if served is not None:
                return served
            started = time.perf_counter()
            self._check_status(version, by_number=by_number)
            local: LocalVersion = self.store.fetch(self.name, version)
            predictor = Predictor(local.model_path, threads=self.settings.session_threads)
            served = ServedModel(
                name=self.name,
                version=version,
                manifest=local.manifest,
                task=task_for(predictor, local.manifest, local.directory),
                load_ms=(time.perf_counter() - started) * 1000.0,
            )
            self._loaded[version] = served
            self._unreported_load_ms = served.load_ms
            return served

    def refresh_after_restore(self) -> None:
        """After a SnapStart restore: forget an alias resolution older than its TTL (by wall
        clock: the monotonic clock of a restored environment says nothing about the snapshot's age)
        and open new connections."""
        if self._alias is not None and time.time() - self._alias.wall >= self.settings.alias_ttl_seconds:
            self._alias = None
        self.registry.reset_connections()

    def take_load_ms(self) -> float | None:
        """The duration of the last load, once: the metric is reported by the request that caused it."""
        load_ms, self._unreported_load_ms = self._unreported_load_ms, None
        return load_ms
