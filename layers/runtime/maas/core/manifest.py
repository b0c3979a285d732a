"""The one typed form of a version's ``manifest.json``.

Writers (``training.export.write_version``, and so ``training.importer``) validate what they
write with ``Manifest.from_dict``; ``maas publish`` refuses a manifest it rejects; the model store
parses every downloaded manifest with it before any file is fetched. The JSON Schema
``schemas/manifest.schema.json`` describes the same document (a unit test keeps them in step).

Only ``name``, ``task`` and ``model`` are required: versions published before a key existed
(``features``, ``sample``, ``version``, ``published_at``...) keep loading. A key this module does
not know is kept in ``extra`` and written back by ``to_dict``, so nothing is lost. A JSON ``null``
for an optional key is read as the key being absent.

Plain frozen dataclasses, no pydantic: this module is imported on every cold start.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from maas.core.errors import ConfigurationError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
RESERVED_FILES = frozenset({"manifest.json", "model.onnx"})


class ManifestError(ConfigurationError):
    """A manifest that does not have the shape every reader relies on; ``field`` names the key."""

    code = "manifest_invalid"


def _fail(path: str, problem: str) -> ManifestError:
    return ManifestError(f"{path} {problem}", field=path)


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "must be an object")
    for key in value:
        if not isinstance(key, str):
            raise _fail(path, "must have string keys")
    return dict(value)


def _string(value: object, path: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise _fail(path, "must be a string")
    if not empty and not value:
        raise _fail(path, "must not be empty")
    return value


def _integer(value: object, path: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, "must be an integer")
    if value < minimum:
        raise _fail(path, f"must be at least {minimum}")
    return value


def _strings(value: object, path: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _fail(path, "must be an array")
    return tuple(_string(item, f"{path}[{i}]") for i, item in enumerate(value))


def _rest(doc: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    return {key: value for key, value in doc.items() if key not in known}


def _known(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls) if f.name != "extra")


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of the version: its sha256 (lowercase hex) and size in bytes."""

    sha256: str
    size: int | None = None
    file: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: object, path: str) -> FileEntry:
        doc = _object(value, path)
        if "sha256" not in doc:
            raise _fail(f"{path}.sha256", "is required")
        sha256 = _string(doc["sha256"], f"{path}.sha256")
        if not SHA256.match(sha256):
            raise _fail(f"{path}.sha256", "must be 64 lowercase hex digits")
        size = doc.get("size")
        file = doc.get("file")
        return cls(
            sha256=sha256,
            size=None if size is None else _integer(size, f"{path}.size"),
            file=None if file is None else _string(file, f"{path}.file", empty=False),
            extra=_rest(doc, _known(cls)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        if self.file is not None:
            out["file"] = self.file
        out["sha256"] = self.sha256
        if self.size is not None:
            out["size"] = self.size
        return out


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One graph input or output: its name, dtype and shape (``None`` for a free dimension)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: object, path: str) -> TensorSpec:
        doc = _object(value, path)
        for key in ("name", "dtype", "shape"):
            if key not in doc:
                raise _fail(f"{path}.{key}", "is required")
        shape = doc["shape"]
        if not isinstance(shape, list):
            raise _fail(f"{path}.shape", "must be an array")
        dims: list[int | None] = []
        for i, dim in enumerate(shape):
            dims.append(None if dim is None else _integer(dim, f"{path}.shape[{i}]"))
        return cls(
            name=_string(doc["name"], f"{path}.name", empty=False),
            dtype=_string(doc["dtype"], f"{path}.dtype", empty=False),
            shape=tuple(dims),
            extra=_rest(doc, _known(cls)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def _feature(value: object, path: str) -> dict[str, Any]:
    """One feature of a table: ``name``, ``type`` (number or string), ``missing``, ``categories``."""
    doc = _object(value, path)
    _string(doc.get("name"), f"{path}.name", empty=False)
    if doc.get("type") not in ("number", "string"):
        raise _fail(f"{path}.type", "must be 'number' or 'string'")
    if not isinstance(doc.get("missing", False), bool):
        raise _fail(f"{path}.missing", "must be a boolean")
    if doc.get("categories") is not None:
        _strings(doc["categories"], f"{path}.categories")
    return doc


@dataclass(frozen=True, slots=True)
class Signature:
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    #: a table's features in order, with their type and whether they may be missing
    features: tuple[Mapping[str, Any], ...] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: object, path: str) -> Signature:
        doc = _object(value, path)
        specs: dict[str, tuple[TensorSpec, ...]] = {}
        for key in ("inputs", "outputs"):
            items = doc.get(key, [])
            if not isinstance(items, list):
                raise _fail(f"{path}.{key}", "must be an array")
            specs[key] = tuple(TensorSpec.from_dict(s, f"{path}.{key}[{i}]") for i, s in enumerate(items))
        features = doc.get("features")
        if features is not None and not isinstance(features, list):
            raise _fail(f"{path}.features", "must be an array")
        return cls(
            inputs=specs["inputs"],
            outputs=specs["outputs"],
            features=None
            if features is None
            else tuple(_feature(f, f"{path}.features[{i}]") for i, f in enumerate(features)),
            extra=_rest(doc, _known(cls)),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            **self.extra,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }
        if self.features is not None:
            out["features"] = [dict(f) for f in self.features]
        return out

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)


@dataclass(frozen=True, slots=True)
class OnnxInfo:
    """The opset of each operator domain the graph uses, and the onnxruntime it was checked with."""

    opsets: Mapping[str, int] = field(default_factory=dict)
    onnxruntime: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, value: object, path: str) -> OnnxInfo:
        doc = _object(value, path)
        opsets = _object(doc.get("opsets", {}), f"{path}.opsets")
        runtime = doc.get("onnxruntime")
        return cls(
            opsets={k: _integer(v, f"{path}.opsets.{k}") for k, v in opsets.items()},
            onnxruntime=None if runtime is None else _string(runtime, f"{path}.onnxruntime"),
            extra=_rest(doc, _known(cls)),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.extra, "opsets": dict(self.opsets)}
        if self.onnxruntime is not None:
            out["onnxruntime"] = self.onnxruntime
        return out


