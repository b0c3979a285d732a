"""A decoder LLM (task ``causal-lm``): tokenise, prefill once, decode with the KV cache, sample.

What every adapter calls (plain ``/generate``, the protocol, S3, SQS, OpenAI's routes):
``parse`` checks a request (a 400 names the field), ``stream`` yields one decoding step at a time
(a ``Delta`` per live row: token id, text, log-probabilities, why the row ended), and
``complete``/``generate`` collect it. The request's rows share one prefill.

Text is decoded incrementally (as vLLM and TGI do): a row's new text is the decoding of its last
tokens less that of the tokens before them, held back while it ends in a partial character, so
every delta is whole characters. Text that could be the start of a stop string is held back too,
so a stop string never reaches the caller. The deadline is checked before each step, against the
time the last step took: the answer goes out before it, with what was decoded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from maas.core.errors import ConfigurationError, RequestError, shown
from maas.core.predictor import Predictor
from maas.core.signature import TensorSpec, is_unicode
from maas.core.tasks.base import Continuation, GenerationRequest, Generator
from maas.core.tasks.chat import ChatTemplate
from maas.core.tasks.kv_cache import CacheLayout, KVDecoder, Prefix
from maas.core.tasks.sampling import Sampler, Sampling, log_softmax

__all__ = [
    "CausalLM",
    "Completion",
    "CompletionRequest",
    "Delta",
    "TokenLogprob",
]

#: limits a manifest's ``io`` may set, and what they are when it does not
LIMITS = {"max_new_tokens": 512, "max_return_sequences": 8}
MAX_STOP = 16
MAX_STOP_CHARS = 256
MAX_LOGPROBS = 5
#: full contexts of KV cache a request may hold when the manifest sets no ``max_kv_bytes``
KV_CONTEXTS = 4
#: a request field's other spelling (OpenAI's), answered back under the name the caller used
ALIASES = {"max_tokens": "max_new_tokens", "n": "num_return_sequences"}
#: decoded tokens the incremental detokeniser keeps as context (a word piece's leading space)
_CONTEXT_TOKENS = 5


@dataclass(frozen=True, slots=True)
class CompletionRequest(GenerationRequest):
    """A checked causal-LM request (``parse`` builds it; the fields are those of ``Sampling`` plus
    what ends a row). ``prompt_ids`` are the prompt's tokens, BOS included."""

    prompt_ids: tuple[int, ...] = ()
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    #: None: no log-probabilities; k (0..5): the chosen token's, and the k most likely alternatives
    logprobs: int | None = None

    @property
    def sampling(self) -> Sampling:
        return Sampling(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            seed=self.seed,
        )


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float


@dataclass(frozen=True, slots=True)
class Delta:
    """What one row did in one step. ``token_id`` is None when the row ended without a new token
    (the deadline); ``text`` may be empty (a partial character, or a possible stop string, held
    back); ``finish_reason`` is set on the row's last delta only."""

    index: int
    token_id: int | None
    text: str
    logprob: float | None = None
    top_logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: str | None = None


@dataclass(frozen=True, slots=True)
class Completion(Continuation):
    """One row's whole answer (``complete``): text, token ids, why it ended, and per-token
    log-probabilities when asked."""

    token_ids: tuple[int, ...] = ()
    logprobs: tuple[Delta, ...] = ()


@dataclass
class _Row:
    """A row's decoding state: its tokens, its text so far and how much of it went out."""

    index: int
    ids: list[int]
    prefix: int
    read: int
    text: str = ""
    sent: int = 0
    generated: int = 0
    done: str | None = None
    tokens: list[int] = field(default_factory=list)


