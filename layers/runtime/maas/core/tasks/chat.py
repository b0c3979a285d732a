"""A model's chat template (``chat_template.jinja``), rendered as Hugging Face renders it.

The template is a versioned artifact: the text it renders is what the model was trained to read.
Rendered in Jinja2's immutable sandbox (a template comes from whoever published the version),
with the globals and filters transformers gives it: ``raise_exception``, ``tojson``,
``strftime_now``, ``bos_token``/``eos_token`` and ``add_generation_prompt``. Jinja2 is imported on
the first chat request only: a plain completion never pays for it.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from maas.core.errors import RequestError, cut, shown

ROLES = ("system", "developer", "user", "assistant", "tool")
#: messages a conversation may hold: what a 1 MB body allows, bounded for the renderer's sake
MAX_MESSAGES = 4096


class ChatTemplate:
    """One version's template, compiled once."""

    def __init__(self, path: Path, bos_token: str, eos_token: str) -> None:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise
        environment.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.template = environment.from_string(path.read_text(encoding="utf-8"))
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: Any, field: str = "messages") -> str:
        """The prompt for ``messages`` with the assistant's turn opened; a 400 names what is wrong."""
        checked = check_messages(messages, field)
        from jinja2 import TemplateError

        try:
            return str(
                self.template.render(
                    messages=checked,
                    add_generation_prompt=True,
                    bos_token=self.bos_token,
                    eos_token=self.eos_token,
                )
            )
        except _TemplateRefusal as refusal:
            raise RequestError(
                f"{field}: the model's chat template refuses them: {cut(str(refusal))}",
                code="invalid_messages",
                field=field,
            ) from None
        except (TemplateError, TypeError, ValueError, KeyError, IndexError) as error:
            raise RequestError(
                f"{field}: the model's chat template cannot render them: {type(error).__name__}: {cut(str(error))}",
                code="invalid_messages",
                field=field,
            ) from None


def check_messages(messages: Any, field: str = "messages") -> list[dict[str, str]]:
    """A non-empty list of ``{"role", "content"}``; content a string or a list of text parts."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(f"{field} must be a non-empty list of messages", code="invalid_type", field=field)
    if len(messages) > MAX_MESSAGES:
        raise RequestError(
            f"{field} holds {len(messages)} messages, at most {MAX_MESSAGES} are accepted",
            code="too_many_messages",
            field=field,
        )
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        where = f"{field}[{index}]"
        if not isinstance(message, dict):
            raise RequestError(f"{where} must be an object", code="invalid_type", field=where)
        role = message.get("role")
        if role not in ROLES:
            raise RequestError(
                f"{where}.role is {shown(role)}; it must be one of {list(ROLES)}",
                code="invalid_value",
                field=f"{where}.role",
            )
        checked.append({"role": str(role), "content": _content(message.get("content"), f"{where}.content")})
    return checked


def _content(content: Any, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise RequestError(
                    f"{where}[{index}] must be a text part {{'type': 'text', 'text': ...}}",
                    code="invalid_type",
                    field=f"{where}[{index}]",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(f"{where} must be a string or a list of text parts", code="invalid_type", field=where)


class _TemplateRefusal(Exception):
    """The template's own ``raise_exception`` (roles that do not alternate, a missing system turn)."""


def _raise(message: str) -> None:
    raise _TemplateRefusal(message)


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)
