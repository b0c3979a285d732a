"""Per-environment state of one model function, created lazily on the first request.

Importing a handler builds nothing that needs AWS or configuration; a missing setting becomes a
clear error on the first request instead of an import crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3

from maas import snapstart
from maas.errors import ConfigurationError
from maas.service import ModelService
from maas.settings import Settings


class ModelRuntime:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._environ: Mapping[str, str] | None = None
        self._s3_client: Any | None = None
        self._settings: Settings | None = None
        self._service: ModelService | None = None
        self._data_s3: Any | None = None
        self._cold = True
        snapstart.register_hooks(self)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env(self.model_name, self._environ)
        return self._settings

    @property
    def service(self) -> ModelService:
        if self._service is None:
            self._service = ModelService.from_settings(self.settings, self._s3_client)
        return self._service

    @property
    def data_bucket(self) -> str:
        """The bucket of batch inputs, outputs and async results (``DATA_BUCKET``)."""
        bucket = self.settings.data_bucket
        if not bucket:
            raise ConfigurationError(
                "DATA_BUCKET is not set: the function has nowhere to write results", field="DATA_BUCKET"
            )
        return bucket

    @property
    def data_s3(self) -> Any:
        """The S3 client for the data bucket: the injected one, else boto3's default chain."""
        if self._data_s3 is None:
            self._data_s3 = self._s3_client if self._s3_client is not None else boto3.client("s3")
        return self._data_s3

    def take_cold_start(self) -> bool:
        """True for the first invocation this execution environment handles, then False."""
        cold, self._cold = self._cold, False
        return cold

    def take_load_ms(self) -> float | None:
        """How long the model load this invocation caused took, if it caused one."""
        return None if self._service is None else self._service.take_load_ms()

    def after_restore(self) -> None:
        """A SnapStart restore: a cold start for the caller, with stale state refreshed."""
        self._cold = True
        if self._s3_client is None:
            self._data_s3 = None  # a client made before the snapshot holds stale connections
        if self._service is not None:
            self._service.refresh_after_restore()

    def reset(self, environ: Mapping[str, str] | None = None, s3_client: Any | None = None) -> None:
        """Forget everything loaded, as a new execution environment would (tests, local tools)."""
        self._environ = environ
        self._s3_client = s3_client
        self._settings = None
        self._service = None
        self._data_s3 = None
        self._cold = True
