"""``maas chat MODEL``: a small terminal client that streams a model's replies as they come.

For trying a model by hand against ``maas serve`` (or any OpenAI-compatible server): each line
you type is a user message; the reply is printed token by token from the server-sent events of
``POST /v1/chat/completions`` with ``stream: true``. The conversation is kept, so the model sees
it all. Standard library only: the CLI does not need the ``openai`` package.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from maas.core.errors import ConfigurationError, RequestError

DEFAULT_URL = "http://127.0.0.1:3000/v1"


@dataclass
class Reply:
    text: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    first_token_s: float | None


@dataclass
class Chat:
    """One conversation with ``model`` at ``base_url`` (``.../v1``)."""

    base_url: str
    model: str
    system: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.system:
            self.messages.append({"role": "system", "content": self.system})

    def _events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The server-sent events of one streamed request, as they arrive."""
        request = Request(
            self.base_url.rstrip("/") + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json", "accept": "text/event-stream"},
            method="POST",
        )
        try:
            response = urlopen(request, timeout=300)
        except HTTPError as error:
            raise RequestError(_error_message(error.read()), field="model") from None
        except URLError as error:
            raise ConfigurationError(f"cannot reach {self.base_url}: {error.reason}", field="url") from None
        with response:
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                event: dict[str, Any] = json.loads(data)
                if "error" in event:
                    raise RequestError(_error_message(data.encode()), field="stream")
                yield event

    def say(self, text: str, out: TextIO = sys.stdout) -> Reply:
        """Send a user message; print the reply as it streams; keep both in the conversation."""
        self.messages.append({"role": "user", "content": text})
        body = {
            "model": self.model,
            "messages": self.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.settings,
        }
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        finish: str | None = None
        usage = None
        for event in self._events(body):
            usage = event.get("usage") or usage
            for choice in event.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    if first is None:
                        first = time.perf_counter() - started
                    parts.append(piece)
                    out.write(piece)
                    out.flush()
                finish = choice.get("finish_reason") or finish
        out.write("\n")
        reply = "".join(parts)
        self.messages.append({"role": "assistant", "content": reply})
        return Reply(reply, finish, usage, first)


def _error_message(raw: bytes) -> str:
    """An OpenAI-shaped error's message (or the raw text of anything else)."""
    try:
        document = json.loads(raw)
        return str(document["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", errors="replace")[:300]


def run(chat: Chat, message: str | None, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout) -> int:
    """One message (``--message``), or a conversation read line by line until EOF or ``/exit``."""
    if message is not None:
        reply = chat.say(message, out)
        _footer(reply)
        return 0
    print(f"chatting with {chat.model} at {chat.base_url} (Ctrl-D or /exit ends)", file=sys.stderr)
    while True:
        print("> ", end="", file=sys.stderr, flush=True)
        line = stdin.readline()
        if not line or line.strip() == "/exit":
            return 0
        if line.strip():
            _footer(chat.say(line.strip(), out))


def _footer(reply: Reply) -> None:
    """What the reply cost, on stderr (stdout holds the reply alone)."""
    usage = reply.usage or {}
    first = "" if reply.first_token_s is None else f", first token after {reply.first_token_s * 1000:.0f} ms"
    print(
        f"[{reply.finish_reason}; {usage.get('prompt_tokens', '?')} tokens in, "
        f"{usage.get('completion_tokens', '?')} out{first}]",
        file=sys.stderr,
    )
