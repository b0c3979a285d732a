"""Per-environment state of one function, created lazily on the first request.

Importing a handler builds nothing that needs AWS or configuration; a missing setting becomes a
clear error on the first request instead of an import crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maas.core.errors import ConfigurationError, NotFound, shown
from maas.core.registry import check_model_name
from maas.core.service import ModelService
from maas.core.settings import Settings


class ModelRuntime:
    """A model function's state (``model_name``), or the multi-model function's (``multi_model``).

    ``light_reads``: the registry reads of a load go out as signed requests without an SDK
    client (``maas.core.s3_reads``), as the Lambda entry points ask; an injected client wins.
    """

    def __init__(
        self, model_name: str | None = None, *, multi_model: bool = False, light_reads: bool = False
    ) -> None:
        self._model_name = model_name
        self.multi_model = multi_model
        self.light_reads = light_reads
        self._environ: Mapping[str, str] | None = None
        self._s3_client: Any | None = None
        self._kms_client: Any | None = None
        self._settings: Settings | None = None
        self._service: ModelService | None = None
        self._data_s3: Any | None = None
        #: invocations handled since this environment started (or was restored): the entry counts
        self.invocations = 0

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env(self._model_name, self._environ, multi_model=self.multi_model)
        return self._settings

    @property
    def model_name(self) -> str:
        """The model this function serves (``MODEL_NAME``); the multi-model function names none."""
        name = self._model_name or ("" if self.multi_model else self.settings.model_name)
        return name or "multi_model"

    @property
    def metrics_name(self) -> str:
        """The model name metrics carry when no request named one; never raises."""
        try:
            return self.model_name
        except ConfigurationError:
            return "unknown"

    def prepare(self) -> None:
        """At init, what the first request would otherwise set up: the settings, the service and
        its registry's connection pool (Lambda gives the init phase its full CPU, and SnapStart
        snapshots it). A missing or wrong setting is left to the first request, which reports it."""
        try:
            service = self.service
        except ConfigurationError:
            return
        service.registry.prepare()

    def drain_load_times(self) -> list[float]:
        """The model loads since the last call (none when nothing was loaded yet)."""
        return [] if self._service is None else self._service.drain_load_times()

    @property
    def service(self) -> ModelService:
        if self._service is None:
            self._service = ModelService.from_settings(
                self.settings, self._s3_client, self._kms_client, light_reads=self.light_reads
            )
        return self._service

    def model_for(self, requested: str) -> str:
        """The model a request names, if this function serves it: its own, or (multi-model) any."""
        if self.multi_model:
            try:
                return check_model_name(requested)
            except NotFound:
                raise NotFound(
                    f"unknown model {shown(requested)}: model names are identifiers",
                    code="model_not_found",
                    field="model",
                ) from None
        own = self.model_name
        if requested != own:
            raise NotFound(
                f"this function serves model {own!r}, not {shown(requested)}",
                code="model_not_found",
                field="model",
            )
        return own

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
            if self._s3_client is None:
                import boto3  # the batch and queue paths only: an HTTP request never needs it

                self._data_s3 = boto3.client("s3")
            else:
                self._data_s3 = self._s3_client
        return self._data_s3

    def after_restore(self) -> None:
        """A SnapStart restore: a cold start for the caller, with stale state refreshed."""
        self.invocations = 0
        if self._s3_client is None:
            self._data_s3 = None  # a client made before the snapshot holds stale connections
        if self._service is not None:
            self._service.refresh_after_restore()

    @property
    def injected(self) -> bool:
        """Whether ``reset`` gave this runtime its environment or clients (a test's), rather than
        the process's: a local invoker resets it before answering with the process's own."""
        return self._environ is not None or self._s3_client is not None or self._kms_client is not None

    def reset(
        self,
        environ: Mapping[str, str] | None = None,
        s3_client: Any | None = None,
        kms_client: Any | None = None,
    ) -> None:
        """Forget everything loaded, as a new execution environment would (tests, local tools)."""
        self._environ = environ
        self._s3_client = s3_client
        self._kms_client = kms_client
        self._settings = None
        self._service = None
        self._data_s3 = None
        self.invocations = 0
