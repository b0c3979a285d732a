"""A causal LM published to the registry and served by every adapter: ``/models/{m}/generate``, the
Open Inference Protocol's infer with a BYTES prompt, S3 batch files, a Distributed Map job and SQS.

The two tiny decoders (gemma3 and llama, made and imported by the real export path once per
session) are published to a moto server; each adapter's answer is checked against the task's own
``complete`` on the version folder, which the unit tests check against PyTorch.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest

from maas.core.errors import Conflict
from maas.core.predictor import Predictor
from maas.core.tasks import task_for
from maas.core.tasks.causal_lm import CausalLM, Completion
from maas.entry.model import create as create_model_function
from ops.batch_run import LocalStateMachine, object_created_event, state_machine_for_model
from ops.event_sources import s3_put_event
from ops.lifecycle import Lifecycle
from ops.local import LambdaContext, create_bucket, environment, function_environment
from ops.registry_admin import RegistryAdmin
from tests.conftest import body_of, load_event

MODELS = "maas-llm-models"
DATA = "maas-llm-data"
PROMPTS = ["Call me Ishmael.", "The whale", "naïve café 日本語 😀"]


@dataclass
class Served:
    environ: dict[str, str]
    names: dict[str, str]
    folders: dict[str, Path]

    def function(self, arch: str) -> Any:
        """A fresh model function (``maas.entry.model``) for the architecture's published model."""
        function = create_model_function(self.names[arch])
        function.runtime.reset(environ=self.environ)
        return function

    def task(self, arch: str) -> CausalLM:
        folder = self.folders[arch]
        task = task_for(
            Predictor(folder / "model.onnx"), json.loads((folder / "manifest.json").read_text()), folder
        )
        assert isinstance(task, CausalLM)
        return task

    def completions(self, arch: str, body: dict[str, Any]) -> list[Completion]:
        task = self.task(arch)
        return task.complete(task.parse(body))

    def expected(self, arch: str, body: dict[str, Any]) -> list[str]:
        return [c.text for c in self.completions(arch, body)]


