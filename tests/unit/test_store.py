"""The model store: sha256 against the manifest, and no second download while warm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from maas.core.errors import IntegrityError
from maas.core.store import ModelStore
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET


def count_downloads(s3: Any) -> list[str]:
    keys: list[str] = []
    s3.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: keys.append(params["Key"])
    )
    return keys


def test_a_tampered_model_is_refused_and_not_kept(
    registry: RegistryAdmin, s3: Any, spam_nb_dir: Path, tmp_path: Path
) -> None:
    registry.publish(spam_nb_dir)
    s3.put_object(Bucket=BUCKET, Key="models/spam_nb/versions/1/model.onnx", Body=b"not the published model")
    store = ModelStore(registry, tmp_path)
    with pytest.raises(IntegrityError, match="sha256"):
        store.fetch("spam_nb", 1)
    assert not list((tmp_path / "spam_nb" / "1").glob("*.onnx")), "a refused file stayed in the cache"


def test_a_warm_store_does_not_download_again(
    registry: RegistryAdmin, s3: Any, spam_nb_dir: Path, tmp_path: Path
) -> None:
    registry.publish(spam_nb_dir)
    downloads = count_downloads(s3)
    store = ModelStore(registry, tmp_path)
    first = store.fetch("spam_nb", 1)
    second = store.fetch("spam_nb", 1)
    assert first is second
    assert downloads.count("models/spam_nb/versions/1/model.onnx") == 1
    assert first.model_path.read_bytes() == (spam_nb_dir / "model.onnx").read_bytes()


def test_an_intact_file_left_in_tmp_is_reused(
    registry: RegistryAdmin, s3: Any, spam_nb_dir: Path, tmp_path: Path
) -> None:
    registry.publish(spam_nb_dir)
    ModelStore(registry, tmp_path).fetch("spam_nb", 1)
    downloads = count_downloads(s3)
    ModelStore(registry, tmp_path).fetch("spam_nb", 1)  # a new store, same /tmp: a warm environment
    assert "models/spam_nb/versions/1/model.onnx" not in downloads
