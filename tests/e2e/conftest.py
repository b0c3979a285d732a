"""`maas serve` as a subprocess over a registry in the session's moto server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from maas.registry import MODEL_FILE, ModelRegistry
from training.data import PROJECT_ROOT
from training.local import create_bucket

MAAS = str(Path(sys.executable).parent / "maas")
SERVE_BUCKET = "maas-serve-models"
LISTENING = re.compile(r"listening on (http://[\d.]+:\d+)")


@dataclass(frozen=True)
class Served:
    url: str
    registry: ModelRegistry
    log: Path

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=60)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        if body is not None:
            kwargs["json"] = body
        return requests.post(self.url + path, timeout=60, **kwargs)


def start_serve(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `maas serve --port 0` and wait for its banner's address."""
    handle = log.open("wb")
    process = subprocess.Popen(
        [MAAS, "serve", "--port", "0", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
        env=env,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = LISTENING.search(log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"maas serve did not start:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def serve_api(
    moto_endpoint: str,
    spam_nb_dir: Path,
    trained_spam_lstm: Any,
    trained_digits_cnn: Any,
    trained_spam_mlp: Any,
    trained_moby_gen: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    """Every model behind `maas serve`: spam_nb versions 1-3 (production -> 1, version 3 retired),
    one version (production) of each Keras model."""
    create_bucket(SERVE_BUCKET)
    registry = ModelRegistry(SERVE_BUCKET)
    for _ in range(3):
        registry.publish(spam_nb_dir)
    registry.set_alias("spam_nb", "production", 1)
    tags = [{"Key": "model", "Value": "spam_nb"}, {"Key": "version", "Value": "3"}]
    registry.s3.put_object_tagging(
        Bucket=SERVE_BUCKET,
        Key=registry.object_key("spam_nb", 3, MODEL_FILE),
        Tagging={"TagSet": [*tags, {"Key": "status", "Value": "retired"}]},
    )
    for trained in (trained_spam_lstm, trained_digits_cnn, trained_spam_mlp, trained_moby_gen):
        published = registry.publish(trained.directory)
        registry.set_alias(published.name, "production", published.version)
    work = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "MODEL_CACHE_DIR": str(work / "cache")}
    process, url = start_serve(["--bucket", SERVE_BUCKET], env, work / "serve.log")
    try:
        yield Served(url, registry, work / "serve.log")
    finally:
        process.terminate()
        process.wait(timeout=30)