def _artifact_name(name: str, path: str) -> str:
    if not name or "/" in name or "\\" in name or name in {".", ".."} or name in RESERVED_FILES:
        raise _fail(path, "must be a plain file name (no path), not manifest.json or model.onnx")
    return name


@dataclass(frozen=True, slots=True)
class Manifest:
    """A version's manifest. The field names are the JSON keys."""

    #: the model's name in the registry (an identifier)
    name: str
    #: the task type the runtime serves it with (``maas.core.tasks``)
    task: str
    #: ``model.onnx``: its sha256 and size
    model: FileEntry
    #: set by ``maas publish`` when the version number is claimed
    version: int | None = None
    #: set by ``maas publish``
    published_at: str | None = None
    #: when the version folder was written
    created_at: str | None = None
    #: the source framework: name, version, converter, estimator, graph rewrites...
    framework: Mapping[str, Any] | None = None
    #: the graph's opsets and the onnxruntime it was checked with
    onnx: OnnxInfo | None = None
    #: other files of the version (tokenizer.json, vocabularies, external tensor data), by name
    artifacts: Mapping[str, FileEntry] | None = None
    #: inputs and outputs read from the graph: names, dtypes, shapes
    signature: Signature | None = None
    #: which graph input/output plays which part (``input``, ``probability_output``...)
    io: Mapping[str, Any] | None = None
    #: class labels, in the model's class order
    labels: tuple[str, ...] | None = None
    #: feature names of a tabular model, in the graph's column order
    features: tuple[str, ...] | None = None
    #: the JSON Schema of a request's instances
    request_schema: Mapping[str, Any] | None = None
    #: held-out metrics (accuracy, f1, mae, rmse, r2, perplexity...)
    metrics: Mapping[str, Any] | None = None
    #: the parity gate's result: what was compared, how many differ, the largest difference
    parity: Mapping[str, Any] | None = None
    #: for a quantised version: the recipe, its own gate's result, every attempt
    quantisation: Mapping[str, Any] | None = None
    #: the first rows of the sample with what the graph answered (publish and promote re-check them)
    sample: Mapping[str, Any] | None = None
    #: data file hash, split, parameters, git revision
    provenance: Mapping[str, Any] | None = None
    #: keys this module does not know, kept as they were
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: object) -> Manifest:
        """Validate ``doc`` (a parsed ``manifest.json``); ``ManifestError`` names the first bad field."""
        data = _object(doc, "manifest")
        for key in ("name", "task", "model"):
            if data.get(key) is None:
                raise _fail(f"manifest.{key}", "is required")

        def opt(key: str) -> Any:
            return data.get(key)

        def mapping(key: str) -> dict[str, Any] | None:
            value = opt(key)
            return None if value is None else _object(value, f"manifest.{key}")

        artifacts = mapping("artifacts")
        sample = mapping("sample")
        if sample is not None and "instances" in sample and not isinstance(sample["instances"], list):
            raise _fail("manifest.sample.instances", "must be an array")
        version, created, published = opt("version"), opt("created_at"), opt("published_at")
        labels, features, onnx, signature = opt("labels"), opt("features"), opt("onnx"), opt("signature")
        return cls(
            name=_string(data["name"], "manifest.name", empty=False),
            task=_string(data["task"], "manifest.task", empty=False),
            model=FileEntry.from_dict(data["model"], "manifest.model"),
            version=None if version is None else _integer(version, "manifest.version", 1),
            published_at=None if published is None else _string(published, "manifest.published_at"),
            created_at=None if created is None else _string(created, "manifest.created_at"),
            framework=mapping("framework"),
            onnx=None if onnx is None else OnnxInfo.from_dict(onnx, "manifest.onnx"),
            artifacts=None
            if artifacts is None
            else {
                _artifact_name(k, f"manifest.artifacts.{k}"): FileEntry.from_dict(
                    v, f"manifest.artifacts.{k}"
                )
                for k, v in artifacts.items()
            },
            signature=None if signature is None else Signature.from_dict(signature, "manifest.signature"),
            io=mapping("io"),
            labels=None if labels is None else _strings(labels, "manifest.labels"),
            features=None if features is None else _strings(features, "manifest.features"),
            request_schema=mapping("request_schema"),
            metrics=mapping("metrics"),
            parity=mapping("parity"),
            quantisation=mapping("quantisation"),
            sample=sample,
            provenance=mapping("provenance"),
            extra=_rest(data, _known(cls)),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document again: ``Manifest.from_dict(doc).to_dict() == doc`` (nulls aside)."""
        out: dict[str, Any] = dict(self.extra)
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, FileEntry | OnnxInfo | Signature):
                out[f.name] = value.to_dict()
            elif f.name == "artifacts":
                out[f.name] = {k: entry.to_dict() for k, entry in value.items()}
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            elif isinstance(value, Mapping):
                out[f.name] = dict(value)
            else:
                out[f.name] = value
        return out

    @property
    def files(self) -> dict[str, FileEntry]:
        """Every file of the version, the model first, with what its sha256 must be."""
        model_file = "model.onnx"
        return {model_file: self.model, **(self.artifacts or {})}
