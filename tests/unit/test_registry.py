"""The S3 registry under moto: numbered write-once versions, tags, aliases and their races."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from maas.core.errors import Conflict, NotFound
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET


def marked_copy(source: Path, destination: Path, marker: str) -> Path:
    """The same trained model with a manifest that says which publisher sent it."""
    shutil.copytree(source, destination)
    manifest = json.loads((destination / "manifest.json").read_text())
    manifest["provenance"]["publisher"] = marker
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination


def test_versions_are_numbered_in_order_with_tags(
    registry: RegistryAdmin, s3: Any, spam_nb_dir: Path
) -> None:
    first = registry.publish(spam_nb_dir)
    second = registry.publish(spam_nb_dir)
    assert (first.version, second.version) == (1, 2)
    assert registry.list_models() == ["spam_nb"]
    assert registry.list_versions("spam_nb") == [1, 2]
    tags = s3.get_object_tagging(Bucket=BUCKET, Key="models/spam_nb/versions/2/model.onnx")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"model": "spam_nb", "version": "2", "status": "active"}
    manifest = registry.read_manifest("spam_nb", 2)
    assert manifest["version"] == 2
    assert (
        manifest["model"]["sha256"]
        == json.loads((spam_nb_dir / "manifest.json").read_text())["model"]["sha256"]
    )


def test_a_published_version_cannot_be_overwritten(
    registry: RegistryAdmin, s3: Any, spam_nb_dir: Path
) -> None:
    registry.publish(spam_nb_dir)
    for key in ("models/spam_nb/versions/1/manifest.json", "models/spam_nb/versions/1/model.onnx"):
        with pytest.raises(ClientError) as raised:
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"replacement", IfNoneMatch="*")
        assert raised.value.response["Error"]["Code"] == "PreconditionFailed"
    assert registry.read_manifest("spam_nb", 1)["version"] == 1


class StaleRegistry(RegistryAdmin):
    """A publisher whose listing is taken before the other's write: both see the same next number."""

    def __init__(self, bucket: str, s3: Any, barrier: threading.Barrier) -> None:
        super().__init__(bucket, s3)
        self.barrier = barrier
        self.waited = False

    def next_version(self, name: str) -> int:
        number = super().next_version(name)
        if not self.waited:
            self.waited = True
            self.barrier.wait(timeout=10)
        return number


def test_two_racing_publishers_get_different_numbers(s3: Any, spam_nb_dir: Path, tmp_path: Path) -> None:
    barrier = threading.Barrier(2)
    dirs = {m: marked_copy(spam_nb_dir, tmp_path / m, m) for m in ("alice", "bob")}
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def publish(marker: str) -> None:
        try:
            results[marker] = StaleRegistry(BUCKET, s3, barrier).publish(dirs[marker]).version
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=publish, args=(m,)) for m in dirs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert sorted(results.values()) == [1, 2]
    registry = RegistryAdmin(BUCKET, s3)
    for marker, version in results.items():
        assert registry.read_manifest("spam_nb", version)["provenance"]["publisher"] == marker
    history = s3.list_object_versions(Bucket=BUCKET, Prefix="models/spam_nb/versions/")["Versions"]
    manifests = [v for v in history if v["Key"].endswith("manifest.json")]
    assert len(manifests) == 2, "a manifest was overwritten"


def test_publish_refuses_files_that_do_not_match_their_manifest(
    registry: RegistryAdmin, spam_nb_dir: Path, tmp_path: Path
) -> None:
    tampered = marked_copy(spam_nb_dir, tmp_path / "tampered", "x")
    with (tampered / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(Conflict, match="sha256"):
        registry.publish(tampered)
    assert registry.list_versions("spam_nb") == []


def test_alias_moves_record_the_previous_version(registry: RegistryAdmin, spam_nb_dir: Path) -> None:
    registry.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)
    first = registry.set_alias("spam_nb", "production", 1)
    assert (first.version, first.previous) == (1, None)
    moved = registry.set_alias("spam_nb", "production", 2)
    assert (moved.version, moved.previous) == (2, 1)
    stored = registry.get_alias("spam_nb", "production")
    assert stored is not None and (stored.version, stored.previous) == (2, 1)
    assert [a.alias for a in registry.list_aliases("spam_nb")] == ["production"]


def test_an_alias_move_based_on_a_stale_read_fails(
    registry: RegistryAdmin, spam_nb_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.publish(spam_nb_dir)
    registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    stale = registry.get_alias("spam_nb", "production")
    registry.set_alias("spam_nb", "production", 2)  # someone else moves it meanwhile
    monkeypatch.setattr(registry, "get_alias", lambda name, alias: stale)
    with pytest.raises(Conflict, match="moved by someone else"):
        registry.set_alias("spam_nb", "production", 1)
    monkeypatch.undo()
    current = registry.get_alias("spam_nb", "production")
    assert current is not None and current.version == 2


def test_an_alias_cannot_point_at_a_missing_version(registry: RegistryAdmin, spam_nb_dir: Path) -> None:
    registry.publish(spam_nb_dir)
    with pytest.raises(NotFound):
        registry.set_alias("spam_nb", "production", 7)
    assert registry.get_alias("spam_nb", "production") is None
