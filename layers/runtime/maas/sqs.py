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

from maas.errors import MaasError, RequestError
from maas.http import parse_json_object
from maas.observability import logger, record_async_batch
from maas.runtime import ModelRuntime
from maas.scoring import generate, generator_of, parse_generation, score_groups, stable_seed
from maas.service import ServedModel
from maas.tasks import check_instances

RESULTS = "results"
WRITERS = 8
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True, slots=True)
class AsyncRequest:
    request_id: str
    instances: list[Any]
    generation: Any | None = None  # a text generator's checked request, instead of instances

    @property
    def size(self) -> int:
        """Instances scored, or sequences generated, for this request."""
        return (
            int(self.generation.num_return_sequences) if self.generation is not None else len(self.instances)
        )


def parse_message(body: str, served: ServedModel, max_batch: int) -> AsyncRequest:
    """A message body as a request, validated against the model; a ``RequestError`` says why not."""
    document = parse_json_object(body, "the message body")
    request_id = document.get("request_id")
    if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
        raise RequestError(
            "request_id must be 1-128 letters, digits, '.', '_' or '-' (it names the result object)",
            code="invalid_request_id",
            field="request_id",
        )
    generator = generator_of(served.task)
    if generator is not None:
        fields = {k: v for k, v in document.items() if k != "request_id"}
        return AsyncRequest(request_id, [], parse_generation(generator, fields, stable_seed(request_id)))
    instances = check_instances(document.get("instances"), max_batch)
    served.task.prepare(instances, "instances")
    return AsyncRequest(request_id, instances)


def result_key(model: str, request_id: str) -> str:
    return f"{RESULTS}/{model}/{request_id}.json"


def _answer(served: ServedModel, requests: list[AsyncRequest]) -> tuple[list[dict[str, Any]], float]:
    """Each request's answer: classifiers' instances in one ``session.run`` split back per request;
    a generator's requests one decoding loop each."""
    generator = generator_of(served.task)
    if generator is None:
        groups, latency_ms = score_groups(served.task, [req.instances for req in requests])
        return [{"predictions": predictions} for predictions in groups], latency_ms
    answers: list[dict[str, Any]] = []
    total_ms = 0.0
    for request in requests:
        answer, latency_ms = generate(generator, request.generation)
        answers.append(answer)
        total_ms += latency_ms
    return answers, total_ms


def handle_sqs_event(event: dict[str, Any], context: Any, runtime: ModelRuntime) -> dict[str, Any]:
    """Validate every message, score the valid ones in one run, write their results, report the rest."""
    served = runtime.service.current()
    bucket = runtime.data_bucket
    outcomes: dict[str, AsyncRequest | MaasError] = {}
    for raw in event.get("Records", []):
        record = SQSRecord(raw)
        try:
            outcomes[record.message_id] = parse_message(record.body, served, runtime.settings.max_batch)
        except MaasError as error:
            outcomes[record.message_id] = error
    valid = {mid: req for mid, req in outcomes.items() if isinstance(req, AsyncRequest)}
    answers, latency_ms = _answer(served, list(valid.values()))

    def write(request: AsyncRequest, answer: dict[str, Any]) -> str:
        key = result_key(served.name, request.request_id)
        document = {
            "request_id": request.request_id,
            "model_name": served.name,
            "model_version": str(served.version),
            **answer,
        }
        runtime.data_s3.put_object(
            Bucket=bucket, Key=key, Body=json.dumps(document).encode("utf-8"), ContentType="application/json"
        )
        return key

    # The result objects are written side by side: ten sequential PUTs would cost more than the run.
    with ThreadPoolExecutor(max_workers=max(1, min(WRITERS, len(valid)))) as pool:
        written = {
            mid: pool.submit(write, req, ans) for (mid, req), ans in zip(valid.items(), answers, strict=True)
        }

    def answer(record: SQSRecord) -> str:
        outcome = outcomes[record.message_id]
        if isinstance(outcome, MaasError):
            logger.warning(
                "async request refused; SQS will retry it, then dead-letter it",
                extra={"message_id": record.message_id, "error": outcome.to_dict()},
            )
            raise outcome
        return written[record.message_id].result()  # a failed write fails this message alone

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response: dict[str, Any] = process_partial_response(
        event=event, record_handler=answer, processor=processor, context=context
    )
    failed = len(response.get("batchItemFailures", []))
    record_async_batch(
        served.name,
        served.version,
        len(outcomes) - failed,
        failed,
        sum(req.size for req in valid.values()),
        latency_ms,
        cold_start=runtime.take_cold_start(),
        load_ms=runtime.take_load_ms(),
    )
    return response
