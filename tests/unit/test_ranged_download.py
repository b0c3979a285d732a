"""Large files: parallel ranged GETs, hashed while they stream; a corrupted part is refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.core.errors import IntegrityError
from maas.core.store import ModelStore
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET

MIB = 1024 * 1024
KEY = "models/spam_nb/versions/1/weights.bin"


@pytest.fixture
def big_version(spam_nb_dir: Path, tmp_path: Path) -> tuple[Path, bytes]:
    """spam_nb with a 6 MiB artifact (random bytes): six parts of 1 MiB."""
    folder = tmp_path / "version"
    shutil.copytree(spam_nb_dir, folder)
    content = np.random.default_rng(13).bytes(6 * MIB)
    (folder / "weights.bin").write_bytes(content)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts"]["weights.bin"] = {
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, content


def ranges_of(s3: Any) -> list[str]:
    ranges: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if params["Key"] == KEY:
            ranges.append(str(params.get("Range")))

    s3.meta.events.register("before-parameter-build.s3.GetObject", record)
    return ranges


def test_a_multi_part_object_arrives_in_ranged_gets_hashed_correctly(
    registry: RegistryAdmin,
    s3: Any,
    big_version: tuple[Path, bytes],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder, content = big_version
    registry.publish(folder)
    ranges = ranges_of(s3)
    local = ModelStore(registry, tmp_path / "cache", part_bytes=MIB).fetch("spam_nb", 1)
    # the first range first (its answer says the size and the version), then the others
    expected = [f"bytes={i * MIB}-{(i + 1) * MIB - 1}" for i in range(6)]
    assert ranges[0] == expected[0] and sorted(ranges) == sorted(expected)
    assert local.artifact("weights.bin").read_bytes() == content
    logged = [r.__dict__ for r in caplog.records if r.getMessage() == "downloaded"]
    (weights,) = [entry for entry in logged if entry["file"] == "weights.bin"]
    assert weights["bytes"] == len(content) and weights["parts"] == 6 and weights["mb_per_s"] > 0


def test_a_corrupted_part_is_refused_and_nothing_is_kept(
    registry: RegistryAdmin, s3: Any, big_version: tuple[Path, bytes], tmp_path: Path
) -> None:
    folder, content = big_version
    registry.publish(folder)
    corrupted = bytearray(content)
    corrupted[3 * MIB + 17] ^= 0xFF  # one byte of the fourth part
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=bytes(corrupted))
    store = ModelStore(registry, tmp_path / "cache", part_bytes=MIB)
    with pytest.raises(IntegrityError, match=r"weights\.bin has sha256"):
        store.fetch("spam_nb", 1)
    kept = [p.name for p in (tmp_path / "cache" / "spam_nb" / "1").iterdir()]
    assert "weights.bin" not in kept and ".weights.bin.part" not in kept
