"""One exception hierarchy for the runtime, the registry and the tools.

Each error carries a stable machine-readable ``code`` and, for request errors, the ``field`` it is
about. How an error becomes an HTTP status is decided in one place: ``maas.http.error_response``.
"""

from __future__ import annotations


class MaasError(Exception):
    """Base of every error this project raises on purpose."""

    code = "internal_error"

    def __init__(
        self, message: str, *, code: str | None = None, field: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # What a service said (bucket, ARN, key id, role): logged and shown to operators, never
        # in an answer. ``message`` is built from our own facts only (names, versions, codes).
        self.detail = detail
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


class TransientError(MaasError):
    """A service, not the input, failed: a read timeout or a connection cut while an object was
    streamed. Never recorded against the data (no ``.error.json``): the invocation fails, so
    Lambda retries it and, after the last retry, its dead-letter queue holds the event."""

    code = "transient_error"


class JobIncomplete(MaasError):
    """A batch job whose counts do not add up (a batch missing, doubled, or on another version):
    its final step fails the job rather than report rows that were never scored."""

    code = "job_incomplete"


class TrainingError(MaasError):
    """Training or export could not produce a model worth publishing."""

    code = "training_error"


class ParityError(TrainingError):
    """The ONNX model does not answer like the source model: it must not be written."""

    code = "parity_failed"


ECHO_LIMIT = 100


def aws_reason(error: BaseException) -> str:
    """What a client may learn of an AWS failure: the service's error code (``AccessDenied``,
    ``NotFoundException``) or botocore's exception class, never its message, which names the
    bucket, the key's ARN, the caller's role and the account."""
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if isinstance(code, str) and code.replace(".", "").isalnum() and len(code) <= 64:
        return code
    return type(error).__name__


def error_detail(error: BaseException, *, causes: bool = True) -> str | None:
    """What the services said along ``error``'s chain of causes, for the log (never an answer):
    each ``MaasError.detail``, and (``causes``) the text of any other exception on the chain."""
    found: list[str] = []
    seen: BaseException | None = error
    while seen is not None and len(found) < 5:
        if isinstance(seen, MaasError):
            if seen.detail:
                found.append(seen.detail)
        elif causes and seen is not error:
            found.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__
    return " <- ".join(found) or None


def cut(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr`` of an input a message echoes, cut to about ``limit`` characters: a huge, deep or
    odd value (a 4,301-digit integer, a lone surrogate) can neither flood an answer nor fail it."""
    try:
        text = repr(value)
    except (RecursionError, ValueError, MemoryError):
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


def record_error(error: BaseException, field: str | None = None) -> MaasError:
    """Any exception raised while ONE record (a request, a row, a message) was parsed, validated or
    run, as that record's error: a code and a short message, so the rest of its batch goes on.

    Content that reaches past validation (a lone surrogate onnxruntime cannot encode, nesting
    deeper than the interpreter's stack, a NaN from a sampler) is the record's fault: a
    ``RequestError``. Anything else is an ``internal_error`` of that record alone.
    """
    if isinstance(error, MaasError):
        return error
    if isinstance(error, RecursionError):
        return RequestError("the input is nested too deeply", code="too_deeply_nested", field=field)
    if isinstance(error, UnicodeError):
        return RequestError(
            "the input holds text that is not valid Unicode (a lone surrogate?)",
            code="invalid_text",
            field=field,
        )
    if isinstance(error, ValueError | TypeError | ArithmeticError | IndexError | KeyError):
        return RequestError(
            f"the input cannot be processed: {type(error).__name__}: {cut(str(error))}",
            code="unprocessable_input",
            field=field,
        )
    return MaasError(f"internal error while processing the input: {type(error).__name__}")
