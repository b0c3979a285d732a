"""One inference lifecycle for every adapter: resolve → decode → infer → encode, timed here.

After KServe's data plane: the plain HTTP routes, the Open Inference Protocol, S3 batch files
and SQS requests all call these functions, so validation, the ``session.run`` and its timing
happen in one place. The served version's task type decides what it answers: a ``Classifier``
predicts, a ``Generator`` generates, and asking one for the other's verb is a 400 naming the
verb the model takes.

Batch adapters need two more steps, also here: validate instances one by one so that an invalid
one does not spoil the rest, then score the valid ones together in one ``session.run`` and hand
each caller back its own slice.
"""

from __future__ import annotations

import math
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from maas.core.errors import MaasError, NotFound, RequestError, record_error, shown
from maas.core.observability import logger
from maas.core.runtime import ModelRuntime
from maas.core.service import ServedModel
from maas.core.tasks.base import Classifier, Continuation, Feeds, GenerationRequest, Generator

_VERSION = re.compile(r"[0-9]{1,18}")  # ASCII digits: str.isdigit() takes "²", which int() refuses


def parse_version(raw: str) -> int:
    """A version in a path is a registry version number; anything else names no version."""
    if not _VERSION.fullmatch(raw) or int(raw) < 1:
        raise NotFound(
            f"version {shown(raw)} does not exist: versions are numbers from 1",
            code="version_not_found",
            field="version",
        )
    return int(raw)


def resolve(runtime: ModelRuntime, model: str, version: str | None = None) -> ServedModel:
    """The version that answers a request for ``model``: the alias's (or the pinned one), or the
    version the path names. A model this function does not serve is a 404."""
    name = runtime.model_for(model)
    if version is None:
        return runtime.service.current(name)
    return runtime.service.version(name, parse_version(version))


def wrong_verb(served: ServedModel, asked: str) -> RequestError:
    task = served.task
    return RequestError(
        f"model {served.name!r} is a {task.name!r} model: it does not {asked}; "
        f"POST /models/{served.name}/{task.verb} instead",
        code="wrong_route",
        field="path",
    )


def classifier(served: ServedModel) -> Classifier:
    """The version's task, if it predicts; else a 400 that names the verb it takes."""
    if not isinstance(served.task, Classifier):
        raise wrong_verb(served, "predict")
    return served.task


def for_verb(served: ServedModel, verb: str) -> Classifier:
    """The version's batch task, if its plain route is ``verb`` (``predict`` or ``embed``); else a
    400 that names the route it takes."""
    if not isinstance(served.task, Classifier) or served.task.verb != verb:
        raise wrong_verb(served, "predict" if verb == "predict" else "embed text")
    return served.task


def generator(served: ServedModel) -> Generator:
    """The version's task, if it generates text; else a 400 that names the verb it takes."""
    if not isinstance(served.task, Generator):
        raise wrong_verb(served, "generate text")
    return served.task


# --- classifiers -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scored:
    """Predictions of one ``session.run``, and how long it took."""

    predictions: list[dict[str, Any]]
    latency_ms: float

    @property
    def labels(self) -> list[str]:
        return [str(p["label"]) for p in self.predictions if "label" in p]


def decode(served: ServedModel, instances: list[Any], field: str = "instances") -> Feeds:
    """Validate instances against the version's signature and build its feeds (a 400 names the field)."""
    return classifier(served).prepare(instances, field)


