"""Asynchronous requests over SQS: one message is one request, answered in the data bucket.

A message body is ``{"request_id": "...", "instances": [...]}``; its answer goes to
``results/<model>/<request_id>.json`` with the model version. Every message is validated first,
then the valid ones of the batch are scored together in one ``session.run`` and split back.
Powertools' ``BatchProcessor`` reports the others as ``batchItemFailures``: a malformed or
invalid message fails alone, is retried, and reaches the dead-letter queue after
``maxReceiveCount`` receives, while the rest of its batch succeeds. The result object's content
depends only on the request and the model version, so a duplicate delivery rewrites it unchanged.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from maas.core import pipeline
from maas.core.deadline import deadline_for
from maas.core.decode import check_instances, parse_json_object
from maas.core.errors import MaasError, RequestError, record_error
from maas.core.observability import logger, record_async_batch
from maas.core.runtime import ModelRuntime
from maas.core.service import ServedModel
from maas.core.tasks.base import GenerationRequest, Generator

RESULTS = "results"
WRITERS = 8
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: no trailing newline


@dataclass(frozen=True, slots=True)
class AsyncRequest:
    request_id: str
    instances: list[Any]
    generation: GenerationRequest | None = None  # a text generator's checked request, instead of instances

    @property
    def size(self) -> int:
        """Instances scored, or sequences generated, for this request."""
        return (
            int(self.generation.num_return_sequences) if self.generation is not None else len(self.instances)
        )


def parse_message(
    body: str, served: ServedModel, max_batch: int, deadline: float | None = None
) -> AsyncRequest:
    """A message body as a request, validated against the model; a ``RequestError`` says why not."""
    document = parse_json_object(body, "the message body")
    request_id = document.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        raise RequestError(
            "request_id must be 1-128 letters, digits, '.', '_' or '-' (it names the result object)",
            code="invalid_request_id",
            field="request_id",
        )
    if isinstance(served.task, Generator):
        fields = {k: v for k, v in document.items() if k != "request_id"}
        generation = pipeline.decode_generation(served, fields, pipeline.stable_seed(request_id), deadline)
        return AsyncRequest(request_id, [], generation)
    instances = check_instances(document.get("instances"), max_batch)
    pipeline.decode(served, instances, "instances")
    return AsyncRequest(request_id, instances)


def result_key(model: str, request_id: str) -> str:
    return f"{RESULTS}/{model}/{request_id}.json"


def _answer(
    served: ServedModel, requests: list[AsyncRequest]
) -> tuple[list[dict[str, Any] | MaasError], float]:
    """Each request's answer, or its error: classifiers' instances in one ``session.run`` split
    back per request (a failed shared run is retried request by request); a generator's requests
    one decoding loop each. Whatever one request raises is that request's error alone."""
    if not isinstance(served.task, Generator):
        groups, latency_ms = pipeline.predict_groups(served, [req.instances for req in requests])
        return [g if isinstance(g, MaasError) else {"predictions": g} for g in groups], latency_ms
    answers: list[dict[str, Any] | MaasError] = []
    total_ms = 0.0
    for request in requests:
        assert request.generation is not None  # parse_message checked it for a generator
        try:
            generated = pipeline.generate(served, request.generation)
        except Exception as error:  # e.g. a sampler's ValueError: this request's error
            answers.append(record_error(error, "instances"))
            continue
        answers.append(generated.to_dict())
        total_ms += generated.latency_ms
    return answers, total_ms


def _parse_all(
    records: list[SQSRecord], served: ServedModel, max_batch: int, deadline: float | None = None
) -> dict[str, AsyncRequest | MaasError]:
    """Each distinct message's request, or why it is refused, in the batch's order.

    Deterministic with duplicates: a ``messageId`` seen before in the batch is the same delivery
    and shares the first one's outcome. A second message with the same ``request_id`` shares the
    first one's result if it asks the same thing; if it asks something else it is refused
    (``duplicate_request_id``) and so retried after this batch, when it is answered on its own.
    """
    outcomes: dict[str, AsyncRequest | MaasError] = {}
    owners: dict[str, AsyncRequest] = {}
    for record in records:
        message_id = record.message_id
        if message_id in outcomes:
            continue
        try:
            request = parse_message(record.body, served, max_batch, deadline)
        except Exception as error:  # not only a MaasError: whatever this message raises is its own
            outcomes[message_id] = record_error(error, "body")
            continue
        first = owners.setdefault(request.request_id, request)
        if first is not request and first != request:
            outcomes[message_id] = RequestError(
                f"request_id {request.request_id!r} is already asked by another message of this "
                "batch with other content: retried after it",
                code="duplicate_request_id",
                field="request_id",
            )
            continue
        outcomes[message_id] = first
    return outcomes


def handle_sqs_event(event: dict[str, Any], context: Any, runtime: ModelRuntime) -> dict[str, Any]:
    """Validate every message, score the valid ones in one run, write their results, report the rest."""
    served = runtime.service.current(runtime.model_name)
    bucket = runtime.data_bucket
    raw_records = event.get("Records")
    records = [SQSRecord(raw) for raw in (raw_records if isinstance(raw_records, list) else [])]
    outcomes = _parse_all(records, served, runtime.settings.max_batch, deadline_for(context, http=False))
    unique: dict[str, AsyncRequest] = {}  # one answer per request_id, in the batch's order
    for outcome in outcomes.values():
        if isinstance(outcome, AsyncRequest):
            unique.setdefault(outcome.request_id, outcome)
    answered, latency_ms = _answer(served, list(unique.values()))
    results = dict(zip(unique, answered, strict=True))

    def write(request: AsyncRequest, answer: dict[str, Any]) -> str:
        key = result_key(served.name, request.request_id)
        document = {
            "request_id": request.request_id,
            "model_name": served.name,
            "model_version": str(served.version),
            **answer,
        }
        runtime.data_s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=json.dumps(document, allow_nan=False).encode("utf-8"),
            ContentType="application/json",
        )
        return key

    # The result objects are written side by side: ten sequential PUTs would cost more than the run.
    ready = {rid: ans for rid, ans in results.items() if not isinstance(ans, MaasError)}
    with ThreadPoolExecutor(max_workers=max(1, min(WRITERS, len(ready)))) as pool:
        written = {rid: pool.submit(write, unique[rid], ans) for rid, ans in ready.items()}

    def answer(record: SQSRecord) -> str:
        outcome = outcomes[record.message_id]
        if isinstance(outcome, AsyncRequest):
            result = results[outcome.request_id]
            if not isinstance(result, MaasError):
                return written[outcome.request_id].result()  # a failed write fails this message alone
            outcome = result
        logger.warning(
            "async request refused; SQS will retry it, then dead-letter it",
            extra={"message_id": record.message_id, "error": outcome.to_dict()},
        )
        raise outcome

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response: dict[str, Any] = dict(
        process_partial_response(event=event, record_handler=answer, processor=processor, context=context)
    )
    failed = len(response.get("batchItemFailures", []))
    record_async_batch(
        served.name,
        served.version,
        len(records) - failed,
        failed,
        sum(unique[rid].size for rid in ready),
        latency_ms,
    )
    return response
