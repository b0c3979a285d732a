"""One exception hierarchy for the runtime, the registry and the tools.

Each error carries a stable machine-readable ``code`` and, for request errors, the ``field`` it is
about. How an error becomes an HTTP status is decided in one place: ``maas.http.error_response``.
"""

from __future__ import annotations


class MaasError(Exception):
    """Base of every error this project raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, str | None]:
        return {"code": self.code, "message": self.message, "field": self.field}


class ConfigurationError(MaasError):
    """The function or tool is configured wrongly (environment variables, arguments)."""

    code = "configuration_error"


class RequestError(MaasError):
    """The caller sent something this model cannot take; the message says which field and why."""

    code = "invalid_request"


class PayloadTooLarge(RequestError):
    """The request body is larger than the function accepts."""

    code = "body_too_large"


class UnsupportedMediaType(RequestError):
    """The body's content type is not one the route reads (JSON)."""

    code = "unsupported_media_type"


class UnreadableInput(RequestError):
    """A batch input object that cannot be read at all: unknown format, not gzip, not UTF-8."""

    code = "unreadable_input"


class NotFound(MaasError):
    """A model, version, alias or route that does not exist."""

    code = "not_found"


class Retired(MaasError):
    """A version asked for by number that exists but was retired: it is never served again."""

    code = "version_not_active"


class ModelUnavailable(MaasError):
    """The model exists (or is asked for) but no version can be served right now."""

    code = "model_unavailable"


class IntegrityError(ModelUnavailable):
    """A downloaded file does not match what the manifest promised: it is never served."""

    code = "integrity_error"


class Conflict(MaasError):
    """A write lost a race (version number taken, alias moved meanwhile) or breaks a rule."""

    code = "conflict"


class RegistryError(MaasError):
    """The registry bucket answered with something unexpected (permissions, missing bucket)."""

    code = "registry_error"


class TrainingError(MaasError):
    """Training or export could not produce a model worth publishing."""

    code = "training_error"


class ParityError(TrainingError):
    """The ONNX model does not answer like the source model: it must not be written."""

    code = "parity_failed"
