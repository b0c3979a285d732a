"""The model catalogue, ``models.toml``: which models get a Lambda function of their own.

Every per-model thing the project generates (``template.yaml``'s functions, roles, queues, alarms
and dashboard rows, the sample events, the demo's list, the tests' parameters) derives from it.
``[defaults]`` holds the shared settings once; each ``[models.<name>]`` table holds only what
differs. Anything unexpected (an unknown key, a wrong type, a bad name) is a
``ConfigurationError`` naming the table and the field, before anything is written.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from maas.core.errors import ConfigurationError
from training.data import PROJECT_ROOT

CATALOGUE = PROJECT_ROOT / "models.toml"
FAMILIES = ("text", "image", "generator", "embedding")
# Names the template already uses for functions of its own (RegistryFunction, MultiModelFunction).
RESERVED = frozenset({"registry", "multi_model"})
# The registry's rule for a model name (maas.core.registry.check_model_name).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One catalogue model: its function's settings and what the generators need to know of it."""

    name: str
    #: the function's description in the template and the dashboard
    description: str
    #: what sample events ``maas events`` writes for it: text, image, generator or embedding
    family: str
    #: the function's memory (Lambda gives CPU in proportion: a second vCPU above 1,769 MB)
    memory_mb: int
    #: the function's timeout; HTTP callers are cut at API Gateway's 30 s whatever it says
    timeout_s: int
    #: the function's ``/tmp``, where downloaded versions are cached
    ephemeral_storage_mb: int
    #: rows per ``session.run`` when an S3 file is scored in one invocation
    batch_chunk_rows: int
    #: the Distributed Map of large files (ops/state_machine.py): rows per child batch
    map_items_per_batch: int = 2000
    #: bytes of input per child batch (one state input: Step Functions' limit is 256 KiB)
    map_input_bytes_per_batch: int = 262_144
    #: child batches at once (the account's Lambda concurrency is the real bound)
    map_max_concurrency: int = 100
    #: the share of child batches that may fail before the job stops early
    map_tolerated_failure_percent: int = 0
    #: reserved concurrency of the function (none: it shares the account's pool)
    reserved_concurrency: int | None = None
    #: the predicted labels the dashboard charts (none for a generator or an embedding model)
    labels: tuple[str, ...] = ()
    #: onnxruntime's intra-op threads (SESSION_THREADS): one per vCPU the memory size buys
    session_threads: int = 1
    # a function URL in RESPONSE_STREAM mode (AWS_IAM) for OpenAI's streamed completions
    stream: bool = False

    @property
    def logical_id(self) -> str:
        """The CamelCase prefix of the model's resources: ``spam_nb`` -> ``SpamNb``."""
        return camel_case(self.name)

    @property
    def function(self) -> str:
        return f"{self.logical_id}Function"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.logical_id}DeadLetterQueue"

    @property
    def state_machine(self) -> str:
        return f"{self.logical_id}BatchStateMachine"

    @property
    def verb(self) -> str:
        """The plain route the model's sample requests use (the function declares both)."""
        return {"generator": "generate", "embedding": "embed"}.get(self.family, "predict")


@dataclass(frozen=True, slots=True)
class Catalogue:
    models: tuple[ModelEntry, ...]
    # ``[registry] extra_models``: models served by the multi-model function only, which the
    # registry's publish, promote and retire policies must name too.
    extra_registry_models: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(model.name for model in self.models)

    @property
    def registry_models(self) -> tuple[str, ...]:
        """Every model the registry policies name: the catalogue's, then the extra ones."""
        return self.names + tuple(n for n in self.extra_registry_models if n not in self.names)

    def __getitem__(self, name: str) -> ModelEntry:
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(name)

    def __iter__(self) -> Any:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)


def camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def snake_case(logical_id: str) -> str:
    """The inverse of ``camel_case`` for names without digits after an underscore: ``MultiModel``."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in logical_id).lstrip("_")


# field -> (accepted types, lowest value for integers)
_FIELDS: dict[str, tuple[tuple[type, ...], int | None]] = {
    "description": ((str,), None),
    "family": ((str,), None),
    "memory_mb": ((int,), 128),
    "timeout_s": ((int,), 1),
    "ephemeral_storage_mb": ((int,), 512),
    "batch_chunk_rows": ((int,), 1),
    "map_items_per_batch": ((int,), 1),
    "map_input_bytes_per_batch": ((int,), 1024),
    "map_max_concurrency": ((int,), 1),
    "map_tolerated_failure_percent": ((int,), 0),
    "reserved_concurrency": ((int,), 0),
    "session_threads": ((int,), 1),
    "labels": ((list,), None),
    "stream": ((bool,), None),
}
# Lambda's limits, and Step Functions' (a batch is one state input: 256 KiB; 10,000 children at once)
_UPPER = {
    "memory_mb": 10240,
    "timeout_s": 900,
    "session_threads": 6,  # Lambda's most vCPUs (at 10,240 MB)
    "ephemeral_storage_mb": 10240,
    "map_input_bytes_per_batch": 262_144,
    "map_max_concurrency": 10_000,
    "map_tolerated_failure_percent": 100,
}
_REQUIRED = tuple(
    f.name
    for f in fields(ModelEntry)
    if f.name not in {"name", "reserved_concurrency", "labels", "stream"} and not f.name.startswith("map_")
)


def _fail(table: str, key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"models.toml [{table}] {key}: {message}", field=f"{table}.{key}")


def _check(table: str, values: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        if key not in _FIELDS:
            raise _fail(table, key, f"unknown key (known: {', '.join(sorted(_FIELDS))})")
        types, lowest = _FIELDS[key]
        # bool is an int to Python; in a catalogue `memory_mb = true` is a mistake
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise _fail(table, key, f"expected {types[0].__name__}, got {type(value).__name__} {value!r}")
        if lowest is not None and value < lowest:
            raise _fail(table, key, f"{value} is below the minimum {lowest}")
        if key in _UPPER and value > _UPPER[key]:
            raise _fail(table, key, f"{value} is above the AWS maximum {_UPPER[key]}")
        if key == "labels" and not all(isinstance(label, str) and label for label in value):
            raise _fail(table, key, f"expected a list of non-empty strings, got {value!r}")
        if key == "family" and value not in FAMILIES:
            raise _fail(table, key, f"{value!r} is not one of {', '.join(FAMILIES)}")
    return values


def _check_name(name: str) -> None:
    if not (name.isidentifier() and name.isascii() and name == name.lower()) or name.startswith("_"):
        raise _fail(
            f"models.{name}", "name", "a model name must be a lowercase Python identifier (e.g. spam_nb)"
        )
    if name in RESERVED:
        raise _fail(f"models.{name}", "name", f"{name!r} is reserved for a function of the template's own")


def parse(document: dict[str, Any]) -> Catalogue:
    """Validate a decoded ``models.toml`` and merge each model table over ``[defaults]``."""
    unknown = set(document) - {"defaults", "models", "registry"}
    if unknown:
        raise _fail(
            sorted(unknown)[0], "", "unknown table (expected [defaults], [registry] and [models.<name>])"
        )
    extra_registry_models = _registry_models(document.get("registry", {}))
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise _fail("defaults", "", "expected a table")
    _check("defaults", defaults)
    tables = document.get("models", {})
    if not isinstance(tables, dict) or not tables:
        raise _fail("models", "", "expected at least one [models.<name>] table")
    entries = []
    for name, table in tables.items():
        _check_name(name)
        if not isinstance(table, dict):
            raise _fail(f"models.{name}", "", "expected a table")
        merged = {**defaults, **_check(f"models.{name}", table)}
        for key in _REQUIRED:
            if key not in merged:
                raise _fail(f"models.{name}", key, "missing (and not in [defaults])")
        merged["labels"] = tuple(merged.get("labels", ()))
        if merged["family"] in {"generator", "embedding"} and merged["labels"]:
            raise _fail(f"models.{name}", "labels", f"an {merged['family']} model predicts no labels")
        entries.append(ModelEntry(name=name, **merged))
    return Catalogue(tuple(entries), extra_registry_models)


def _registry_models(table: Any) -> tuple[str, ...]:
    """``[registry] extra_models = [...]``: valid model names, each once."""
    if not isinstance(table, dict):
        raise _fail("registry", "", "expected a table")
    unknown = set(table) - {"extra_models"}
    if unknown:
        raise _fail("registry", sorted(unknown)[0], "unknown key (known: extra_models)")
    names = table.get("extra_models", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _fail("registry", "extra_models", f"expected a list of model names, got {names!r}")
    for name in names:
        if not _IDENTIFIER.fullmatch(name):
            raise _fail("registry", "extra_models", f"{name!r} is not a valid model name")
    return tuple(dict.fromkeys(names))


def load_catalogue(path: Path = CATALOGUE) -> Catalogue:
    """``models.toml``, validated; ``ConfigurationError`` naming the table and field if it is wrong."""
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path.name}: {error}", field="models.toml") from error
    return parse(document)


load = load_catalogue