def _finite(value: Any) -> bool:
    """Whether a prediction holds only finite numbers: RFC 8259 JSON has no NaN or Infinity."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(item) for item in value)
    return True


def non_finite_output(field: str) -> RequestError:
    """The error of a row the model answered with NaN or infinity (an input driven to overflow):
    that row is refused, never written as ``NaN``, which strict JSON parsers reject whole."""
    return RequestError(
        f"the model answered {field} with a non-finite number (NaN or infinity), which JSON cannot "
        "carry: its input drives the model out of range",
        code="non_finite_output",
        field=field,
    )


def infer(served: ServedModel, feeds: Feeds, field: str = "instances") -> Scored:
    """Run the session on checked feeds and encode one prediction per row: the one timed step.
    A row answered with NaN or infinity is a ``non_finite_output`` error naming it."""
    task = classifier(served)
    started = time.perf_counter()
    predictions = task.predict(feeds)
    elapsed = (time.perf_counter() - started) * 1000.0
    bad = next((i for i, p in enumerate(predictions) if not _finite(p)), None)
    if bad is not None:
        raise non_finite_output(f"{field}[{bad}]")
    return Scored(predictions, elapsed)


def run_outputs(
    served: ServedModel, feeds: Feeds, outputs: Sequence[str]
) -> tuple[dict[str, np.ndarray], float]:
    """Run the session for the named graph outputs (a tensor client's answer), timed."""
    classifier(served)
    started = time.perf_counter()
    results = served.task.run_outputs(feeds, list(outputs))
    elapsed = (time.perf_counter() - started) * 1000.0
    for name, array in results.items():
        if array.dtype.kind in "fc" and array.size and not np.all(np.isfinite(array)):
            rows = np.asarray(~np.isfinite(array)).reshape(array.shape[0], -1).any(axis=1)
            raise non_finite_output(f"row {int(np.argmax(rows))} of output {name!r}")
    return results, elapsed


def predict(served: ServedModel, instances: list[Any], field: str = "instances") -> Scored:
    """decode → infer → encode for one request."""
    return infer(served, decode(served, instances, field), field)


@dataclass(slots=True)
class Checked:
    """The outcome of validating a batch: feeds for the valid instances and a reason for each other."""

    feeds: Feeds | None
    valid: list[int]
    errors: dict[int, MaasError] = field(default_factory=dict)


def _single(error: MaasError, name: str) -> MaasError:
    """An error about ``name[0]`` of a one-item batch is about ``name`` itself."""
    where = f"{name}[0]"
    found = error.field or ""
    return type(error)(
        error.message.replace(where, name),
        code=error.code,
        field=name + found[len(where) :] if found.startswith(where) else error.field,
    )


def decode_each(served: ServedModel, instances: Sequence[Any], name: str = "instance") -> Checked:
    """Validate a batch at once (the common case: all valid), else each instance on its own.

    Any exception while one instance is checked (not only a ``RequestError``: a ``RecursionError``
    from a deeply nested one) is that instance's error; an empty batch has no feeds at all.
    """
    task = classifier(served)
    batch = list(instances)
    if not batch:
        return Checked(None, [])
    try:
        return Checked(task.prepare(batch, name), list(range(len(batch))))
    except Exception:  # each instance is checked alone below, and told why
        pass
    valid: list[int] = []
    errors: dict[int, MaasError] = {}
    for index, instance in enumerate(batch):
        try:
            task.prepare([instance], name)
        except Exception as error:  # one instance's failure is its own
            errors[index] = _single(record_error(error, f"{name}[0]"), name)
        else:
            valid.append(index)
    feeds = task.prepare([batch[i] for i in valid], name) if valid else None
    return Checked(feeds, valid, errors)


@dataclass(slots=True)
class Answered:
    """Each instance of a batch: its prediction, or its error (by index), and the run time."""

    predictions: dict[int, dict[str, Any]]
    errors: dict[int, MaasError]
    latency_ms: float


def score_each(served: ServedModel, instances: Sequence[Any], name: str = "instance") -> Answered:
    """Validate each instance and score the valid ones in one ``session.run``.

    Should that run fail (content validation could not foresee), the valid instances are run one
    by one: every instance that can be answered is, and only one whose own run fails is refused.
    Nothing valid, no run: an empty or all-invalid batch never reaches the model.
    """
    batch = list(instances)
    checked = decode_each(served, batch, name)
    errors = dict(checked.errors)
    if checked.feeds is None:
        return Answered({}, errors, 0.0)
    try:
        scored = infer(served, checked.feeds, name)
    except Exception as error:  # retried record by record below
        logger.warning(
            "a batched session.run failed: its instances are run one by one",
            extra={"model": served.name, "instances": len(checked.valid), "error": type(error).__name__},
        )
    else:
        answers = dict(zip(checked.valid, scored.predictions, strict=True))
        return Answered(answers, errors, scored.latency_ms)
    task = classifier(served)
    answers = {}
    total_ms = 0.0
    for index in checked.valid:
        try:
            one = infer(served, task.prepare([batch[index]], name), name)
        except Exception as error:  # this instance alone fails
            errors[index] = _single(record_error(error, f"{name}[0]"), name)
        else:
            answers[index] = one.predictions[0]
            total_ms += one.latency_ms
    return Answered(answers, dict(sorted(errors.items())), total_ms)


def predict_groups(
    served: ServedModel, groups: Sequence[Sequence[Any]], name: str = "instances"
) -> tuple[list[list[dict[str, Any]] | MaasError], float]:
    """Score the instances of many already-validated requests in one ``session.run``, split back.

    Should the shared run fail, each request is run on its own: a request whose own run fails gets
    its error, and the others their predictions.
    """
    flat = [instance for group in groups for instance in group]
    if not flat:
        return [[] for _ in groups], 0.0
    try:
        scored = predict(served, flat, name)
    except Exception as error:  # retried request by request below
        logger.warning(
            "a batched session.run failed: its requests are run one by one",
            extra={"model": served.name, "requests": len(groups), "error": type(error).__name__},
        )
    else:
        answers: list[list[dict[str, Any]] | MaasError] = []
        start = 0
        for group in groups:
            answers.append(scored.predictions[start : start + len(group)])
            start += len(group)
        return answers, scored.latency_ms
    answers = []
    total_ms = 0.0
    for group in groups:
        if not group:
            answers.append([])
            continue
        try:
            one = predict(served, list(group), name)
        except Exception as error:  # this request alone fails
            answers.append(record_error(error, name))
        else:
            answers.append(one.predictions)
            total_ms += one.latency_ms
    return answers, total_ms


# --- generators: one request is one decoding loop, not one row of a batch ----------------------


@dataclass(frozen=True, slots=True)
class Generated:
    """The sequences generated for one prompt, and the decoding time."""

    request: GenerationRequest
    sequences: list[Continuation]
    latency_ms: float

    @property
    def continuations(self) -> list[str]:
        return [sequence.text for sequence in self.sequences]

    @property
    def tokens(self) -> int:
        """Tokens generated, all sequences together."""
        return sum(sequence.tokens for sequence in self.sequences)

    @property
    def prompt_tokens(self) -> int | None:
        """The prompt's length in tokens, for a task that tokenises it (a causal LM)."""
        ids = getattr(self.request, "prompt_ids", None)
        return None if ids is None else len(ids)

    def to_dict(self) -> dict[str, Any]:
        """The answer of a batch row or a queued request (the plain route adds the parameters)."""
        answer: dict[str, Any] = {"prompt": self.request.prompt, "continuations": self.continuations}
        answer["finish_reasons"] = [sequence.finish_reason for sequence in self.sequences]
        answer["completion_tokens"] = [sequence.tokens for sequence in self.sequences]
        if self.prompt_tokens is not None:
            answer["prompt_tokens"] = self.prompt_tokens
        return answer


def stable_seed(*parts: object) -> int:
    """A sampling seed derived from what names the request, so a redelivery samples the same text."""
    return zlib.crc32("/".join(str(part) for part in parts).encode("utf-8"))


def decode_generation(
    served: ServedModel, request: Any, default_seed: int | None = None, deadline: float | None = None
) -> GenerationRequest:
    """A generation request (an object, or a bare prompt string), fully checked before any run.

    Without a ``seed`` of its own it gets ``default_seed``: an S3 row or an SQS message may be
    delivered twice, and its answer must then be the same text, not another sample. ``deadline``
    (a ``time.monotonic()`` instant, see ``maas.core.deadline``) is when generation must stop.
    """
    task = generator(served)
    body = {"prompt": request} if isinstance(request, str) else request
    if not isinstance(body, dict):
        raise RequestError(
            f"a generation request must be an object or a prompt string, got {type(request).__name__}",
            code="invalid_type",
            field="instance",
        )
    return task.parse(body if default_seed is None else {"seed": default_seed, **body}, deadline)


def generate(served: ServedModel, request: GenerationRequest) -> Generated:
    """Decode the continuations of one checked request: the one timed step of a generator."""
    task = generator(served)
    started = time.perf_counter()
    sequences = task.generate(request)
    return Generated(request, sequences, (time.perf_counter() - started) * 1000.0)
