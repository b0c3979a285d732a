"""One manifest schema: the dataclass ``maas.core.manifest.Manifest`` and the JSON Schema
``schemas/manifest.schema.json`` accept what every writer writes, agree with each other, and refuse
a malformed manifest naming the field, at publish (exit 1) and at load (503, never a 500)."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from maas.core.manifest import FileEntry, Manifest, ManifestError, TensorSpec
from maas.core.registry import MANIFEST_NAME
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET, body_of, load_event, make_function
from tests.e2e.byom import ImportedModel, imported, wine  # noqa: F401  (session fixtures)
from training.data import PROJECT_ROOT

SCHEMA_FILE = PROJECT_ROOT / "schemas" / "manifest.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())

# every trainer's session fixture (tests/conftest.py); the Keras ones are shared with their own tests
TRAINERS = [
    "trained_spam_nb",
    "trained_spam_mlp",
    "trained_spam_lstm",
    "trained_digits_cnn",
    "trained_moby_gen",
]


def check_both(manifest: dict[str, Any]) -> Manifest:
    errors = sorted(VALIDATOR.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
    typed = Manifest.from_dict(manifest)
    assert typed.to_dict() == manifest  # nothing lost, nothing added
    return typed


def read(directory: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((directory / MANIFEST_NAME).read_text())
    return manifest


def test_the_json_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("fixture", TRAINERS)
def test_every_trainer_writes_a_manifest_both_schemas_accept(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    trained = request.getfixturevalue(fixture)
    typed = check_both(read(trained.directory))
    assert typed.signature is not None and typed.signature.inputs
    assert typed.onnx is not None and typed.onnx.opsets
    assert typed.model.size and typed.model.size > 0


def test_every_imported_model_writes_a_manifest_both_schemas_accept(
    imported: dict[str, ImportedModel],  # noqa: F811
) -> None:
    assert imported
    for model in imported.values():
        typed = check_both(read(model.directory))
        assert typed.name == model.name


def test_every_manifest_written_in_this_session_is_accepted(
    trained_spam_nb: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Whatever else the session has trained or imported so far (the folders the fixtures make)."""
    base = tmp_path_factory.getbasetemp()
    found = [
        p for p in base.glob("*/*/" + MANIFEST_NAME) if p.parent.parent.name.startswith(("models", "byom"))
    ]
    assert found
    for path in found:
        check_both(json.loads(path.read_text()))


def test_a_published_manifest_with_version_and_published_at_is_accepted(
    registry: RegistryAdmin, spam_nb_dir: Path
) -> None:
    published = registry.publish(spam_nb_dir)
    typed = check_both(registry.read_manifest("spam_nb", published.version))
    assert typed.version == published.version and typed.published_at


def test_an_older_manifest_without_the_later_keys_still_loads() -> None:
    """The first manifests had no features, sample, version or published_at; the least is three keys."""
    minimal = {"name": "old", "task": "text-classification", "model": {"sha256": "0" * 64}}
    typed = check_both(minimal)
    assert typed.labels is None and typed.artifacts is None and typed.files == {"model.onnx": typed.model}
    with_nulls = {**minimal, "features": None, "sample": None}
    assert not list(VALIDATOR.iter_errors(with_nulls))
    assert Manifest.from_dict(with_nulls).to_dict() == minimal  # null reads as absent


def test_unknown_keys_are_kept_everywhere(spam_nb_dir: Path) -> None:
    manifest = read(spam_nb_dir)
    manifest["owner"] = {"team": "fraud"}
    manifest["model"]["compressed"] = False
    manifest["signature"]["inputs"][0]["doc"] = "the message"
    typed = check_both(manifest)
    assert typed.extra == {"owner": {"team": "fraud"}}
    assert typed.model.extra == {"compressed": False}


