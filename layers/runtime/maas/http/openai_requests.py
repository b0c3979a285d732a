"""OpenAI request bodies read into our terms: which model version, which texts, which settings.

OpenAI's clients send fields a server may not know (``user``, ``metadata``, new ones every
release): those are ignored, never refused. The fields we read are checked here, each failure a
``RequestError`` naming the field, which the one error mapping answers in OpenAI's shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from maas.core.errors import NotFound, RequestError, shown
from maas.core.registry import check_alias
from maas.core.runtime import ModelRuntime
from maas.core.service import ServedModel
from maas.core.signature import is_unicode

# ``name``, ``name@3`` (a version) or ``name:stable`` (an alias)
_MODEL_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:@([0-9]{1,18})|:([A-Za-z0-9_.-]{1,64}))?$")


@dataclass(frozen=True, slots=True)
class ModelRef:
    name: str
    version: int | None = None
    alias: str | None = None


def model_id(served: ServedModel) -> str:
    """What a response's ``model`` says: the model and the version that answered."""
    return f"{served.name}@{served.version}"


def parse_model(raw: Any) -> ModelRef:
    """``model``: a registry name, ``name@version`` or ``name:alias``."""
    if raw is None:
        raise RequestError("model is required: a registry model name", code="missing_field", field="model")
    if not isinstance(raw, str):
        raise RequestError(
            f"model must be a string, got {type(raw).__name__}", code="invalid_type", field="model"
        )
    found = _MODEL_REF.fullmatch(raw)
    if found is None:
        raise NotFound(
            f"model {shown(raw)} does not exist: name a registry model as name, name@version or name:alias",
            code="model_not_found",
            field="model",
        )
    name, version, alias = found.groups()
    if version is not None and int(version) < 1:
        raise NotFound(
            f"model {shown(raw)}: versions are numbers from 1", code="model_not_found", field="model"
        )
    return ModelRef(name, int(version) if version else None, alias)


def resolve_model(runtime: ModelRuntime, raw: Any, path_model: str | None = None) -> ServedModel:
    """The version a body's ``model`` names, on a function that serves it: the alias's (the
    function's own alias by default), or a version by number. Under ``/models/{m}/v1`` the body
    must name ``m``."""
    ref = parse_model(raw)
    if path_model is not None and ref.name != path_model:
        raise NotFound(
            f"this route serves model {shown(path_model)}, the body names {shown(ref.name)}",
            code="model_not_found",
            field="model",
        )
    name = runtime.model_for(ref.name)
    service = runtime.service
    if ref.version is not None:
        return service.version(name, ref.version)
    if ref.alias is None:
        return service.current(name)
    alias = service.registry.get_alias(name, check_alias(ref.alias))
    if alias is None:
        raise NotFound(f"model {name!r} has no alias {ref.alias!r}", code="alias_not_found", field="model")
    return service.version(name, alias.version)


def embedding_inputs(body: dict[str, Any], max_batch: int) -> list[str]:
    """``input``: one text or a list of texts (token arrays are OpenAI's too, but our models
    tokenise themselves: they are refused with a message that says so)."""
    raw = body.get("input")
    if raw is None:
        raise RequestError(
            "input is required: a string or a list of strings", code="missing_field", field="input"
        )
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list):
        raise RequestError(
            f"input must be a string or a list of strings, got {type(raw).__name__}",
            code="invalid_type",
            field="input",
        )
    if not texts:
        raise RequestError("input must not be empty", code="empty_batch", field="input")
    if len(texts) > max_batch:
        raise RequestError(
            f"input holds {len(texts)} texts, at most {max_batch} are allowed per request",
            code="batch_too_large",
            field="input",
        )
    for index, text in enumerate(texts):
        where = "input" if isinstance(raw, str) else f"input[{index}]"
        if isinstance(text, int | list) and not isinstance(text, bool):
            raise RequestError(
                f"{where}: token ids are not accepted; send text (the model tokenises it)",
                code="invalid_type",
                field=where,
            )
        if not isinstance(text, str):
            raise RequestError(
                f"{where} must be a string, got {type(text).__name__}", code="invalid_type", field=where
            )
        if not is_unicode(text):
            raise RequestError(f"{where} holds a lone surrogate", code="invalid_text", field=where)
    return texts


def choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    """A field that takes one of a few strings."""
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise RequestError(
            f"{name} must be one of {', '.join(allowed)}, got {shown(value)}",
            code="invalid_value",
            field=name,
        )
    return str(value)
