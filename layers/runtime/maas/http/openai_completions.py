"""OpenAI's completions and chat completions over the ``causal-lm`` task, streamed or whole.

One path for both: the task's decoding steps (``CausalLM.stream``) become OpenAI chunks; a
streamed answer sends each as a server-sent event, a whole answer collects them. So the time to
the first token, the tokens and the rate are measured the same way for both, and a whole answer
is exactly what the stream would have said.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from maas.core.errors import MaasError, RequestError, record_error
from maas.core.observability import logger, record_llm_request
from maas.core.service import ServedModel
from maas.core.tasks.causal_lm import CausalLM, CompletionRequest, Delta
from maas.http.errors import openai_error_body, public_message
from maas.http.openai_requests import model_id
from maas.http.streaming import DONE, sse

# OpenAI's finish reasons: a row cut by the deadline ran out of budget, as "length" says
FINISH = {"stop": "stop", "length": "length", "time": "length"}
# what the task reads, by OpenAI's name (unknown fields are ignored: they never reach it)
SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "n",
)


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RequestError(
            f"{name} must be true or false, got {type(value).__name__}", code="invalid_type", field=name
        )
    return value


def _renamed(error: RequestError, given: str, canonical: str) -> RequestError:
    """The task's error about ``canonical``, told in the caller's name for the field."""
    if error.field != canonical:
        return error
    return RequestError(error.message.replace(canonical, given), code=error.code, field=given)


@dataclass
class Plan:
    """A checked OpenAI request: the task's request per prompt, and how to answer it."""

    served: ServedModel
    task: CausalLM
    requests: list[CompletionRequest]
    chat: bool
    stream: bool
    include_usage: bool
    echo: bool
    prompts: list[str]
    id: str
    created: int = field(default_factory=lambda: int(time.time()))
    #: when the request was read: the time to the first token counts from here
    started: float = field(default_factory=time.perf_counter)

    @property
    def n(self) -> int:
        return int(self.requests[0].num_return_sequences)

    @property
    def object(self) -> str:
        if self.chat:
            return "chat.completion.chunk" if self.stream else "chat.completion"
        return "text_completion"

    def chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        """One answer or chunk: the same ``id`` and ``created`` on every chunk of a stream."""
        return {
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": model_id(self.served),
            "choices": choices,
            **extra,
        }


def plan(served: ServedModel, body: dict[str, Any], *, chat: bool, deadline: float | None) -> Plan:
    """Read an OpenAI body into the task's requests; every mistake a 400 naming the field."""
    task = served.task
    if not isinstance(task, CausalLM):
        raise RequestError(
            f"model {served.name!r} is a {task.name!r} model: it does not complete text; "
            "OpenAI's completions need a causal-lm model",
            code="wrong_route",
            field="model",
        )
    fields = {name: body[name] for name in SAMPLING_FIELDS if name in body and body[name] is not None}
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("stream_options must be an object", code="invalid_type", field="stream_options")
    include_usage = stream and bool(options) and _flag(options or {}, "include_usage")
    given = "max_tokens"
    if chat and body.get("max_completion_tokens") is not None:
        given = "max_completion_tokens"
    if body.get(given) is not None:
        fields["max_tokens"] = body[given]
    echo = False
    if chat:
        if "messages" not in body:
            raise RequestError(
                "messages is required: a list of {role, content}", code="missing_field", field="messages"
            )
        if _flag(body, "logprobs"):
            top = body.get("top_logprobs")
            fields["logprobs"] = 0 if top is None else top
        prompts: list[Any] = [None]
    else:
        echo = _flag(body, "echo")
        if body.get("logprobs") is not None:
            fields["logprobs"] = body["logprobs"]
        raw = body.get("prompt")
        if raw is None:
            raise RequestError(
                "prompt is required: a string or a list of strings", code="missing_field", field="prompt"
            )
        prompts = raw if isinstance(raw, list) else [raw]
        if not prompts:
            raise RequestError("prompt must not be an empty list", code="empty_batch", field="prompt")
        limit = int(task.io.get("max_return_sequences", 8))
        asked = fields.get("n")
        rows = len(prompts) * (asked if isinstance(asked, int) else 1)
        if len(prompts) > 1 and rows > limit:
            raise RequestError(
                f"prompt holds {len(prompts)} prompts x n: {rows} completions, at most {limit} per request",
                code="out_of_range",
                field="prompt",
            )
        for index, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                where = f"prompt[{index}]" if isinstance(raw, list) else "prompt"
                raise RequestError(
                    f"{where} must be a string (token ids are not accepted), got {type(prompt).__name__}",
                    code="invalid_type",
                    field=where,
                )
    requests = []
    texts = []
    for index, prompt in enumerate(prompts):
        one = {**fields, **({"messages": body["messages"]} if chat else {"prompt": prompt})}
        try:
            request = task.parse(one, deadline=deadline)
        except RequestError as error:
            error = _renamed(error, given, "max_tokens") if given != "max_tokens" else error
            if not chat and len(prompts) > 1 and error.field == "prompt":
                error = RequestError(error.message, code=error.code, field=f"prompt[{index}]")
            raise error from None
        requests.append(request)
        texts.append(request.prompt)
    prefix = "chatcmpl" if chat else "cmpl"
    return Plan(
        served, task, requests, chat, stream, include_usage, echo, texts, f"{prefix}-{os.urandom(12).hex()}"
    )


