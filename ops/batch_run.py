"""``maas batch run``: a model's batch-job state machine, executed here against local S3.

A DEVELOPMENT STAND-IN for AWS Step Functions, as ``maas serve`` is for API Gateway: it reads the
state machine's definition from ``template.yaml`` (the one deployed) and interprets the states it
uses: Task (``lambda:invoke``, with Parameters, ResultSelector, ResultPath, OutputPath, Retry),
Choice, and the Distributed Map (ItemReader over a CSV-with-header or JSON Lines object, the
ItemSelector, the ItemBatcher's item and byte limits, MaxConcurrency, ToleratedFailurePercentage,
ResultWriter). Each ``lambda:invoke`` calls the model function's real handler in this process with
the event Step Functions would send; batches run ``parallel`` at a time, each worker thread an
execution environment of its own. Differences from the service: Retry intervals are not waited,
and children are threads of one process (onnxruntime releases the GIL; JSON work does not).
"""

from __future__ import annotations

import copy
import csv
import functools
import importlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import yaml

from maas.core.errors import ConfigurationError, MaasError
from ops.local import REGION, LambdaContext, environment, function_environment
from ops.template import TEMPLATE, FunctionSpec, Intrinsic, _intrinsic, functions

ACCOUNT = "123456789012"
STAND_IN = "development stand-in for AWS Step Functions: production runs the real service"
Invoker = Callable[[FunctionSpec, dict[str, Any]], Any]


class StatesError(MaasError):
    """A state's failure as Step Functions names it: ``States.*`` or the Lambda error type."""

    code = "job_failed"

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"the job failed: {error}: {cause}")
        self.error = error
        self.cause = cause


@dataclass(frozen=True, slots=True)
class StateMachineSpec:
    logical_id: str
    name: str
    definition: dict[str, Any]
    function: FunctionSpec


class _FastLoader(yaml.CSafeLoader):
    """libyaml's parser with the template's short tags: the generated template is 4,000 lines,
    which PyYAML's pure-Python parser takes seconds to read."""


_FastLoader.add_multi_constructor("!", _intrinsic)


def state_machine_for_model(model: str, path: Path = TEMPLATE) -> StateMachineSpec:
    """The model's ``AWS::Serverless::StateMachine`` of ``template.yaml``, its substitutions applied."""
    with path.open() as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_FastLoader)
    specs = {spec.logical_id: spec for spec in functions(path, document)}
    for logical_id, resource in document.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = resource["Properties"]
        target = props.get("DefinitionSubstitutions", {}).get("Function")
        function_id = str(target.value).split(".")[0] if isinstance(target, Intrinsic) else ""
        spec = specs.get(function_id)
        if spec is None or spec.model_name != model:
            continue
        text = json.dumps(props["Definition"]).replace("${Function}", f"local:{function_id}")
        return StateMachineSpec(logical_id, f"maas-{model}-batch", json.loads(text), spec)
    known = sorted(s.model_name for s in specs.values() if s.model_name)
    raise ConfigurationError(f"template.yaml has no batch state machine for model {model!r}; models: {known}")


# --- JSONPath, as far as the definitions use it ----------------------------------------------------


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # one encoder: json.dumps(**options) makes one a call


@functools.lru_cache(maxsize=256)
def _parts(path: str) -> tuple[bool, tuple[str, ...]]:
    context = path.startswith("$$")
    return context, tuple(p for p in path[2 if context else 1 :].split(".") if p)


def _path(document: Any, path: str, context: dict[str, Any]) -> Any:
    in_context, parts = _parts(path)
    value = context if in_context else document
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            raise StatesError("States.Runtime", f"the JSONPath {path!r} matches nothing")
        value = value[part]
    return value


