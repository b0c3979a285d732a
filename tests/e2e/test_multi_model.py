"""The multi-model function behind `maas serve`: a model with no catalogue entry, published while
the server runs, answers on the next request; a version that cannot be loaded is reported not ready."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ops.catalogue import load_catalogue
from ops.events import SPAM_TEXTS
from tests.e2e.conftest import Served

TEXTS = SPAM_TEXTS[:2]


def renamed_copy(source: Path, destination: Path, name: str, **manifest_changes: Any) -> Path:
    """A version folder of ``source``'s files published under another model name (and task)."""
    shutil.copytree(source, destination)
    manifest_path = destination / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.update(name=name, **manifest_changes)
    manifest_path.write_text(json.dumps(manifest))
    return destination


@pytest.fixture(scope="module")
def reference(serve_api: Served) -> list[dict[str, Any]]:
    """What spam_nb's own function answers for the texts (the same files are republished below)."""
    response = serve_api.post("/models/spam_nb/predict", {"instances": TEXTS})
    assert response.status_code == 200, response.text
    predictions: list[dict[str, Any]] = response.json()["predictions"]
    return predictions


def test_a_model_published_while_serve_runs_is_served_by_the_multi_model_function(
    serve_api: Served, spam_nb_dir: Path, reference: list[dict[str, Any]], tmp_path: Path
) -> None:
    name = "ham_filter"
    assert name not in load_catalogue().names, "the point: this model has no function of its own"
    before = serve_api.post(f"/models/{name}/predict", {"instances": TEXTS})
    assert before.status_code == 404, before.text
    assert "ham_filter" in before.json()["error"]["message"]

    published = serve_api.registry.publish(renamed_copy(spam_nb_dir, tmp_path / name, name))
    serve_api.registry.set_alias(name, "production", published.version)

    predict = serve_api.post(f"/models/{name}/predict", {"instances": TEXTS})
    assert predict.status_code == 200, predict.text
    body = predict.json()
    print(f"POST /models/{name}/predict -> {predict.status_code}: version {body['model_version']}")
    assert (body["model_name"], body["model_version"]) == (name, str(published.version))
    assert body["predictions"] == reference

    infer = serve_api.post(
        f"/v2/models/{name}/infer",
        {"id": "mm-1", "inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": TEXTS}]},
    )
    assert infer.status_code == 200, infer.text
    answer = infer.json()
    print(f"POST /v2/models/{name}/infer -> {infer.status_code}: {answer['outputs'][0]['data']}")
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (
        name,
        str(published.version),
        "mm-1",
    )
    assert answer["outputs"][0]["data"] == [p["label"] for p in reference]

    wrong_verb = serve_api.post(f"/models/{name}/generate", {"prompt": "Call me"})
    assert wrong_verb.status_code == 400
    assert f"POST /models/{name}/predict" in wrong_verb.json()["error"]["message"]

    index = serve_api.post("/v2/repository/index", {}).json()
    assert {"name": name, "version": str(published.version), "state": "READY", "reason": ""} in index


def test_a_version_that_cannot_be_loaded_is_not_ready_with_the_reason(
    serve_api: Served, spam_nb_dir: Path, tmp_path: Path
) -> None:
    name = "speech_model"
    folder = renamed_copy(spam_nb_dir, tmp_path / name, name, task="speech-recognition")
    published = serve_api.registry.publish(folder, validate=False)  # publish itself refuses it
    serve_api.registry.set_alias(name, "production", published.version)

    index = serve_api.post("/v2/repository/index", {}).json()
    entry = next(e for e in index if e["name"] == name)
    print(f"repository index: {entry}")
    assert entry["state"] == "UNAVAILABLE"
    assert "cannot serve task 'speech-recognition'" in entry["reason"]
    assert not [
        e for e in serve_api.post("/v2/repository/index", {"ready": True}).json() if e["name"] == name
    ]

    response = serve_api.post(f"/models/{name}/predict", {"instances": TEXTS})
    print(f"POST /models/{name}/predict -> {response.status_code}: {response.json()['error']['message']}")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "version_unservable"
