"""The lifecycle API on the registry (moto in-process): promote, rollback, retire, delete, diff."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from maas.core.errors import Conflict
from ops.lifecycle import Lifecycle, signature_changes
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET


@pytest.fixture
def lifecycle(registry: RegistryAdmin, spam_nb_dir: Path) -> Lifecycle:
    registry.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)
    lifecycle = Lifecycle(registry)
    lifecycle.promote("spam_nb", 1, "production")
    return lifecycle


def edited_copy(source: Path, destination: Path, edit: Any) -> Path:
    """The same model files with an edited manifest (the sha256 covers the files, not the manifest)."""
    shutil.copytree(source, destination)
    manifest = json.loads((destination / "manifest.json").read_text())
    edit(manifest)
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def test_promote_and_rollback_record_previous_revision_and_history(lifecycle: Lifecycle) -> None:
    promoted = lifecycle.promote("spam_nb", 2, "production")
    assert (promoted.version, promoted.previous, promoted.revision) == (2, 1, 2)
    back = lifecycle.rollback("spam_nb", "production")
    assert (back.version, back.previous, back.revision) == (1, 2, 3)
    stored = lifecycle.aliases("spam_nb")
    assert [(a.alias, a.version, a.previous, a.revision) for a in stored] == [("production", 1, 2, 3)]
    history = lifecycle.history("spam_nb", "production")
    assert [(h["revision"], h["action"], h["previous"], h["version"]) for h in history] == [
        (1, "promote", None, 1),
        (2, "promote", 1, 2),
        (3, "rollback", 2, 1),
    ]


def test_a_rollback_without_a_previous_version_is_refused(lifecycle: Lifecycle) -> None:
    lifecycle.promote("spam_nb", 2, "staging")
    with pytest.raises(Conflict, match="no previous version") as raised:
        lifecycle.rollback("spam_nb", "staging")
    assert raised.value.code == "no_previous_version"
    assert lifecycle.registry.get_alias("spam_nb", "staging").version == 2  # type: ignore[union-attr]


def test_retire_is_refused_while_an_alias_points_to_the_version(lifecycle: Lifecycle, s3: Any) -> None:
    with pytest.raises(Conflict, match="production") as raised:
        lifecycle.retire("spam_nb", 1)
    assert raised.value.code == "version_aliased"
    assert lifecycle.registry.status("spam_nb", 1) == "active"
    lifecycle.retire("spam_nb", 2)
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="models/spam_nb/versions/2/model.onnx")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"model": "spam_nb", "version": "2", "status": "retired"}
    with pytest.raises(Conflict, match="retired: only active versions"):
        lifecycle.promote("spam_nb", 2, "production")


def test_delete_is_refused_unless_retired_and_then_removes_every_object_version(
    lifecycle: Lifecycle, s3: Any, spam_nb_dir: Path
) -> None:
    with pytest.raises(Conflict, match="it is active; retire it first") as raised:
        lifecycle.delete("spam_nb", 2)
    assert raised.value.code == "version_not_retired"
    lifecycle.retire("spam_nb", 2)
    removed = lifecycle.delete("spam_nb", 2)
    left = s3.list_object_versions(Bucket=BUCKET, Prefix="models/spam_nb/versions/2/")
    assert removed == 3  # manifest, model, publication record
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    assert lifecycle.registry.list_versions("spam_nb") == [1]
    assert lifecycle.registry.publish(spam_nb_dir).version == 2  # the number is free again


def test_describe_shows_status_aliases_metrics_parity_provenance_sha256_and_publication(
    lifecycle: Lifecycle, spam_nb_dir: Path
) -> None:
    lifecycle.promote("spam_nb", 1, "staging")
    facts = lifecycle.describe("spam_nb", 1)
    manifest = json.loads((spam_nb_dir / "manifest.json").read_text())
    assert facts["status"] == "active"
    assert facts["aliases"] == ["production", "staging"]
    assert facts["metrics"] == manifest["metrics"]
    assert facts["parity"] == manifest["parity"] and facts["parity"]["passed"] is True
    assert facts["provenance"] == manifest["provenance"]
    assert facts["sha256"] == manifest["model"]["sha256"]
    objects = facts["publication"]["objects"]
    assert set(objects) == {"manifest.json", "model.onnx"} and all(o["version_id"] for o in objects.values())
    assert facts["integrity"] == "intact"
    assert lifecycle.describe("spam_nb", 2)["aliases"] == []


def test_describe_reports_a_replaced_object(lifecycle: Lifecycle, s3: Any, spam_nb_dir: Path) -> None:
    key = "models/spam_nb/versions/2/model.onnx"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(spam_nb_dir / "model.onnx").read_bytes())
    assert lifecycle.describe("spam_nb", 2)["integrity"] == "replaced after publication: model.onnx"
    assert lifecycle.describe("spam_nb", 1)["integrity"] == "intact"


def test_diff_compares_metrics_and_signatures(
    registry: RegistryAdmin, lifecycle: Lifecycle, spam_nb_dir: Path, tmp_path: Path
) -> None:
    def worse_and_wider(manifest: dict[str, Any]) -> None:
        manifest["metrics"]["accuracy"] = manifest["metrics"]["accuracy"] - 0.25
        manifest["signature"]["outputs"].append({"name": "scores", "dtype": "float32", "shape": [None, 2]})

    registry.publish(edited_copy(spam_nb_dir, tmp_path / "v3", worse_and_wider))
    diff = lifecycle.diff("spam_nb", 1, 3)
    accuracy = diff["metrics"]["accuracy"]
    assert accuracy["delta"] == pytest.approx(-0.25)
    assert accuracy["1"] - accuracy["3"] == pytest.approx(0.25)
    assert diff["signature_changes"] == [
        {"kind": "output", "name": "scores", "change": "was added", "breaking": False}
    ]
    assert diff["compatible"] is True
    same = lifecycle.diff("spam_nb", 1, 2)
    assert same["signature_changes"] == []
    assert same["metrics"]["f1"]["delta"] == 0 and same["metrics"]["average"]["delta"] is None


def test_publish_refuses_an_incompatible_signature_naming_what_changed(
    lifecycle: Lifecycle, spam_nb_dir: Path, tmp_path: Path
) -> None:
    def float_input(manifest: dict[str, Any]) -> None:
        manifest["signature"]["inputs"][0]["dtype"] = "float32"
        manifest["signature"]["inputs"][0]["shape"] = [None, 300]

    changed = edited_copy(spam_nb_dir, tmp_path / "float_input", float_input)
    input_name = json.loads((spam_nb_dir / "manifest.json").read_text())["signature"]["inputs"][0]["name"]
    with pytest.raises(Conflict) as raised:
        lifecycle.publish(changed)
    message = raised.value.message
    assert raised.value.code == "incompatible_signature"
    assert f"input {input_name!r} changed dtype string -> float32" in message
    assert f"input {input_name!r} changed shape" in message and "--allow-breaking" in message
    assert lifecycle.registry.list_versions("spam_nb") == [1, 2]
    published = lifecycle.publish(changed, allow_breaking=True)
    assert published.version == 3
    assert lifecycle.registry.get_alias("spam_nb", "production").version == 1  # type: ignore[union-attr]


def test_signature_changes_name_removed_outputs_and_changed_labels(spam_nb_dir: Path) -> None:
    old = json.loads((spam_nb_dir / "manifest.json").read_text())
    new = json.loads(json.dumps(old))
    removed = new["signature"]["outputs"].pop()
    new["labels"] = ["ham", "spam", "phishing"]
    changes = [str(c) for c in signature_changes(old, new) if c.breaking]
    assert changes == [
        f"output {removed['name']!r} was removed",
        "labels changed ['ham', 'spam'] -> ['ham', 'spam', 'phishing']",
    ]