def _schema_keys(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    return set(schema["properties"]), set(schema.get("required", []))


def _dataclass_keys(cls: type) -> tuple[set[str], set[str]]:
    names = {f.name for f in dataclasses.fields(cls) if f.name != "extra"}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    return names, required


@pytest.mark.parametrize(
    ("cls", "schema"),
    [
        (Manifest, SCHEMA),
        (FileEntry, SCHEMA["$defs"]["fileEntry"]),
        (TensorSpec, SCHEMA["$defs"]["tensorSpec"]),
    ],
    ids=["Manifest", "FileEntry", "TensorSpec"],
)
def test_the_json_schema_and_the_dataclass_name_the_same_keys(cls: type, schema: dict[str, Any]) -> None:
    assert _schema_keys(schema) == _dataclass_keys(cls)


def test_the_nested_objects_name_the_same_keys() -> None:
    from maas.core.manifest import OnnxInfo, Signature

    properties = SCHEMA["properties"]
    assert set(properties["onnx"]["properties"]) == _dataclass_keys(OnnxInfo)[0]
    assert set(properties["signature"]["properties"]) == _dataclass_keys(Signature)[0]


BROKEN = [
    (lambda m: m["labels"].__setitem__(1, 7), "manifest.labels[1] must be a string"),
    (lambda m: m.pop("task"), "manifest.task is required"),
    (lambda m: m.__setitem__("name", ""), "manifest.name must not be empty"),
    (
        lambda m: m["model"].__setitem__("sha256", "abc"),
        "manifest.model.sha256 must be 64 lowercase hex digits",
    ),
    (lambda m: m["model"].__setitem__("size", "big"), "manifest.model.size must be an integer"),
    (lambda m: m["model"].__setitem__("size", True), "manifest.model.size must be an integer"),
    (lambda m: m.__setitem__("io", ["text"]), "manifest.io must be an object"),
    (
        lambda m: m["signature"]["outputs"][0].__setitem__("shape", [None, "2"]),
        "manifest.signature.outputs[0].shape[1] must be an integer",
    ),
    (lambda m: m["signature"]["inputs"][0].pop("dtype"), "manifest.signature.inputs[0].dtype is required"),
    (
        lambda m: m["onnx"]["opsets"].__setitem__("ai.onnx", "22"),
        "manifest.onnx.opsets.ai.onnx must be an integer",
    ),
    (
        lambda m: m.__setitem__("artifacts", {"../etc/passwd": {"sha256": "0" * 64}}),
        "manifest.artifacts.../etc/passwd must be a plain file name",
    ),
    (lambda m: m.__setitem__("version", 0), "manifest.version must be at least 1"),
    (lambda m: m.__setitem__("features", "a,b"), "manifest.features must be an array"),
    (lambda m: m.__setitem__("sample", {"instances": "x"}), "manifest.sample.instances must be an array"),
]


@pytest.mark.parametrize(("breaking", "message"), BROKEN, ids=[m for _, m in BROKEN])
def test_a_malformed_manifest_is_refused_by_both_naming_the_field(
    breaking: Any, message: str, spam_nb_dir: Path
) -> None:
    manifest = copy.deepcopy(read(spam_nb_dir))
    breaking(manifest)
    with pytest.raises(ManifestError) as refused:
        Manifest.from_dict(manifest)
    assert refused.value.message.startswith(message), refused.value.message
    assert refused.value.field and message.startswith(refused.value.field)
    assert refused.value.code == "manifest_invalid"
    assert list(VALIDATOR.iter_errors(manifest)), "the JSON Schema accepted it"


def test_a_manifest_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ManifestError, match="manifest must be an object"):
        Manifest.from_dict(["name"])


def broken_copy(spam_nb_dir: Path, destination: Path) -> Path:
    shutil.copytree(spam_nb_dir, destination)
    manifest = read(destination)
    manifest["labels"] = ["ham", 2]
    (destination / MANIFEST_NAME).write_text(json.dumps(manifest))
    return destination


def test_publish_refuses_a_malformed_manifest_naming_the_field(
    registry: RegistryAdmin, spam_nb_dir: Path, tmp_path: Path, s3: Any
) -> None:
    folder = broken_copy(spam_nb_dir, tmp_path / "spam_nb")
    with pytest.raises(ManifestError, match=r"refusing to publish .*manifest.labels\[1\] must be a string"):
        registry.publish(folder)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)  # nothing was uploaded


def test_the_cli_refuses_a_malformed_manifest_in_one_line_with_exit_1(
    spam_nb_dir: Path, tmp_path: Path
) -> None:
    folder = broken_copy(spam_nb_dir, tmp_path / "spam_nb")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "maas"), "publish", str(folder), "--bucket", BUCKET],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "", "AWS_DEFAULT_REGION": "us-east-1", "PYTHONPATH": ":".join(sys.path)},
    )
    assert result.returncode == 1, result
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "manifest.labels[1] must be a string" in result.stderr


def test_a_malformed_published_manifest_is_a_503_naming_the_field(
    registry: RegistryAdmin, spam_nb_dir: Path, tmp_path: Path, s3: Any
) -> None:
    folder = broken_copy(spam_nb_dir, tmp_path / "spam_nb")
    published = registry.publish(folder, validate=False)  # publish itself refuses it
    registry.set_alias("spam_nb", "production", published.version)
    response = make_function("spam_nb", s3, tmp_path)(load_event("spam_nb", "predict.json"))
    body = body_of(response)
    assert response["statusCode"] == 503, body
    assert body["error"]["code"] == "manifest_invalid"
    assert "manifest.labels[1] must be a string" in body["error"]["message"]


def test_readiness_names_the_field_of_a_malformed_published_manifest(
    registry: RegistryAdmin, spam_nb_dir: Path, tmp_path: Path
) -> None:
    from maas.core.readiness import unready_reason

    good = registry.publish(spam_nb_dir)
    bad = registry.publish(broken_copy(spam_nb_dir, tmp_path / "spam_nb"), validate=False)
    assert unready_reason(registry, "spam_nb", good.version) is None
    reason = unready_reason(registry, "spam_nb", bad.version)
    assert reason == "manifest.json is malformed: manifest.labels[1] must be a string"
