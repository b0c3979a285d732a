"""Which version answers, and its loaded session: alias resolution with a TTL, over the store.

One ``ModelService`` lives per execution environment. A model function serves its one model
(``MODEL_NAME``); the multi-model function serves any model in the registry through the same
service, its versions loaded on demand into the one byte-bounded cache. Nothing here touches AWS until the first
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

from maas.core.cache import ByteLRU
from maas.core.errors import ConfigurationError, ModelUnavailable, NotFound, RegistryError, Retired
from maas.core.memory import release_freed_memory
from maas.core.observability import logger
from maas.core.predictor import Predictor
from maas.core.registry import STATUS_ACTIVE, ModelRegistry
from maas.core.settings import Settings
from maas.core.store import LocalVersion, ModelStore
from maas.core.tasks import task_for
from maas.core.tasks.base import ServedTask


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A loaded version: what answers a request, and what the response names."""

    name: str
    version: int
    manifest: dict[str, Any]
    task: ServedTask
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


Key = tuple[str, int]


@dataclass
class ModelService:
    settings: Settings
    registry: ModelRegistry
    store: ModelStore
    clock: Callable[[], float] = time.monotonic
    _loaded: ByteLRU[Key, ServedModel] = field(init=False)
    _checked: dict[Key, float] = field(default_factory=dict)
    _aliases: dict[str, _Resolved] = field(default_factory=dict)
    _load_times: list[float] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._loaded = ByteLRU(
            self.settings.model_cache_bytes,
            on_evict=self._unload,
            max_entries=self.settings.model_cache_versions,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        s3_client: Any | None = None,
        kms_client: Any | None = None,
        *,
        light_reads: bool = False,
    ) -> ModelService:
        registry = ModelRegistry.from_settings(settings, s3_client, kms_client, light_reads=light_reads)
        return cls(settings=settings, registry=registry, store=ModelStore(registry, settings.model_cache_dir))

    @property
    def name(self) -> str:
        """The function's own model; the multi-model function has none."""
        if self.settings.model_name is None:
            raise NotFound(
                "this function serves many models: name one", code="model_not_found", field="model"
            )
        return self.settings.model_name

    def _pinned(self, name: str) -> int | None:
        """``MODEL_VERSION`` pins the function's own model only."""
        return self.settings.model_version if name == self.settings.model_name else None

    def current(self, name: str | None = None) -> ServedModel:
        """The version that answers now: the pinned one, else the alias's (re-read after its TTL)."""
        model = name or self.name
        version = self._pinned(model) or self._resolve_alias(model)
        return self.load(model, version)

    def _stale_limit(self) -> float:
        return self.settings.alias_ttl_seconds + self.settings.max_stale_seconds

    def _resolve_alias(self, name: str) -> int:
        now = self.clock()
        cached = self._aliases.get(name)
        if cached is not None and now - cached.at < self.settings.alias_ttl_seconds:
            return cached.version
        try:
            alias = self.registry.get_alias(name, self.settings.model_alias)
        except (RegistryError, ModelUnavailable) as error:
            if cached is not None and now - cached.at < self._stale_limit():
                logger.warning(
                    "alias refresh failed: serving the version resolved before",
                    extra={
                        "model": name,
                        "version": cached.version,
                        "age_s": round(now - cached.at, 1),
                        "error": error.to_dict(),
                    },
                )
                return cached.version
            raise ModelUnavailable(
                f"no usable version of model {name!r}: alias {self.settings.model_alias!r} cannot be "
                f"read ({error.message})",
                code=error.code if isinstance(error, ModelUnavailable) else "registry_unavailable",
            ) from error
        if alias is None:
            if self.settings.model_name is None and not self.registry.list_versions(name):
                raise NotFound(
                    f"unknown model {name!r}: the registry has no version of it",
                    code="model_not_found",
                    field="model",
                )
            raise ModelUnavailable(
                f"no usable version of model {name!r}: alias {self.settings.model_alias!r} is not set "
                "in the registry",
                code="no_usable_version",
            )
        self._aliases[name] = _Resolved(alias.version, now)
        return alias.version

    def version(self, name: str, version: int) -> ServedModel:
        """A version asked for by number (the protocol's versioned routes), whatever the aliases say:
        an unknown version is ``NotFound``, a retired one ``Retired``."""
        return self.load(name, version, by_number=True)

    def load(self, name: str, version: int, *, by_number: bool = False) -> ServedModel:
        """Download, verify and open a version once; later calls reuse the open session.

        The version's status is confirmed at the first load and again once per TTL, so a version
        retired while loaded stops being served, also when ``MODEL_VERSION`` pins it.
        """
        key = (name, version)
        with self._lock:
            now = self.clock()
            served = self._loaded.get(key)
            checked = self._checked.get(key)
            if served is not None and checked is not None and now - checked < self.settings.alias_ttl_seconds:
                return served
            started = time.perf_counter()
            try:
                self._confirm_active(name, version, by_number=by_number)
            except RegistryError as error:
                if served is not None and checked is not None and now - checked < self._stale_limit():
                    logger.warning(
                        "status refresh failed: serving the loaded version",
                        extra={"model": name, "version": version, "error": error.to_dict()},
                    )
                    return served
                raise ModelUnavailable(
                    f"model {name!r} version {version} cannot be checked: the registry cannot be read",
                    code="registry_unavailable",
                ) from error
            self._checked[key] = now
            if served is not None:
                return served
            if not self._loaded.admits(key, self._referenced()):
                raise ModelUnavailable(
                    f"model {name!r} version {version} cannot be loaded now: this environment holds "
                    f"{len(self._loaded)} versions (MODEL_CACHE_VERSIONS), every one of them in use",
                    code="cache_full",
                )
            local: LocalVersion = self.store.fetch(name, version)
            # opened on a thread while the task reads its own files (an LLM's tokenizer: see Predictor)
            predictor = Predictor(local.model_path, threads=self.settings.session_threads, in_background=True)
            try:
                task = task_for(predictor, local.manifest, local.directory)
                predictor.wait()
            except ConfigurationError as error:  # the version's fault, not the request's: a 503
                raise ModelUnavailable(
                    f"model {name!r} version {version} cannot be served: {error.message}",
                    code="version_unservable",
                ) from error
            release_freed_memory()  # what parsing and opening it freed (maas.core.memory)
            served = ServedModel(
                name=name,
                version=version,
                manifest=local.manifest,
                task=task,
                load_ms=(time.perf_counter() - started) * 1000.0,
            )
            self._loaded.put(key, served, local.size_bytes, protected=self._referenced())
            self._load_times.append(served.load_ms)
            logger.info(
                "version loaded",
                extra={"model": name, "version": version, "load_ms": round(served.load_ms, 1)},
            )
            return served

    def _confirm_active(self, name: str, version: int, *, by_number: bool = False) -> None:
        """Refuse a version that is missing or not active, in the caller's terms: for a version
        asked for by number (``by_number``), ``NotFound`` and ``Retired``; else ``ModelUnavailable``."""
        try:
            status = self.registry.status(name, version)
        except NotFound as error:
            self._loaded.pop((name, version))
            if by_number:
                raise NotFound(
                    f"model {name!r} has no version {version}", code="version_not_found", field="version"
                ) from error
            raise ModelUnavailable(
                f"no usable version of model {name!r}: version {version} "
                f"(alias {self.settings.model_alias!r}) is not in the registry",
                code="no_usable_version",
            ) from error
        if status != STATUS_ACTIVE:
            self._loaded.pop((name, version))
            pinned = " (pinned by MODEL_VERSION)" if self._pinned(name) == version else ""
            message = f"model {name!r} version {version}{pinned} is {status} and is not served"
            if by_number:
                raise Retired(message, code="version_not_active", field="version")
            raise ModelUnavailable(message, code="version_not_active")

    def _referenced(self) -> set[Key]:
        """Versions this environment is configured to answer with: never evicted for space."""
        referenced = {(name, resolved.version) for name, resolved in self._aliases.items()}
        if self.settings.model_name is not None and self.settings.model_version:
            referenced.add((self.settings.model_name, self.settings.model_version))
        return referenced

    def _unload(self, key: Key, _: ServedModel) -> None:
        """Evicted from the cache: drop the session (requests in flight keep theirs) and the files."""
        self._checked.pop(key, None)
        self.store.evict(*key)

    def loaded_versions(self, name: str | None = None) -> list[int]:
        """The versions of a model (the function's own by default) with an open session, least
        recently used first."""
        model = name or self.name
        with self._lock:
            return [version for loaded, version in self._loaded.keys() if loaded == model]

    def loaded(self) -> list[Key]:
        """Every (model, version) with an open session, least recently used first."""
        with self._lock:
            return self._loaded.keys()

    @property
    def cached_bytes(self) -> int:
        with self._lock:
            return self._loaded.total_bytes

    def refresh_after_restore(self) -> None:
        """After a SnapStart restore: forget alias resolutions older than their TTL (by wall
        clock: the monotonic clock of a restored environment says nothing about the snapshot's age)
        and open new connections."""
        now = time.time()
        for name, resolved in list(self._aliases.items()):
            if now - resolved.wall >= self.settings.alias_ttl_seconds:
                del self._aliases[name]
        self.registry.reset_connections()

    def drain_load_times(self) -> list[float]:
        """The durations of the loads since the last call: the entry point reports them once per
        invocation, with the invocation that caused them."""
        with self._lock:
            times, self._load_times = self._load_times, []
        return times
