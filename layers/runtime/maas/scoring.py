"""Validate instances one by one, score the valid ones together: one ``session.run`` per batch.

Both event sources need the same two steps: find the instances (or requests) that are invalid,
each with its own reason, without letting them spoil the rest; then run the rest through the
model at once and hand each caller back its own slice of the answers.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from maas.errors import RequestError
from maas.tasks import Feeds, Task


@dataclass(slots=True)
class Checked:
    """The outcome of validating a batch: feeds for the valid instances and a reason for each other."""

    feeds: Feeds | None
    valid: list[int]
    errors: dict[int, RequestError] = field(default_factory=dict)


def _single(error: RequestError, name: str) -> RequestError:
    """An error about ``name[0]`` of a one-item batch is about ``name`` itself."""
    where = f"{name}[0]"
    return type(error)(
        error.message.replace(where, name),
        code=error.code,
        field=name if error.field == where else error.field,
    )


def check_each(task: Task, instances: Sequence[Any], name: str = "instance") -> Checked:
    """Validate a batch at once (the common case: all valid), else each instance on its own."""
    batch = list(instances)
    try:
        return Checked(task.prepare(batch, name), list(range(len(batch))))
    except RequestError:
        pass
    valid: list[int] = []
    errors: dict[int, RequestError] = {}
    for index, instance in enumerate(batch):
        try:
            task.prepare([instance], name)
        except RequestError as error:
            errors[index] = _single(error, name)
        else:
            valid.append(index)
    feeds = task.prepare([batch[i] for i in valid], name) if valid else None
    return Checked(feeds, valid, errors)


def run(task: Task, feeds: Feeds) -> tuple[list[dict[str, Any]], float]:
    """One ``session.run``: the predictions and its duration in milliseconds."""
    started = time.perf_counter()
    predictions = task.predict(feeds)
    return predictions, (time.perf_counter() - started) * 1000.0


def score_groups(
    task: Task, groups: Sequence[Sequence[Any]], name: str = "instances"
) -> tuple[list[list[dict[str, Any]]], float]:
    """Score the instances of many already-validated requests in one ``session.run``, split back."""
    flat = [instance for group in groups for instance in group]
    if not flat:
        return [[] for _ in groups], 0.0
    predictions, latency_ms = run(task, task.prepare(flat, name))
    answers: list[list[dict[str, Any]]] = []
    start = 0
    for group in groups:
        answers.append(predictions[start : start + len(group)])
        start += len(group)
    return answers, latency_ms


# --- text generators: one request is one decoding loop, not one row of a batch ------------------


def generator_of(task: Task) -> Any | None:
    """The task itself when it generates text (``parse``, ``encode``, ``generate``), else None.

    A generator's request is a prompt with decoding parameters, and answering it takes one
    ``session.run`` per new token; its requests are therefore answered one by one.
    """
    return (
        task if all(callable(getattr(task, name, None)) for name in ("parse", "encode", "generate")) else None
    )


def stable_seed(*parts: object) -> int:
    """A sampling seed derived from what names the request, so a redelivery samples the same text."""
    return zlib.crc32("/".join(str(part) for part in parts).encode("utf-8"))


def parse_generation(generator: Any, request: Any, default_seed: int) -> Any:
    """A generation request (an object, or a bare prompt string), fully checked before any run.

    Without a ``seed`` of its own it gets ``default_seed``: an S3 row or an SQS message may be
    delivered twice, and its answer must then be the same text, not another sample.
    """
    body = {"prompt": request} if isinstance(request, str) else request
    if not isinstance(body, dict):
        raise RequestError(
            f"a generation request must be an object or a prompt string, got {type(request).__name__}",
            code="invalid_type",
            field="instance",
        )
    parsed = generator.parse({"seed": default_seed, **body})
    generator.encode(parsed.prompt)
    return parsed


def generate(generator: Any, request: Any) -> tuple[dict[str, Any], float]:
    """The continuations of one checked request, and the decoding time in milliseconds."""
    started = time.perf_counter()
    continuations = generator.generate(request)
    return {"prompt": request.prompt, "continuations": continuations}, (
        time.perf_counter() - started
    ) * 1000.0