class CausalLM(Generator):
    name = "causal-lm"
    parameters = (
        "max_new_tokens",
        "max_length",
        "num_return_sequences",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "stop",
        "logprobs",
    )

    def __init__(self, predictor: Predictor, manifest: dict[str, Any], directory: Path | None = None) -> None:
        super().__init__(predictor, manifest, directory)
        io = self.io
        try:
            self.tokenizer = Tokenizer.from_file(str(self.artifact("tokenizer")))
        except ConfigurationError:
            raise
        except Exception as error:  # the Rust library's own parse errors
            raise ConfigurationError(f"tokenizer.json cannot be read: {error}") from None
        self.layout = CacheLayout.from_io(io, predictor)
        self.vocab_size = int(io.get("vocab_size", self.tokenizer.get_vocab_size()))
        self.max_context = int(io.get("max_context", io.get("context_length", 2048)))
        self.max_new_tokens = int(io.get("max_new_tokens", LIMITS["max_new_tokens"]))
        self.max_return_sequences = int(io.get("max_return_sequences", LIMITS["max_return_sequences"]))
        #: the KV cache one request may hold (its rows together), checked before decoding: unless the
        #: manifest says otherwise, four full contexts (gemma 3 270M: 4 x 4,096 x 36 KiB = 576 MiB)
        self.max_kv_bytes = int(
            io.get("max_kv_bytes", KV_CONTEXTS * self.max_context * self.layout.bytes_per_token)
        )
        bos = io.get("bos_token_id")
        self.bos_token_id = int(bos) if bos is not None else None
        self.add_bos = bool(io.get("add_bos", False)) and self.bos_token_id is not None
        self.eos_token_ids = frozenset(int(i) for i in io.get("eos_token_ids", []))
        self._chat: ChatTemplate | None = None
        #: the last prompt's cache (kv_cache.Prefix: a prompt that starts the same prefills only the
        #: rest; replaced whole, so concurrent requests each read one), and what the last reused
        self._prefix: Prefix | None = None
        self.reused_tokens = 0

    # --- what a tensor client sees ------------------------------------------------------------

    def request_inputs(self) -> list[TensorSpec]:
        """A tensor client sends one prompt (the other fields travel as ``parameters``)."""
        return [TensorSpec("prompt", "object", (1,))]

    def request_outputs(self) -> list[TensorSpec]:
        """And gets one text, one finish reason and one token count per returned sequence."""
        return [
            TensorSpec("text", "object", (None,)),
            TensorSpec("finish_reason", "object", (None,)),
            TensorSpec("completion_tokens", "int64", (None,)),
        ]

    # --- text in ------------------------------------------------------------------------------

    def tokenize(self, text: Any, field: str = "prompt") -> list[int]:
        """The ids the model reads for ``text`` (BOS first when the model wants it), or a 400 for
        what no tokenizer should take: not a string, a lone surrogate, a NUL."""
        if not isinstance(text, str):
            raise RequestError(
                f"{field} must be a string, got {type(text).__name__}", code="invalid_type", field=field
            )
        _check_text(text, field)
        ids = list(self.tokenizer.encode(text, add_special_tokens=False).ids)
        if self.add_bos and (not ids or ids[0] != self.bos_token_id):
            assert self.bos_token_id is not None
            ids.insert(0, self.bos_token_id)
        return ids

    def encode(self, prompt: str, field: str = "prompt") -> list[int]:
        return self.tokenize(prompt, field)

    def render_chat(self, messages: Any, field: str = "messages") -> str:
        """The prompt the model's chat template makes of ``messages``; a 400 when it has none."""
        if self._chat is None:
            name = self.io.get("chat_template")
            if not name or not (self.directory / str(name)).is_file():
                raise RequestError(
                    f"model {self.manifest.get('name', '')!r} has no chat template: send a prompt instead",
                    code="no_chat_template",
                    field=field,
                )
            self._chat = ChatTemplate(
                self.directory / str(name), self._token(self.bos_token_id), self._eos_token()
            )
        for index, message in enumerate(messages if isinstance(messages, list) else []):
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                _check_text(content, f"{field}[{index}].content")
        prompt = self._chat.render(messages, field)
        _check_text(prompt, field)
        return prompt

    def _token(self, token_id: int | None) -> str:
        return "" if token_id is None else str(self.tokenizer.id_to_token(token_id) or "")

    def _eos_token(self) -> str:
        return self._token(min(self.eos_token_ids)) if self.eos_token_ids else ""

    # --- the request --------------------------------------------------------------------------

    def parse(self, body: dict[str, Any], deadline: float | None = None) -> CompletionRequest:
        """A /generate body (``prompt`` or ``messages``, and the decoding fields; OpenAI's ``n`` and
        ``max_tokens`` spellings taken too), each field checked: a 400 names the first wrong one."""
        names = {canonical: given for given, canonical in ALIASES.items() if given in body}
        for given, canonical in ALIASES.items():
            if given in body and canonical in body:
                raise RequestError(
                    f"give {canonical} or {given}, not both", code="conflicting_fields", field=given
                )
        fields = {ALIASES.get(key, key): value for key, value in body.items()}
        if "messages" in fields and fields.get("prompt") is not None:
            raise RequestError(
                "give prompt or messages, not both", code="conflicting_fields", field="messages"
            )
        prompt: Any
        if "messages" in fields:
            prompt_field = "messages"
            prompt = self.render_chat(fields["messages"], "messages")
        else:
            prompt_field = "prompt"
            prompt = fields.get("prompt")
            if prompt is None:
                raise RequestError("prompt is required", code="missing_field", field="prompt")
        ids = self.tokenize(prompt, prompt_field)
        if not ids:
            raise RequestError(
                f"{prompt_field} is empty: there is nothing to continue",
                code="empty_text",
                field=prompt_field,
            )
        left = self.max_context - len(ids)
        if left < 1:
            raise RequestError(
                f"{prompt_field} has {len(ids)} tokens; this model takes at most {self.max_context - 1} "
                f"(a context of {self.max_context}, one token left to generate)",
                code="prompt_too_long",
                field=prompt_field,
            )
        rows = _integer(fields, "num_return_sequences", 1, 1, self.max_return_sequences, names)
        new_tokens = self._new_tokens(fields, len(ids), rows, names)
        logprobs = fields.get("logprobs")
        if logprobs is not None:
            logprobs = _integer(fields, "logprobs", 0, 0, MAX_LOGPROBS, names)
        return CompletionRequest(
            prompt=prompt,
            max_new_tokens=new_tokens,
            num_return_sequences=rows,
            temperature=_number(fields, "temperature", 1.0, 0.0, 5.0),
            top_k=_integer(fields, "top_k", 0, 0, self.vocab_size, names),
            seed=_seed(fields),
            deadline=deadline,
            prompt_ids=tuple(ids),
            top_p=_number(fields, "top_p", 1.0, 0.0, 1.0, low_open=True),
            min_p=_number(fields, "min_p", 0.0, 0.0, 1.0),
            repetition_penalty=_number(fields, "repetition_penalty", 1.0, 0.0, 10.0, low_open=True),
            presence_penalty=_number(fields, "presence_penalty", 0.0, -2.0, 2.0),
            frequency_penalty=_number(fields, "frequency_penalty", 0.0, -2.0, 2.0),
            stop=_stops(fields.get("stop")),
            logprobs=logprobs,
        )

    def _new_tokens(
        self, fields: dict[str, Any], prompt_tokens: int, rows: int, names: dict[str, str]
    ) -> int:
        """``max_new_tokens`` (or ``max_length`` = prompt + new), bounded by the context left, the
        manifest's cap and the KV memory; a default is cut to fit, an explicit value is a 400."""
        left = self.max_context - prompt_tokens
        per_row = self.max_kv_bytes // (rows * self.layout.bytes_per_token) - prompt_tokens
        if "max_length" in fields and fields.get("max_new_tokens") is not None:
            raise RequestError(
                "give max_new_tokens or max_length, not both", code="conflicting_fields", field="max_length"
            )
        if fields.get("max_length") is not None:
            total = _integer(fields, "max_length", 0, 1, 2**31, names)
            if total <= prompt_tokens:
                raise RequestError(
                    f"max_length is {total}, but the prompt alone has {prompt_tokens} tokens",
                    code="out_of_range",
                    field="max_length",
                )
            wanted, where = total - prompt_tokens, "max_length"
        elif fields.get("max_new_tokens") is not None:
            wanted = _integer(fields, "max_new_tokens", 0, 1, 2**31, names)
            where = names.get("max_new_tokens", "max_new_tokens")
        else:
            default = min(self.max_new_tokens, left, per_row)
            if default < 1:
                raise self._kv_error(prompt_tokens, rows, 1, names)
            return default
        if wanted > self.max_new_tokens:
            raise RequestError(
                f"{where} asks for {wanted} new tokens; this model generates at most {self.max_new_tokens}",
                code="out_of_range",
                field=where,
            )
        if wanted > left:
            raise RequestError(
                f"{where} asks for {wanted} new tokens, but the prompt's {prompt_tokens} tokens leave "
                f"{left} of the model's context of {self.max_context}",
                code="context_exceeded",
                field=where,
            )
        if wanted > per_row:
            raise self._kv_error(prompt_tokens, rows, wanted, names)
        return wanted

    def _kv_error(self, prompt_tokens: int, rows: int, wanted: int, names: dict[str, str]) -> RequestError:
        need = rows * (prompt_tokens + wanted) * self.layout.bytes_per_token
        where = names.get("num_return_sequences", "num_return_sequences") if rows > 1 else "max_new_tokens"
        return RequestError(
            f"{rows} sequence(s) of {prompt_tokens} + {wanted} tokens need {_size(need)} of KV cache; "
            f"this model allows {_size(self.max_kv_bytes)} per request: ask for fewer sequences or tokens",
            code="kv_cache_exceeded",
            field=where,
        )

    # --- decoding -----------------------------------------------------------------------------

    def forget_prefix(self) -> None:
        """Drop the last prompt's cache: the next prompt prefills whole (a benchmark timing a
        prefill, as llama.cpp's is timed after its reset)."""
        self._prefix = None

    def stream(self, request: CompletionRequest) -> Iterator[list[Delta]]:
        """The decoding steps of one checked request: per step, one ``Delta`` per row still live.

        Every row ends with a delta that has its ``finish_reason``: "stop" (EOS or a stop string),
        "length" (``max_new_tokens``) or "time" (the deadline).
        """
        prompt = list(request.prompt_ids)
        start = max(0, len(prompt) - _CONTEXT_TOKENS)
        rows = [_Row(i, list(prompt), start, len(prompt)) for i in range(request.num_return_sequences)]
        sampler = Sampler(request.sampling, len(rows), self.vocab_size, prompt)
        decoder = KVDecoder(self.predictor, self.layout)
        logits = decoder.prefill(prompt, len(rows), self._prefix)
        self._prefix, self.reused_tokens = decoder.prefix, decoder.reused
        live = np.arange(len(rows))
        step_seconds = 0.0
        while True:
            chosen = sampler.choose(logits, live)
            sampler.observe(live, chosen)
            scores = log_softmax(logits) if request.logprobs is not None else None
            deltas = [
                self._advance(rows[int(r)], int(token), request, None if scores is None else scores[position])
                for position, (r, token) in enumerate(zip(live, chosen, strict=True))
            ]
            still = np.array(
                [position for position, r in enumerate(live) if rows[int(r)].done is None], dtype=np.int64
            )
            if (
                len(still)
                and request.deadline is not None
                and time.monotonic() + step_seconds >= request.deadline
            ):
                deltas = [self._finish(rows[int(live[p])], "time", d) for p, d in enumerate(deltas)]
                still = still[:0]
            yield deltas
            if not len(still):
                return
            if len(still) < len(live):
                decoder.keep(still)
                live, chosen = live[still], chosen[still]
            started = time.monotonic()
            logits = decoder.step(chosen)
            step_seconds = time.monotonic() - started

    def _advance(self, row: _Row, token: int, request: CompletionRequest, scores: np.ndarray | None) -> Delta:
        """Row ``row`` took ``token``: its new text, and whether it has ended."""
        row.generated += 1
        row.tokens.append(token)
        logprob: float | None = None
        top: tuple[TokenLogprob, ...] = ()
        if scores is not None and request.logprobs is not None:
            logprob = float(scores[token])
            top = self._top(scores, request.logprobs)
        if token in self.eos_token_ids:
            row.done = "stop"
        else:
            row.ids.append(token)
            row.text += self._detokenize(row)
            cut = _find_stop(row.text, request.stop, row.sent)
            if cut is not None:
                row.text = row.text[:cut]
                row.done = "stop"
            elif row.generated >= request.max_new_tokens:
                row.done = "length"
        if row.done is not None:
            text, row.sent = row.text[row.sent :], len(row.text)
            return Delta(row.index, token, text, logprob, top, row.done)
        safe = len(row.text) - _held_back(row.text, request.stop, row.sent)
        text, row.sent = row.text[row.sent : safe], max(row.sent, safe)
        return Delta(row.index, token, text, logprob, top, None)

    def _finish(self, row: _Row, reason: str, delta: Delta) -> Delta:
        """The deadline ends a live row: what it held back goes out with its last delta."""
        if delta.finish_reason is not None:
            return delta
        row.done = reason
        rest, row.sent = row.text[row.sent :], len(row.text)
        return Delta(
            delta.index, delta.token_id, delta.text + rest, delta.logprob, delta.top_logprobs, reason
        )

    def _detokenize(self, row: _Row) -> str:
        """The text the row's newest token adds, once it ends on a whole character."""
        before = self.tokenizer.decode(row.ids[row.prefix : row.read], skip_special_tokens=True)
        after = self.tokenizer.decode(row.ids[row.prefix :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            row.prefix, row.read = row.read, len(row.ids)
            return after[len(before) :]
        return ""

    def _top(self, scores: np.ndarray, k: int) -> tuple[TokenLogprob, ...]:
        if k == 0:
            return ()
        best = np.argpartition(scores, -k)[-k:]
        best = best[np.argsort(-scores[best], kind="stable")]
        return tuple(
            TokenLogprob(int(i), self.tokenizer.decode([int(i)], skip_special_tokens=False), float(scores[i]))
            for i in best
        )

    def complete(self, request: CompletionRequest) -> list[Completion]:
        """The whole answer of every row: ``stream`` collected."""
        texts: list[list[str]] = [[] for _ in range(request.num_return_sequences)]
        steps: list[list[Delta]] = [[] for _ in range(request.num_return_sequences)]
        reasons: list[str] = ["length"] * request.num_return_sequences
        for deltas in self.stream(request):
            for delta in deltas:
                texts[delta.index].append(delta.text)
                if delta.token_id is not None:
                    steps[delta.index].append(delta)
                if delta.finish_reason is not None:
                    reasons[delta.index] = delta.finish_reason
        return [
            Completion(
                text="".join(text),
                tokens=len(row),
                finish_reason=reason,
                token_ids=tuple(int(d.token_id) for d in row if d.token_id is not None),
                logprobs=tuple(row) if request.logprobs is not None else (),
            )
            for text, row, reason in zip(texts, steps, reasons, strict=True)
        ]

    def generate(self, request: GenerationRequest) -> list[Continuation]:
        if not isinstance(request, CompletionRequest):
            raise TypeError("a causal LM generates from the CompletionRequest its parse made")
        return list(self.complete(request))


# --- helpers ------------------------------------------------------------------------------------


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 1024:.1f} KiB"


def _check_text(text: str, field: str) -> None:
    if not is_unicode(text):
        raise RequestError(
            f"{field} holds text that is not valid Unicode (a lone surrogate)",
            code="invalid_text",
            field=field,
        )
    if "\x00" in text:
        raise RequestError(
            f"{field} holds a NUL character, which no tokenizer reads", code="invalid_text", field=field
        )


def _integer(
    fields: dict[str, Any], name: str, default: int, low: int, high: int, names: dict[str, str]
) -> int:
    where = names.get(name, name)
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(
            f"{where} must be an integer, got {shown(value)}", code="invalid_type", field=where
        )
    if not low <= value <= high:
        raise RequestError(
            f"{where} is {shown(value)}; it must be between {low} and {high}",
            code="out_of_range",
            field=where,
        )
    return value


def _number(
    fields: dict[str, Any], name: str, default: float, low: float, high: float, *, low_open: bool = False
) -> float:
    value = fields.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(f"{name} must be a number, got {shown(value)}", code="invalid_type", field=name)
    # compared as given (NaN fails every comparison; a 400-digit integer never becomes a float)
    inside = (low < value if low_open else low <= value) and value <= high
    if not inside or (isinstance(value, float) and not math.isfinite(value)):
        bound = f"above {low}" if low_open else f"at least {low}"
        raise RequestError(
            f"{name} is {shown(value)}; it must be {bound} and at most {high}",
            code="out_of_range",
            field=name,
        )
    return float(value)


def _seed(fields: dict[str, Any]) -> int | None:
    value = fields.get("seed")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"seed must be an integer, got {shown(value)}", code="invalid_type", field="seed")
    if not -(2**63) <= value < 2**64:
        raise RequestError(
            f"seed is {shown(value)}; it must fit in 64 bits", code="out_of_range", field="seed"
        )
    return value


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list):
        raise RequestError("stop must be a string or a list of strings", code="invalid_type", field="stop")
    if len(stops) > MAX_STOP:
        raise RequestError(
            f"stop holds {len(stops)} strings, at most {MAX_STOP} are accepted",
            code="too_many_stops",
            field="stop",
        )
    for index, stop in enumerate(stops):
        where = f"stop[{index}]" if isinstance(value, list) else "stop"
        if not isinstance(stop, str) or not stop:
            raise RequestError(f"{where} must be a non-empty string", code="invalid_type", field=where)
        if len(stop) > MAX_STOP_CHARS:
            raise RequestError(
                f"{where} has {len(stop)} characters, at most {MAX_STOP_CHARS} are accepted",
                code="out_of_range",
                field=where,
            )
        _check_text(stop, where)
    return tuple(dict.fromkeys(stops))


def _find_stop(text: str, stops: tuple[str, ...], sent: int) -> int | None:
    """Where the first stop string starts in ``text``, searching only what has not gone out."""
    found = [at for stop in stops if (at := text.find(stop, sent)) >= 0]
    return min(found) if found else None


def _held_back(text: str, stops: tuple[str, ...], sent: int) -> int:
    """How many trailing characters of ``text`` could begin a stop string (not sent yet)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text) - sent), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
