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
from maas.core.decode import check_instances, parse_json_object
from maas.core.errors import MaasError, RequestError
from maas.core.observability import logger, record_async_batch
from maas.core.runtime import ModelRuntime
from maas.core.service import ServedModel
from maas.core.tasks.base import GenerationRequest, Generator

RESULTS = "results"
WRITERS = 8
_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
    if isinstance(served.task, Generator):
        fields = {k: v for k, v in document.items() if k != "request_id"}
        generation = pipeline.decode_generation(served, fields, pipeline.stable_seed(request_id))
        return AsyncRequest(request_id, [], generation)
    instances = check_instances(document.get("instances"), max_batch)
    pipeline.decode(served, instances, "instances")
    return AsyncRequest(request_id, instances)


def result_key(model: str, request_id: str) -> str:
    return f"{RESULTS}/{model}/{request_id}.json"


def _answer(served: ServedModel, requests: list[AsyncRequest]) -> tuple[list[dict[str, Any]], float]:
    """Each request's answer: classifiers' instances in one ``session.run`` split back per request;
    a generator's requests one decoding loop each."""
    if not isinstance(served.task, Generator):
        groups, latency_ms = pipeline.predict_groups(served, [req.instances for req in requests])
        return [{"predictions": predictions} for predictions in groups], latency_ms
    answers: list[dict[str, Any]] = []
    total_ms = 0.0
    for request in requests:
        assert request.generation is not None  # parse_message checked it for a generator
        generated = pipeline.generate(served, request.generation)
        answers.append(generated.to_dict())
        total_ms += generated.latency_ms
    return answers, total_ms


def handle_sqs_event(event: dict[str, Any], context: Any, runtime: ModelRuntime) -> dict[str, Any]:
    """Validate every message, score the valid ones in one run, write their results, report the rest."""
    served = runtime.service.current(runtime.model_name)
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
    response: dict[str, Any] = dict(
        process_partial_response(event=event, record_handler=answer, processor=processor, context=context)
    )
    failed = len(response.get("batchItemFailures", []))
    record_async_batch(
        served.name,
        served.version,
        len(outcomes) - failed,
        failed,
        sum(req.size for req in valid.values()),
        latency_ms,
    )
    return response