def _completion_logprobs(plan: Plan, deltas: list[Delta], offset: int) -> dict[str, Any]:
    """The legacy completions' ``logprobs``: parallel lists, and the alternatives as maps."""
    decode = plan.task.tokenizer.decode
    tokens = [decode([d.token_id], skip_special_tokens=False) for d in deltas if d.token_id is not None]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    chosen = [d for d in deltas if d.token_id is not None]
    return {
        "tokens": tokens,
        "token_logprobs": [d.logprob for d in chosen],
        "top_logprobs": [_by_text(d) for d in chosen],
        "text_offset": offsets,
    }


def _by_text(delta: Delta) -> dict[str, float]:
    """The alternatives as the legacy map of text to logprob: tokens that decode alike (partial
    UTF-8 bytes all read as U+FFFD) share a key, which keeps the likeliest one's."""
    found: dict[str, float] = {}
    for alternative in delta.top_logprobs:  # best first
        found.setdefault(alternative.token, alternative.logprob)
    return found


def _chat_logprobs(plan: Plan, deltas: list[Delta]) -> dict[str, Any]:
    """Chat's ``logprobs.content``: one entry per token, with its alternatives."""
    decode = plan.task.tokenizer.decode
    content = []
    for delta in deltas:
        if delta.token_id is None:
            continue
        token = decode([delta.token_id], skip_special_tokens=False)
        content.append(
            {
                "token": token,
                "logprob": delta.logprob,
                "bytes": list(token.encode("utf-8")),
                "top_logprobs": [
                    {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode("utf-8"))}
                    for t in delta.top_logprobs
                ],
            }
        )
    return {"content": content}


def _logprobs(plan: Plan, deltas: list[Delta], offset: int = 0) -> dict[str, Any] | None:
    if plan.requests[0].logprobs is None:
        return None
    return _chat_logprobs(plan, deltas) if plan.chat else _completion_logprobs(plan, deltas, offset)


