"""Which version answers, and its loaded session: alias resolution with a TTL, over the store.

One ``ModelService`` lives per execution environment. Nothing here touches AWS until the first
request asks for a model, so importing a handler is cheap and safe in tests.

A warm environment re-reads its alias, and the status of the version it serves, after
``ALIAS_TTL_SECONDS``: a promotion, rollback or retirement takes effect without a redeploy. A
request holds its ``ServedModel`` until it answers, so a switch never changes the version under a
request in flight. Loaded versions live in a byte-bounded LRU cache; a version that is neither
the alias's nor the pinned one is unloaded (and its files removed from /tmp) when space is needed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from maas.cache import ByteLRU
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
    _loaded: ByteLRU[int, ServedModel] = field(init=False)
    _checked: dict[int, float] = field(default_factory=dict)
    _alias: _Resolved | None = None
    _unreported_load_ms: float | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._loaded = ByteLRU(self.settings.model_cache_bytes, on_evict=self._unload)

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
        an unknown version is ``NotFound``, a retired one ``Retired``."""
        return self.load(version, by_number=True)

    def load(self, version: int, *, by_number: bool = False) -> ServedModel:
        """Download, verify and open a version once; later calls reuse the open session.

        The version's status is confirmed at the first load and again once per TTL, so a version
        retired while loaded stops being served, also when ``MODEL_VERSION`` pins it.
        """
        with self._lock:
            now = self.clock()
            served = self._loaded.get(version)
            checked = self._checked.get(version)
            if served is not None and checked is not None and now - checked < self.settings.alias_ttl_seconds:
                return served
            started = time.perf_counter()
            self._confirm_active(version, by_number=by_number)
            self._checked[version] = now
            if served is not None:
                return served
            local: LocalVersion = self.store.fetch(self.name, version)
            predictor = Predictor(local.model_path, threads=self.settings.session_threads)
            served = ServedModel(
                name=self.name,
                version=version,
                manifest=local.manifest,
                task=task_for(predictor, local.manifest, local.directory),
                load_ms=(time.perf_counter() - started) * 1000.0,
            )
            self._loaded.put(version, served, local.size_bytes, protected=self._referenced())
            self._unreported_load_ms = served.load_ms
            return served

    def _confirm_active(self, version: int, *, by_number: bool = False) -> None:
        """Refuse a version that is missing or not active, in the caller's terms: for a version
        asked for by number (``by_number``), ``NotFound`` and ``Retired``; else ``ModelUnavailable``."""
        try:
            status = self.registry.status(self.name, version)
        except NotFound as error:
            self._loaded.pop(version)
            if by_number:
                raise NotFound(
                    f"model {self.name!r} has no version {version}", code="version_not_found", field="version"
                ) from error
            raise ModelUnavailable(
                f"no usable version of model {self.name!r}: version {version} "
                f"(alias {self.settings.model_alias!r}) is not in the registry",
                code="no_usable_version",
            ) from error
        if status != STATUS_ACTIVE:
            self._loaded.pop(version)
            pinned = " (pinned by MODEL_VERSION)" if self.settings.model_version == version else ""
            message = f"model {self.name!r} version {version}{pinned} is {status} and is not served"
            if by_number:
                raise Retired(message, code="version_not_active", field="version")
            raise ModelUnavailable(message, code="version_not_active")

    def _referenced(self) -> set[int]:
        """Versions this environment is configured to answer with: never evicted for space."""
        referenced = {self._alias.version} if self._alias is not None else set()
        if self.settings.model_version:
            referenced.add(self.settings.model_version)
        return referenced

    def _unload(self, version: int, _: ServedModel) -> None:
        """Evicted from the cache: drop the session (requests in flight keep theirs) and the files."""
        self._checked.pop(version, None)
        self.store.evict(self.name, version)

    def loaded_versions(self) -> list[int]:
        """The versions with an open session, least recently used first."""
        with self._lock:
            return self._loaded.keys()

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return self._loaded.total_bytes

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