def _template(node: Any, document: Any, context: dict[str, Any]) -> Any:
    """A payload template: keys ending in ``.$`` take the value their path selects."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key.endswith(".$"):
                out[key[:-2]] = _path(document, str(value), context)
            else:
                out[key] = _template(value, document, context)
        return out
    if isinstance(node, list):
        return [_template(item, document, context) for item in node]
    return node


def _with_result(document: Any, result_path: str | None, result: Any) -> Any:
    if result_path is None:
        return document
    if result_path == "$":
        return result
    out = copy.deepcopy(document) if isinstance(document, dict) else {}
    target = out
    parts = result_path[2:].split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = result
    return out


def _matches(retrier: dict[str, Any], error: str) -> bool:
    names = retrier.get("ErrorEquals", [])
    return (
        error in names
        or "States.ALL" in names
        or ("States.TaskFailed" in names and error != "States.Timeout")
    )


# --- items -------------------------------------------------------------------------------------------


def read_items(s3: Any, parameters: dict[str, Any], reader: dict[str, Any]) -> Iterator[Any]:
    """What the ItemReader makes of an object: CSV rows as header-keyed strings, or parsed JSON lines."""
    extra = {"VersionId": parameters["VersionId"]} if parameters.get("VersionId") else {}
    body = s3.get_object(Bucket=parameters["Bucket"], Key=parameters["Key"], **extra)["Body"]
    text = io.TextIOWrapper(body, encoding="utf-8-sig", newline="")
    kind = reader.get("InputType")
    try:
        if kind == "JSONL":
            for number, line in enumerate(text, start=1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as error:
                        raise StatesError("States.ItemReaderFailed", f"line {number}: {error}") from None
        elif kind == "CSV" and reader.get("CSVHeaderLocation") == "FIRST_ROW":
            rows = csv.reader(text)
            header = next(rows, None) or []
            for number, record in enumerate(rows, start=2):
                if not record:
                    continue
                if len(record) != len(header):
                    raise StatesError(
                        "States.ItemReaderFailed",
                        f"row {number} has {len(record)} fields, the header {len(header)}",
                    )
                yield dict(zip(header, record, strict=True))
        else:
            raise StatesError("States.Runtime", f"this stand-in does not read {reader!r}")
    except UnicodeDecodeError as error:
        raise StatesError("States.ItemReaderFailed", f"not UTF-8: {error.reason}") from None


def batches(items: Iterator[Any], batcher: dict[str, Any], batch_input: Any) -> Iterator[dict[str, Any]]:
    """The ItemBatcher: at most MaxItemsPerBatch items and MaxInputBytesPerBatch bytes of input."""
    max_items = int(batcher.get("MaxItemsPerBatch") or 0) or None
    max_bytes = int(batcher.get("MaxInputBytesPerBatch") or 262_144)
    base = len(json.dumps({"Items": [], "BatchInput": batch_input}).encode())
    current: list[Any] = []
    size = base
    for item in items:
        item_bytes = len(_ENCODE(item).encode()) + 1
        if current and (
            size + item_bytes > max_bytes or (max_items is not None and len(current) >= max_items)
        ):
            yield {"Items": current, "BatchInput": batch_input}
            current, size = [], base
        if base + item_bytes > max_bytes:
            raise StatesError(
                "States.DataLimitExceeded", f"an item of {item_bytes} bytes exceeds the batch limit"
            )
        current.append(item)
        size += item_bytes
    if current:
        yield {"Items": current, "BatchInput": batch_input}


# --- the interpreter ---------------------------------------------------------------------------------


_ENVIRONMENTS = iter(range(1, 1 << 30))


def call_in_process(spec: FunctionSpec, payload: dict[str, Any], environments: threading.local) -> Any:
    """Lambda's invoke: the payload and the answer go through JSON. Each thread is an execution
    environment of its own: its own function instance and its own /tmp (``MODEL_CACHE_DIR``)."""
    instance = getattr(environments, spec.logical_id, None)
    if instance is None:
        instance = importlib.import_module(spec.module).create(spec.model_name)
        base = os.environ.get("MODEL_CACHE_DIR", "/tmp/maas-models")
        own = {**os.environ, "MODEL_CACHE_DIR": f"{base}/environment-{next(_ENVIRONMENTS)}"}
        instance.runtime.reset(environ=own)
        setattr(environments, spec.logical_id, instance)
    context = LambdaContext(
        function_name=spec.logical_id, memory_limit_in_mb=spec.memory_mb, timeout_s=spec.timeout_s
    )
    handler = getattr(instance, spec.handler)
    return json.loads(json.dumps(handler(json.loads(json.dumps(payload)), context)))


@dataclass
class Progress:
    """Batches done and failed, for the progress bar."""

    total: int = 0
    done: int = 0
    failed: int = 0
    rows: int = 0
    report: Callable[[Progress], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def batch(self, rows: int, *, failed: bool) -> None:
        with self.lock:
            self.done += 1
            self.failed += int(failed)
            self.rows += rows
            if self.report is not None:
                self.report(self)


class LocalStateMachine:
    def __init__(
        self,
        spec: StateMachineSpec,
        *,
        s3: Any | None = None,
        parallel: int = 1,
        invoker: Invoker | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.s3 = s3 or boto3.client("s3")
        self.parallel = max(1, parallel)
        self._environments = threading.local()
        self.invoker: Invoker = invoker or (
            lambda fn, payload: call_in_process(fn, payload, self._environments)
        )
        self.progress = progress or Progress()
        self.arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{spec.name}"

    def start(self, execution_input: Any) -> Any:
        """One execution to its end: its output, or ``StatesError`` naming why it failed."""
        name = uuid.uuid4().hex
        context = {
            "Execution": {
                "Id": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{self.spec.name}:{name}",
                "Name": name,
                "StartTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "Input": execution_input,
            },
            "StateMachine": {"Id": self.arn, "Name": self.spec.name},
        }
        return self._run(self.spec.definition, execution_input, context)

    def _run(self, machine: dict[str, Any], document: Any, context: dict[str, Any]) -> Any:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            kind = state["Type"]
            if kind == "Choice":
                name = self._choose(state, document, context)
                continue
            if kind == "Succeed":
                return document
            if kind == "Fail":
                raise StatesError(state.get("Error", "States.Failed"), state.get("Cause", ""))
            effective = _path(document, state.get("InputPath", "$"), context)
            if kind == "Task":
                result = self._task(state, effective, context)
            elif kind == "Map":
                result = self._map(state, effective, context)
            elif kind == "Pass":
                result = (
                    _template(state["Parameters"], effective, context) if "Parameters" in state else effective
                )
            else:
                raise StatesError("States.Runtime", f"this stand-in does not run {kind} states")
            if "ResultSelector" in state:
                result = _template(state["ResultSelector"], result, context)
            document = _with_result(document, state.get("ResultPath", "$"), result)
            document = _path(document, state.get("OutputPath", "$"), context)
            if state.get("End"):
                return document
            name = state["Next"]

    def _choose(self, state: dict[str, Any], document: Any, context: dict[str, Any]) -> str:
        for rule in state.get("Choices", []):
            value = _path(document, rule["Variable"], context)
            if "StringEquals" in rule and value == rule["StringEquals"]:
                return str(rule["Next"])
        if "Default" not in state:
            raise StatesError("States.NoChoiceMatched", f"no choice matched {state.get('Choices')}")
        return str(state["Default"])

    def _task(self, state: dict[str, Any], document: Any, context: dict[str, Any]) -> Any:
        if state["Resource"] != "arn:aws:states:::lambda:invoke":
            raise StatesError("States.Runtime", f"this stand-in does not run {state['Resource']}")
        parameters = _template(state.get("Parameters", {"Payload.$": "$"}), document, context)
        target = str(parameters["FunctionName"])
        if target != f"local:{self.spec.function.logical_id}":
            raise StatesError("States.Runtime", f"{target} is not this state machine's function")
        attempts: dict[int, int] = {}
        while True:
            try:
                payload = self.invoker(self.spec.function, parameters.get("Payload", {}))
                return {"ExecutedVersion": "live", "Payload": payload, "StatusCode": 200}
            except Exception as error:
                name = error.error if isinstance(error, StatesError) else type(error).__name__
                retry = next((i for i, r in enumerate(state.get("Retry", [])) if _matches(r, name)), None)
                if retry is None or attempts.get(retry, 0) >= int(
                    state["Retry"][retry].get("MaxAttempts", 3)
                ):
                    raise StatesError(name, str(error)) from error
                attempts[retry] = attempts.get(retry, 0) + 1  # the service waits IntervalSeconds here

    def _map(self, state: dict[str, Any], document: Any, context: dict[str, Any]) -> Any:
        reader = state["ItemReader"]
        parameters = _template(reader.get("Parameters", {}), document, context)
        items = read_items(self.s3, parameters, reader.get("ReaderConfig", {}))
        selector = state.get("ItemSelector")
        if selector is not None:
            items = (
                _template(selector, document, {**context, "Map": {"Item": {"Index": i, "Value": v}}})
                for i, v in enumerate(items)
            )
        batcher = state.get("ItemBatcher", {})
        batch_input = _template(batcher.get("BatchInput", {}), document, context)
        processor = state["ItemProcessor"]
        workers = min(self.parallel, int(state.get("MaxConcurrency") or self.parallel))
        succeeded: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        total = 0
        with ThreadPoolExecutor(workers) as pool:
            running: dict[Future[Any], dict[str, Any]] = {}
            for child in batches(iter(items), batcher, batch_input):
                total += 1
                self.progress.total = total
                while len(running) >= 2 * workers:  # read the file as fast as the children go
                    self._collect(running, succeeded, failed, block=True)
                running[pool.submit(self._run, processor, child, context)] = child
            while running:
                self._collect(running, succeeded, failed, block=True)
        tolerated = float(state.get("ToleratedFailurePercentage", 0))
        if total and 100.0 * len(failed) / total > tolerated:
            raise StatesError(
                "States.ExceedToleratedFailureThreshold", f"{len(failed)} of {total} batches failed"
            )
        writer = state.get("ResultWriter")
        if writer is None:
            return [record["Output"] for record in succeeded]
        return self._write_results(
            _template(writer.get("Parameters", {}), document, context), succeeded, failed
        )

    def _collect(
        self,
        running: dict[Future[Any], dict[str, Any]],
        succeeded: list[dict[str, Any]],
        failed: list[dict[str, Any]],
        *,
        block: bool,
    ) -> None:
        done, _ = wait(list(running), return_when=FIRST_COMPLETED) if block else (set(), set())
        for future in done:
            child = running.pop(future)
            record = {"Input": json.dumps(child), "Status": "SUCCEEDED"}
            try:
                record["Output"] = json.dumps(future.result())
                succeeded.append(record)
            except StatesError as error:
                failed.append({**record, "Status": "FAILED", "Error": error.error, "Cause": error.cause})
            self.progress.batch(len(child["Items"]), failed=record["Status"] == "FAILED")

    def _write_results(
        self, parameters: dict[str, Any], succeeded: list[dict[str, Any]], failed: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """What the ResultWriter leaves: ``<prefix>/<map run>/manifest.json`` and the result files."""
        run = str(uuid.uuid4())
        bucket, prefix = parameters["Bucket"], f"{str(parameters.get('Prefix', '')).rstrip('/')}/{run}"
        files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        for status, records in (("SUCCEEDED", succeeded), ("FAILED", failed)):
            if records:
                body = json.dumps(records).encode()
                key = f"{prefix}/{status}_0.json"
                self.s3.put_object(Bucket=bucket, Key=key, Body=body)
                files[status].append({"Key": key, "Size": len(body)})
        map_run = f"arn:aws:states:{REGION}:{ACCOUNT}:mapRun:{self.spec.name}/{run}"
        manifest = {"DestinationBucket": bucket, "MapRunArn": map_run, "ResultFiles": files}
        self.s3.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=json.dumps(manifest).encode())
        return {
            "MapRunArn": map_run,
            "ResultWriterDetails": {"Bucket": bucket, "Key": f"{prefix}/manifest.json"},
        }


def object_created_event(bucket: str, key: str, s3: Any | None = None) -> dict[str, Any]:
    """The EventBridge "Object Created" event S3 sends for an existing object (what starts a job)."""
    client = s3 or boto3.client("s3")
    head = client.head_object(Bucket=bucket, Key=key)
    obj: dict[str, Any] = {
        "key": key,
        "size": int(head["ContentLength"]),
        "etag": str(head["ETag"]).strip('"'),
    }
    if head.get("VersionId") and head["VersionId"] != "null":
        obj["version-id"] = head["VersionId"]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": obj, "reason": "PutObject"},
    }


@dataclass(frozen=True, slots=True)
class JobResult:
    output: dict[str, Any]
    batches: int
    seconds: float


def run_job(
    model: str,
    bucket: str,
    key: str,
    *,
    parallel: int = 1,
    overrides: dict[str, str] | None = None,
    invoker: Invoker | None = None,
    progress: Progress | None = None,
    template: Path = TEMPLATE,
) -> JobResult:
    """Run ``model``'s batch job on ``s3://bucket/key`` as Step Functions would, here (the state
    machine of ``template``)."""
    spec = state_machine_for_model(model, template)
    machine = LocalStateMachine(spec, parallel=parallel, invoker=invoker, progress=progress)
    values = function_environment(spec.function, {"DATA_BUCKET": bucket, **(overrides or {})})
    started = time.perf_counter()
    with environment(values):
        output = machine.start(object_created_event(bucket, key))
    return JobResult(dict(output), machine.progress.done, time.perf_counter() - started)


def bar(done: int, total: int, width: int = 30) -> str:
    filled = width if total <= 0 else min(width, round(width * done / total))
    share = 100.0 if total <= 0 else 100.0 * done / total
    return f"[{'#' * filled}{'.' * (width - filled)}] {share:5.1f}%"