@pytest.fixture(scope="module")
def served(
    moto_endpoint: str, tiny_llms: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    create_bucket(MODELS)
    create_bucket(DATA)
    lifecycle = Lifecycle(RegistryAdmin(MODELS))
    names = {arch: lifecycle.publish(folder, alias="production").name for arch, folder in tiny_llms.items()}
    cache = tmp_path_factory.mktemp("llm-cache")
    yield Served(
        {"MODEL_BUCKET": MODELS, "DATA_BUCKET": DATA, "MODEL_CACHE_DIR": str(cache)}, names, tiny_llms
    )


def call(function: Any, event: dict[str, Any], timeout_s: int = 30) -> Any:
    return function.lambda_handler(event, LambdaContext(function_name="llm", timeout_s=timeout_s))


def http_event(path: str, body: Any) -> dict[str, Any]:
    """An API Gateway (payload 2.0) POST to ``path``, from the stored generate event."""
    event = copy.deepcopy(load_event("moby_gen", "generate.json"))
    event.update(rawPath=path, routeKey=f"POST {path}")
    event["requestContext"].update(routeKey=f"POST {path}")
    event["requestContext"]["http"]["path"] = path
    event["body"], event["isBase64Encoded"] = json.dumps(body), False
    return event


def generate(served: Served, arch: str, body: Any, timeout_s: int = 30) -> tuple[int, dict[str, Any]]:
    name = served.names[arch]
    response = call(served.function(arch), http_event(f"/models/{name}/generate", body), timeout_s)
    return response["statusCode"], body_of(response)


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_generate_answers_greedy_and_sampled_continuations_with_counts_and_finish_reasons(
    served: Served, arch: str
) -> None:
    greedy = {"prompt": PROMPTS[0], "max_new_tokens": 12, "temperature": 0}
    status, body = generate(served, arch, greedy)
    assert status == 200, body
    assert (body["model_name"], body["model_version"]) == (served.names[arch], "1")
    assert body["continuations"] == served.expected(arch, greedy)
    task = served.task(arch)
    assert body["prompt_tokens"] == len(task.tokenize(PROMPTS[0]))
    assert body["completion_tokens"] == [12] and body["finish_reasons"] == ["length"]
    assert body["parameters"]["max_new_tokens"] == 12 and body["parameters"]["temperature"] == 0
    # max_length counts the prompt too: the same answer
    _, same = generate(
        served, arch, {"prompt": PROMPTS[0], "max_length": body["prompt_tokens"] + 12, "temperature": 0}
    )
    assert same["continuations"] == body["continuations"]
    sampled = {"prompt": PROMPTS[1], "max_new_tokens": 10, "num_return_sequences": 3, "seed": 5, "top_p": 0.9}
    status, first = generate(served, arch, sampled)
    assert status == 200 and len(first["continuations"]) == 3
    assert first["continuations"] == generate(served, arch, sampled)[1]["continuations"]
    assert first["continuations"] == served.expected(arch, sampled)


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"prompt": "whale " * 400}, "prompt", "prompt_too_long"),
        ({"prompt": "x", "max_new_tokens": 256}, "max_new_tokens", "context_exceeded"),
        ({"prompt": "x", "temperature": float("nan")}, "temperature", "out_of_range"),
        ({"prompt": "x", "top_p": 1e400}, "top_p", "out_of_range"),
        ({"prompt": "x", "repetition_penalty": -1}, "repetition_penalty", "out_of_range"),
        ({"prompt": "x", "stop": ["a"] * 1000}, "stop", "too_many_stops"),
        ({"prompt": "lone \ud800 surrogate"}, "prompt", "invalid_text"),
        ({"prompt": "nul \x00 inside"}, "prompt", "invalid_text"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_never_a_500(
    served: Served, body: dict[str, Any], field: str, code: str
) -> None:
    status, answer = generate(served, "llama", body)
    assert status == 400, answer
    assert (answer["error"]["field"], answer["error"]["code"]) == (field, code), answer


def test_the_deadline_of_a_nearly_spent_invocation_answers_what_it_has(served: Served) -> None:
    # 1 s left, less the 1 s margin: the deadline has passed when the first token is chosen
    status, body = generate(
        served, "gemma3", {"prompt": PROMPTS[0], "max_new_tokens": 50, "temperature": 0}, 1
    )
    assert status == 200, body
    assert body["finish_reasons"] == ["time"] and body["completion_tokens"] == [1]
    _, full = generate(served, "gemma3", {"prompt": PROMPTS[0], "max_new_tokens": 50, "temperature": 0})
    assert full["finish_reasons"] == ["length"] and full["continuations"][0].startswith(
        body["continuations"][0]
    )


def test_the_protocol_takes_a_bytes_prompt_and_answers_texts_reasons_and_counts(served: Served) -> None:
    name = served.names["llama"]
    request = {
        "id": "llm-1",
        "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": [PROMPTS[2]]}],
        "parameters": {"max_new_tokens": 8, "temperature": 0, "num_return_sequences": 2},
    }
    response = call(served.function("llama"), http_event(f"/v2/models/{name}/infer", request))
    assert response["statusCode"] == 200, response["body"]
    body = body_of(response)
    outputs = {o["name"]: o for o in body["outputs"]}
    expected = served.completions(
        "llama", {"prompt": PROMPTS[2], "max_new_tokens": 8, "temperature": 0, "n": 2}
    )
    texts = [c.text for c in expected]
    assert outputs["text"] == {"name": "text", "shape": [2], "datatype": "BYTES", "data": texts}
    assert outputs["finish_reason"]["data"] == [c.finish_reason for c in expected]
    counts = [c.tokens for c in expected]
    assert outputs["completion_tokens"] == {
        **outputs["completion_tokens"],
        "datatype": "INT64",
        "data": counts,
    }
    request["parameters"] = {"temperature": "hot"}
    response = call(served.function("llama"), http_event(f"/v2/models/{name}/infer", request))
    refusal = body_of(response)  # the protocol's error shape: a message naming the field, and a code
    assert response["statusCode"] == 400 and refusal["code"] == "invalid_type"
    assert refusal["error"].startswith("parameters.temperature: temperature must be a number"), refusal


def jsonl(rows: list[Any]) -> bytes:
    return ("\n".join(json.dumps(row) for row in rows) + "\n").encode()


ROWS: list[Any] = [
    {"prompt": PROMPTS[0], "max_new_tokens": 6, "temperature": 0},
    PROMPTS[1],  # a bare prompt: the defaults, sampled with a seed derived from the row
    {"prompt": PROMPTS[2], "max_new_tokens": 4, "temperature": 0, "stop": ["zzz"]},
    {"prompt": "x", "temperature": -1},
    {"prompt": "whale " * 400, "max_new_tokens": 2},
]


def check_lines(served: Served, lines: list[dict[str, Any]]) -> None:
    """Every row answered once: the valid ones like the task, the bad ones with their error."""
    assert [line["line"] for line in lines] == [1, 2, 3, 4, 5]
    for line, row in zip(lines[:3:2], ROWS[:3:2], strict=True):
        assert line["prediction"]["continuations"] == served.expected("gemma3", row)
        assert line["prediction"]["finish_reasons"] == ["length"]
    bare = lines[1]["prediction"]
    assert len(bare["continuations"]) == 1 and bare["completion_tokens"][0] >= 1
    assert [line["error"] for line in lines[3:]] == ["out_of_range", "prompt_too_long"]
    assert all(line["prediction"] is None for line in lines[3:])


def test_an_s3_batch_file_of_prompts_is_answered_row_by_row_and_again_identically(served: Served) -> None:
    s3 = boto3.client("s3")
    name = served.names["gemma3"]
    key = f"inputs/{name}/prompts.jsonl"
    s3.put_object(Bucket=DATA, Key=key, Body=jsonl(ROWS))
    event = s3_put_event("moby_gen", DATA, key)
    (outcome,) = call(served.function("gemma3"), event)["files"]
    assert outcome["status"] == "scored" and (outcome["rows"], outcome["failed"]) == (5, 2), outcome

    def lines() -> list[dict[str, Any]]:
        body = s3.get_object(Bucket=DATA, Key=outcome["outputs"]["predictions"])["Body"].read()
        return [json.loads(line) for line in body.splitlines()]

    first = lines()
    check_lines(served, first)
    call(served.function("gemma3"), event)  # a redelivery: the sampled row samples the same text
    assert lines() == first