@dataclass
class _Tally:
    """What the metrics and ``usage`` report: tokens in and out, first token, decoding time."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    first: float | None = None

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _steps(plan: Plan, tally: _Tally) -> Iterator[tuple[int, list[Delta]]]:
    """Every decoding step of every prompt, as (first choice index, deltas), counted."""
    for number, request in enumerate(plan.requests):
        tally.prompt_tokens += len(request.prompt_ids)
        for deltas in plan.task.stream(request):
            if tally.first is None:
                tally.first = time.perf_counter()
            tally.completion_tokens += sum(1 for d in deltas if d.token_id is not None)
            yield number * plan.n, deltas


def _record(plan: Plan, tally: _Tally) -> None:
    first_ms = None if tally.first is None else (tally.first - tally.started) * 1000.0
    decode_seconds = 0.0 if tally.first is None else time.perf_counter() - tally.first
    record_llm_request(
        plan.served.name,
        plan.served.version,
        prompt_tokens=tally.prompt_tokens,
        completion_tokens=tally.completion_tokens,
        first_token_ms=first_ms,
        decode_seconds=decode_seconds,
    )


def complete(plan: Plan) -> dict[str, Any]:
    """The whole answer: every choice's text, finish reason and logprobs, and ``usage``."""
    tally = _Tally(started=plan.started)
    rows = len(plan.requests) * plan.n
    texts: list[list[str]] = [[] for _ in range(rows)]
    steps: list[list[Delta]] = [[] for _ in range(rows)]
    reasons = ["length"] * rows
    for base, deltas in _steps(plan, tally):
        for delta in deltas:
            index = base + delta.index
            texts[index].append(delta.text)
            steps[index].append(delta)
            if delta.finish_reason is not None:
                reasons[index] = FINISH[delta.finish_reason]
    _record(plan, tally)
    choices = []
    for index in range(rows):
        text = "".join(texts[index])
        prompt = plan.prompts[index // plan.n]
        choice: dict[str, Any] = {"index": index, "finish_reason": reasons[index]}
        if plan.chat:
            choice["message"] = {"role": "assistant", "content": text}
            choice["logprobs"] = _logprobs(plan, steps[index])
        else:
            echoed = prompt if plan.echo else ""
            choice["text"] = echoed + text
            choice["logprobs"] = _logprobs(plan, steps[index], len(echoed))
        choices.append(choice)
    return plan.chunk(choices, usage=tally.usage())


def _error_event(error: BaseException) -> bytes:
    """The chunk that ends a stream which failed after it started (OpenAI's clients raise on it)."""
    failure = record_error(error)
    if not isinstance(error, MaasError):
        logger.exception("a stream failed")
        failure = MaasError(f"internal error while generating: {type(error).__name__}")
    return sse(openai_error_body(failure, public_message(failure.message)))


def stream(plan: Plan) -> Iterator[bytes]:
    """The server-sent events: the chunks (a role chunk first for chat), the usage chunk when
    asked, then ``[DONE]``; an error after the first event is an error event, then the end.
    Closing it (the client has gone) stops the decoding loop."""
    tally = _Tally(started=plan.started)
    usage_field = {"usage": None} if plan.include_usage else {}
    sent: dict[int, int] = {}
    try:
        if plan.chat:
            yield sse(
                plan.chunk(
                    [
                        {
                            "index": i,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        }
                        for i in range(plan.n)
                    ],
                    **usage_field,
                )
            )
        elif plan.echo:
            yield sse(
                plan.chunk(
                    [
                        {"index": p * plan.n + j, "text": prompt, "logprobs": None, "finish_reason": None}
                        for p, prompt in enumerate(plan.prompts)
                        for j in range(plan.n)
                    ],
                    **usage_field,
                )
            )
        for base, deltas in _steps(plan, tally):
            choices = []
            for delta in deltas:
                if not delta.text and delta.finish_reason is None and plan.requests[0].logprobs is None:
                    continue  # a held-back character: nothing to say yet
                index = base + delta.index
                reason = None if delta.finish_reason is None else FINISH[delta.finish_reason]
                choice: dict[str, Any] = {"index": index}
                if plan.chat:
                    choice["delta"] = {"content": delta.text} if delta.text else {}
                    choice["logprobs"] = _logprobs(plan, [delta])
                else:
                    offset = sent.get(index, len(plan.prompts[index // plan.n]) if plan.echo else 0)
                    choice["text"] = delta.text
                    choice["logprobs"] = _logprobs(plan, [delta], offset)
                    sent[index] = offset + len(delta.text)
                choice["finish_reason"] = reason
                choices.append(choice)
            if choices:
                yield sse(plan.chunk(choices, **usage_field))
        if plan.include_usage:
            yield sse(plan.chunk([], usage=tally.usage()))
        yield DONE
    except GeneratorExit:  # the client has gone: the task's generator closes with this one
        logger.info("stream closed by the client", extra={"completion_tokens": tally.completion_tokens})
        raise
    except Exception as error:  # after the headers: an error event ends the stream
        yield _error_event(error)
    finally:
        _record(plan, tally)
