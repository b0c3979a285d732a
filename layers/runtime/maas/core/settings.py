"""Configuration from environment variables, read once into a frozen object."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from maas.core.errors import ConfigurationError

DEFAULT_ALIAS = "production"
DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
DEFAULT_CACHE_VERSIONS = 32  # open sessions per environment, whatever their size
DEFAULT_MAX_STALE_SECONDS = 300.0  # five default alias TTLs


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}", field=name) from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {value}", field=name)
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}", field=name) from None
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative, got {value}", field=name)
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """What one function needs to know to serve its model (``model_name``), or, for the
    multi-model function (``model_name`` None), any model of the registry."""

    model_name: str | None
    model_bucket: str
    data_bucket: str | None = None
    model_alias: str = DEFAULT_ALIAS
    model_version: int | None = None
    alias_ttl_seconds: float = 60.0
    #: how long past its TTL a warm function keeps serving what it resolved when the registry
    #: cannot be read (S3 throttling, a malformed alias document); then it answers 503
    max_stale_seconds: float = DEFAULT_MAX_STALE_SECONDS
    model_cache_dir: Path = Path(tempfile.gettempdir()) / "maas-models"
    model_cache_bytes: int = DEFAULT_CACHE_BYTES
    model_cache_versions: int = DEFAULT_CACHE_VERSIONS
    max_batch: int = 256
    max_body_bytes: int = 1_048_576
    session_threads: int = 1
    batch_chunk_rows: int = 256
    #: the KMS key (id, ARN or alias) whose signature a version's manifest must carry; None: no check
    manifest_signing_key: str | None = None

    @classmethod
    def from_env(
        cls,
        model_name: str | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        multi_model: bool = False,
    ) -> Settings:
        """Read the settings; ``model_name`` (given by the caller) wins over ``MODEL_NAME``. The
        multi-model function has no model of its own and ignores both."""
        env = os.environ if environ is None else environ
        name = None if multi_model else (model_name or env.get("MODEL_NAME", ""))
        if name is not None and not name:
            raise ConfigurationError(
                "MODEL_NAME is not set: a model function must name the model it serves", field="MODEL_NAME"
            )
        bucket = env.get("MODEL_BUCKET", "")
        if not bucket:
            raise ConfigurationError(
                "MODEL_BUCKET is not set: the function cannot find its registry", field="MODEL_BUCKET"
            )
        pinned = env.get("MODEL_VERSION", "")
        return cls(
            model_name=name,
            model_bucket=bucket,
            data_bucket=env.get("DATA_BUCKET") or None,
            model_alias=env.get("MODEL_ALIAS") or DEFAULT_ALIAS,
            model_version=_int(env, "MODEL_VERSION", 0) if pinned and name else None,
            alias_ttl_seconds=_float(env, "ALIAS_TTL_SECONDS", 60.0),
            max_stale_seconds=_float(env, "MAX_STALE_SECONDS", DEFAULT_MAX_STALE_SECONDS),
            model_cache_dir=Path(env.get("MODEL_CACHE_DIR") or Path(tempfile.gettempdir()) / "maas-models"),
            model_cache_bytes=_int(env, "MODEL_CACHE_BYTES", DEFAULT_CACHE_BYTES),
            model_cache_versions=_int(env, "MODEL_CACHE_VERSIONS", DEFAULT_CACHE_VERSIONS),
            max_batch=_int(env, "MAX_BATCH", 256),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1_048_576),
            session_threads=_int(env, "SESSION_THREADS", 1),
            batch_chunk_rows=_int(env, "BATCH_CHUNK_ROWS", 256),
            manifest_signing_key=env.get("MANIFEST_SIGNING_KEY") or None,
        )
