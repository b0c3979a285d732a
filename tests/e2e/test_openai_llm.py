"""OpenAI's completions and chat on causal-lm models through `maas serve`, with the unmodified
`openai` package, LangChain, `maas chat`, raw sockets (streaming and a client that leaves) and
hostile bodies.

The models are the session's tiny random-init decoders (tests/conftest.py ``tiny_llms``): they
go through the same import path and the same task as a real LLM, in milliseconds a token.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from tests.e2e.conftest import MAAS, Served
from training.data import PROJECT_ROOT

PROMPT = "Call me Ishmael. Some years ago"


def publishable(folder: Path, work: Path, *, name: str | None = None, chat_template: bool = True) -> Path:
    """The version folder, or a copy of it under a registry name (the tiny fixture's ``tiny-llama``
    holds a dash, which the registry refuses: names are identifiers), without its chat template
    when asked (a model that has none)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    name = name or manifest["name"].replace("-", "_")
    if name == manifest["name"] and chat_template:
        return folder
    copy = work / name
    if not copy.exists():
        shutil.copytree(folder, copy)
        manifest["name"] = name
        if not chat_template:
            template = manifest["io"].pop("chat_template")
            manifest["artifacts"].pop(template)
            (copy / template).unlink()
        (copy / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


@pytest.fixture(scope="module")
def llms(
    serve_api: Served, tiny_llms: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """{architecture: model name}, each published once and aliased to the serving alias."""
    names = {}
    work = tmp_path_factory.mktemp("llms")
    folders = {arch: publishable(original, work) for arch, original in tiny_llms.items()}
    folders["no_template"] = publishable(tiny_llms["llama"], work, name="tiny_plain", chat_template=False)
    for arch, folder in folders.items():
        name = json.loads((folder / "manifest.json").read_text())["name"]
        if serve_api.registry.get_alias(name, "production") is None:
            published = serve_api.registry.publish(folder)
            serve_api.registry.set_alias(name, "production", published.version)
        names[arch] = name
    return names


@pytest.fixture(scope="module")
def llm(llms: dict[str, str]) -> str:
    return llms["llama"]


def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url + "/v1", api_key="unused-locally", max_retries=0, timeout=120)


def generate(served: Served, model: str, prompt: str, tokens: int) -> dict[str, Any]:
    """The plain route's greedy answer: the reference the OpenAI routes must agree with."""
    response = served.post(
        f"/models/{model}/generate", {"prompt": prompt, "max_new_tokens": tokens, "temperature": 0}
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_completions_equal_the_generate_route_and_name_the_version(serve_api: Served, llm: str) -> None:
    reference = generate(serve_api, llm, PROMPT, 12)
    answer = client(serve_api).completions.create(model=llm, prompt=PROMPT, max_tokens=12, temperature=0)
    assert answer.model == f"{llm}@1" and answer.object == "text_completion"
    (choice,) = answer.choices
    assert choice.text == reference["continuations"][0]
    assert choice.finish_reason in {"stop", "length"}
    assert answer.usage.prompt_tokens == reference["prompt_tokens"]
    assert answer.usage.completion_tokens == reference["completion_tokens"][0]
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_completion_fields_n_seed_stop_echo_logprobs_and_a_list_of_prompts(
    serve_api: Served, llm: str
) -> None:
    api = client(serve_api)
    sampled = [
        api.completions.create(
            model=llm, prompt=PROMPT, max_tokens=8, temperature=1.0, top_p=0.9, n=3, seed=7
        )
        for _ in range(2)
    ]
    assert [c.text for c in sampled[0].choices] == [c.text for c in sampled[1].choices]  # seeded
    assert [c.index for c in sampled[0].choices] == [0, 1, 2]
    echoed = api.completions.create(model=llm, prompt=PROMPT, max_tokens=4, temperature=0, echo=True)
    plain = api.completions.create(model=llm, prompt=PROMPT, max_tokens=4, temperature=0)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text
    scored = api.completions.create(model=llm, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=3)
    logprobs = scored.choices[0].logprobs
    assert (
        logprobs is not None
        and len(logprobs.tokens) == len(logprobs.token_logprobs) == scored.usage.completion_tokens
    )
    # greedy: each chosen token is the most likely one (alternatives whose text decodes alike
    # share one key of OpenAI's map, so a map may hold fewer than 3)
    for top, chosen in zip(logprobs.top_logprobs, logprobs.token_logprobs, strict=True):
        assert 1 <= len(top) <= 3 and abs(max(top.values()) - chosen) < 1e-5, (top, chosen)
    two = api.completions.create(model=llm, prompt=[PROMPT, "The whale"], max_tokens=4, temperature=0, n=2)
    assert [c.index for c in two.choices] == [0, 1, 2, 3]
    assert two.choices[0].text == two.choices[1].text == plain.choices[0].text
    text = plain.choices[0].text
    if len(text.strip()) > 1:  # stop at the first character of the greedy text: nothing before it
        stop = text.strip()[:1]
        stopped = api.completions.create(model=llm, prompt=PROMPT, max_tokens=4, temperature=0, stop=[stop])
        assert stopped.choices[0].finish_reason == "stop" and stop not in stopped.choices[0].text
    penalised = api.completions.create(
        model=llm,
        prompt=PROMPT,
        max_tokens=4,
        temperature=0,
        presence_penalty=1.5,
        frequency_penalty=1.0,
        user="u1",
    )
    assert penalised.usage.completion_tokens >= 1


def test_chat_renders_the_template_and_a_model_without_one_is_a_400(
    serve_api: Served, llms: dict[str, str]
) -> None:
    api = client(serve_api)
    messages = [{"role": "user", "content": "Who is Ahab?"}]
    for arch in ("gemma3", "llama"):
        name = llms[arch]
        answer = api.chat.completions.create(
            model=name, messages=messages, max_completion_tokens=6, temperature=0
        )
        assert answer.object == "chat.completion" and answer.model == f"{name}@1"
        assert answer.choices[0].message.role == "assistant"
        assert answer.usage.completion_tokens <= 6
    with pytest.raises(openai.BadRequestError) as untemplated:
        api.chat.completions.create(model=llms["no_template"], messages=messages, max_tokens=6)
    assert (untemplated.value.code, untemplated.value.param) == ("no_chat_template", "messages")
    completed = api.completions.create(
        model=llms["no_template"], prompt=PROMPT, max_tokens=2
    )  # it still completes
    assert completed.usage.completion_tokens >= 1
    with pytest.raises(openai.BadRequestError) as caught:  # a character GRU is not a causal LM
        api.chat.completions.create(model="moby_gen", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "wrong_route"


def test_stream_with_usage_has_constant_ids_the_same_text_and_a_usage_chunk(
    serve_api: Served, llm: str
) -> None:
    api = client(serve_api)
    whole = api.completions.create(model=llm, prompt=PROMPT, max_tokens=16, temperature=0)
    chunks = list(
        api.completions.create(
            model=llm,
            prompt=PROMPT,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    messages = [{"role": "user", "content": "hi"}]
    whole_chat = api.chat.completions.create(model=llm, messages=messages, max_tokens=8, temperature=0)
    chat = list(
        api.chat.completions.create(model=llm, messages=messages, max_tokens=8, temperature=0, stream=True)
    )
    assert chat[0].choices[0].delta.role == "assistant" and chat[0].object == "chat.completion.chunk"
    assert "".join(c.choices[0].delta.content or "" for c in chat) == whole_chat.choices[0].message.content


def _stream_request(served: Served, body: dict[str, Any]) -> socket.socket:
    url = urlsplit(served.url)
    raw = socket.create_connection((url.hostname, url.port), timeout=120)
    payload = json.dumps(body).encode()
    raw.sendall(
        b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    return raw


def _emf(served: Served, metric: str) -> list[float]:
    values = []
    for line in served.log.read_text(errors="replace").splitlines():
        if line.startswith("{") and f'"{metric}"' in line:
            record = json.loads(line)
            value = record.get(metric)
            values += value if isinstance(value, list) else [value]
    return values


def test_the_first_event_arrives_while_the_model_is_still_generating_and_leaving_stops_it(
    serve_api: Served, llm: str
) -> None:
    """Timed: the first event reaches the client long before a whole answer could; then the
    client disconnects, and the generation stops early (its CompletionTokens metric says so)."""
    budget = 200  # the tiny models' context is 256 tokens
    body = {
        "model": llm,
        "prompt": PROMPT,
        "max_tokens": budget,
        "temperature": 1.0,
        "seed": 3,
        "stream": True,
    }
    started = time.perf_counter()
    whole = serve_api.post("/v1/completions", {**body, "stream": False}).json()
    whole_s = time.perf_counter() - started
    produced = whole["usage"]["completion_tokens"]
    assert produced > 50, "the seeded sample must be long enough to time"  # not an EOS at once
    before = len(_emf(serve_api, "CompletionTokens"))
    with _stream_request(serve_api, body) as raw:
        started = time.perf_counter()
        head = b""
        while b"data: " not in head:
            head += raw.recv(1024)
        first_s = time.perf_counter() - started
    assert b"transfer-encoding: chunked" in head.lower()
    assert first_s < whole_s / 4, (first_s, whole_s)
    deadline = time.monotonic() + 60
    while len(_emf(serve_api, "CompletionTokens")) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _emf(serve_api, "CompletionTokens")[before:]
    assert left and left[0] < produced, (left, produced)


def test_hostile_bodies_are_openai_shaped_400s_never_500s(serve_api: Served, llm: str) -> None:
    message = {"role": "user", "content": "hi"}
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/v1/completions", {"model": llm, "prompt": PROMPT, "n": 8, "max_tokens": 100_000}),
        ("/v1/completions", {"model": llm, "prompt": PROMPT, "n": 10_000, "max_tokens": 8}),
        ("/v1/completions", {"model": llm, "prompt": [PROMPT] * 100, "n": 8}),
        ("/v1/chat/completions", {"model": llm, "messages": [message] * 10_000}),
        ("/v1/chat/completions", {"model": llm, "messages": "hi"}),
        ("/v1/chat/completions", {"model": llm, "messages": [{"role": "wizard", "content": "x"}]}),
        ("/v1/chat/completions", {"model": llm, "messages": [{"content": "no role"}]}),
        ("/v1/chat/completions", {"model": llm, "messages": [{"role": "user", "content": {"x": 1}}]}),
        ("/v1/chat/completions", {"model": llm, "messages": [None, 7]}),
        ("/v1/completions", {"model": llm, "prompt": PROMPT, "stop": [f"s{i}" for i in range(1_000)]}),
        ("/v1/completions", {"model": llm, "prompt": PROMPT, "temperature": "hot"}),
        ("/v1/completions", {"model": llm, "prompt": PROMPT, "logprobs": 50}),
        ("/v1/completions", {"model": llm, "prompt": [1, 2, 3]}),
        ("/v1/completions", {"model": llm, "prompt": PROMPT, "stream": "yes"}),
        ("/v1/completions", {"model": llm, "prompt": PROMPT, "stream": True, "stream_options": [1]}),
        ("/v1/completions", {"model": llm}),
        ("/v1/chat/completions", {"model": llm, "messages": [message], "max_completion_tokens": -1}),
    ]
    for path, body in bodies:
        response = serve_api.post(path, body)
        assert 400 <= response.status_code < 500, (
            path,
            str(body)[:200],
            response.status_code,
            response.text[:300],
        )
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert error["type"] == "invalid_request_error" and error["message"], error
    named = serve_api.post(
        "/v1/chat/completions", {"model": llm, "messages": [message], "max_completion_tokens": -1}
    )
    assert named.json()["error"]["param"] == "max_completion_tokens"


def test_langchain_openai_completes_and_streams_through_the_same_server(serve_api: Served, llm: str) -> None:
    from langchain_openai import OpenAI

    model = OpenAI(
        base_url=serve_api.url + "/v1",
        api_key="unused",
        model=llm,
        max_tokens=8,
        temperature=0,
        max_retries=0,
    )
    reference = client(serve_api).completions.create(model=llm, prompt=PROMPT, max_tokens=8, temperature=0)
    assert model.invoke(PROMPT) == reference.choices[0].text
    assert "".join(model.stream(PROMPT)) == reference.choices[0].text


def test_maas_chat_streams_a_reply_to_the_terminal(serve_api: Served, llms: dict[str, str]) -> None:
    name = llms["gemma3"]
    reference = client(serve_api).chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Who is Ahab?"}], max_tokens=8, temperature=0
    )
    done = subprocess.run(
        [
            MAAS,
            "chat",
            name,
            "--url",
            serve_api.url + "/v1",
            "-m",
            "Who is Ahab?",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (reference.choices[0].message.content or "") + "\n"
    assert "tokens in" in done.stderr
    missing = subprocess.run(
        [MAAS, "chat", "no_such_model", "--url", serve_api.url + "/v1", "-m", "x"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert (
        missing.returncode == 1 and missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    )