def test_a_batch_file_that_meets_its_deadline_answers_every_row_with_what_it_has(served: Served) -> None:
    s3 = boto3.client("s3")
    key = f"inputs/{served.names['gemma3']}/late.jsonl"
    s3.put_object(Bucket=DATA, Key=key, Body=jsonl(ROWS))
    (outcome,) = call(served.function("gemma3"), s3_put_event("moby_gen", DATA, key), timeout_s=1)["files"]
    assert (outcome["rows"], outcome["scored"], outcome["failed"]) == (5, 3, 2), outcome
    body = s3.get_object(Bucket=DATA, Key=outcome["outputs"]["predictions"])["Body"].read()
    lines = [json.loads(line) for line in body.splitlines()]
    assert [line["prediction"]["finish_reasons"] for line in lines[:3]] == [["time"]] * 3
    assert [line["prediction"]["completion_tokens"] for line in lines[:3]] == [[1]] * 3
    assert [line["error"] for line in lines[3:]] == ["out_of_range", "prompt_too_long"]


def test_a_distributed_map_job_answers_every_prompt_on_one_version(served: Served) -> None:
    name = served.names["gemma3"]
    spec = state_machine_for_model("spam_nb")  # the template's one batch state machine, for our model
    function = replace(spec.function, environment={**spec.function.environment, "MODEL_NAME": name})
    machine = LocalStateMachine(replace(spec, name=f"maas-{name}-batch", function=function))
    key = f"inputs/{name}/large/prompts.jsonl"
    boto3.client("s3").put_object(Bucket=DATA, Key=key, Body=jsonl(ROWS))
    with environment(function_environment(function, {**served.environ, "MODEL_NAME": name})):
        output = machine.start(object_created_event(DATA, key))
    counts = (output["input_rows"], output["rows_scored"], output["rows_refused"], output["model_version"])
    assert counts == (5, 3, 2, "1"), output
    s3 = boto3.client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=DATA, Prefix=output["outputs"]["prefix"])
    keys = sorted(
        o["Key"] for p in pages for o in p.get("Contents", []) if o["Key"].endswith(".predictions.jsonl")
    )
    lines = [
        json.loads(line)
        for k in keys
        for line in s3.get_object(Bucket=DATA, Key=k)["Body"].read().splitlines()
    ]
    check_lines(served, sorted(lines, key=lambda line: line["line"]))


def test_sqs_requests_are_answered_into_s3_and_a_bad_one_is_retried(served: Served) -> None:
    event = copy.deepcopy(load_event("moby_gen", "sqs_batch.json"))
    template = event["Records"][0]
    requests = [
        {"request_id": "llm-0", "prompt": PROMPTS[0], "max_new_tokens": 5, "temperature": 0},
        {"request_id": "llm-1", "messages": [{"role": "user", "content": "Ahab?"}], "max_tokens": 3, "n": 2},
        {"request_id": "llm-2", "prompt": PROMPTS[1], "stop": ["."] * 17},
    ]
    event["Records"] = [
        {**copy.deepcopy(template), "messageId": f"m-{i}", "body": json.dumps(r)}
        for i, r in enumerate(requests)
    ]
    answer = call(served.function("gemma3"), event)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    s3 = boto3.client("s3")
    name = served.names["gemma3"]
    results = [
        json.loads(s3.get_object(Bucket=DATA, Key=f"results/{name}/llm-{i}.json")["Body"].read())
        for i in (0, 1)
    ]
    assert results[0]["continuations"] == served.expected(
        "gemma3", {k: v for k, v in requests[0].items() if k != "request_id"}
    )
    assert results[0]["finish_reasons"] == ["length"] and results[0]["model_version"] == "1"
    assert len(results[1]["continuations"]) == 2 and results[1]["completion_tokens"] == [3, 3]
    task = served.task("gemma3")
    assert results[1]["prompt"] == task.render_chat([{"role": "user", "content": "Ahab?"}])


def test_an_alias_never_moves_to_a_version_that_does_not_repeat_its_greedy_sample(
    served: Served, tmp_path: Path
) -> None:
    folder = tmp_path / "tiny_llama"
    shutil.copytree(served.folders["llama"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sample"]["token_ids"] = [(t + 1) % 512 for t in manifest["sample"]["token_ids"]]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    registry = RegistryAdmin(MODELS)
    with pytest.raises(Conflict, match="greedy tokens") as refused:
        Lifecycle(registry).publish(folder, alias="production")
    assert refused.value.code == "sample_mismatch"
    alias = registry.get_alias(served.names["llama"], "production")
    assert alias is not None and alias.version == 1  # still the version that repeats its sample
