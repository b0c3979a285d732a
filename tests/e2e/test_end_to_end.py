"""The whole path against a moto server over HTTP: train, publish, promote, invoke, compare.

The CLI runs as a subprocess, as a user would run it; the handler is the function's real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ops.local import create_bucket, invoke
from tests.conftest import load_event, with_json_body
from training.data import PROJECT_ROOT
from training.models import spam_nb

MAAS = str(Path(sys.executable).parent / "maas")
BUCKET = "maas-e2e-models"


def maas(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MAAS, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, env=dict(os.environ), timeout=600
    )


@pytest.fixture(scope="module")
def production(moto_endpoint: str, spam_nb_dir: Path) -> int:
    create_bucket(BUCKET)
    result = maas("publish", str(spam_nb_dir), "--bucket", BUCKET, "--alias", "production")
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def test_publish_prints_the_new_version_and_the_registry_lists_it(production: int, spam_nb_dir: Path) -> None:
    assert production == 1
    listing = maas("models", "list", "--bucket", BUCKET)
    assert listing.returncode == 0, listing.stderr
    assert "spam_nb" in listing.stdout and "production->v1" in listing.stdout
    described = maas("models", "describe", "spam_nb", "--version", "1", "--bucket", BUCKET)
    assert described.returncode == 0, described.stderr
    facts = json.loads(described.stdout)
    manifest = json.loads((spam_nb_dir / "manifest.json").read_text())
    assert facts["status"] == "active" and facts["aliases"] == ["production"]
    assert facts["sha256"] == manifest["model"]["sha256"]
    assert facts["metrics"] == manifest["metrics"]
    assert facts["parity"]["passed"] is True


def test_describe_of_an_unknown_version_fails_clearly(production: int) -> None:
    result = maas("models", "describe", "spam_nb", "--version", "42", "--bucket", BUCKET)
    assert result.returncode == 1
    assert "no version 42" in result.stderr


def test_maas_invoke_runs_the_real_handler_on_each_sample_event(production: int) -> None:
    for name in ("predict.json", "predict_base64.json", "describe.json"):
        result = maas("invoke", "spam_nb", "--event", f"events/spam_nb/{name}", "--bucket", BUCKET)
        assert result.returncode == 0, result.stderr
        response = json.loads(result.stdout[result.stdout.index('{\n  "statusCode"') :])
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["model_version"] == "1"


def test_served_predictions_equal_scikit_learns_on_held_out_texts(
    production: int, trained_spam_nb: spam_nb.Trained
) -> None:
    held_out = trained_spam_nb.data.test
    texts = [e.text for e in held_out[:: max(1, len(held_out) // 60)]][:60]
    event = with_json_body(load_event("spam_nb", "predict.json"), {"instances": texts})
    response: dict[str, Any] = invoke("spam_nb", event, {"MODEL_BUCKET": BUCKET})
    assert response["statusCode"] == 200
    predictions = json.loads(response["body"])["predictions"]
    expected = trained_spam_nb.pipeline.predict_proba(texts)
    classes = list(trained_spam_nb.pipeline.classes_)
    assert [p["label"] for p in predictions] == [classes[i] for i in np.argmax(expected, axis=1)]
    served = np.array([[p["probabilities"][c] for c in classes] for p in predictions])
    assert np.max(np.abs(served - expected)) < 1e-4
    assert {"ham", "spam"} == {p["label"] for p in predictions}


def test_make_demo_trains_publishes_promotes_and_prints_predictions(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    result = subprocess.run(
        [MAAS, "demo", "--workdir", str(tmp_path / "demo"), "--quick"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # the transformers: an embedding request and a spam_minilm prediction
    assert "POST /models/minilm/embed -> 200, answered by minilm version 1" in out
    assert "[384 floats]" in out and "truncated: 0" in out
    assert "POST /models/spam_minilm/predict -> 200, answered by spam_minilm version 1" in out
    assert "moto server (local S3) on http://127.0.0.1:" in out
    assert "published spam_nb version 1" in out and "alias production -> version 1" in out
    assert "POST /models/spam_nb/predict -> 200, answered by spam_nb version 1" in out
    assert "spam  p=" in out and "ham   p=" in out
    assert "8 rows: 5 scored, 3 refused, by spam_nb version 1" in out
    assert "predictions s3://maas-data-demo/outputs/spam_nb/sample.jsonl." in out
    assert "poll 1: 5 received, 3 reported as failures" in out
    assert "result     s3://maas-data-demo/results/spam_nb/req-0.json" in out
    assert "dead-letter queue holds 3 messages" in out
    # the lifecycle: a second version, promoted and rolled back under one warm environment
    assert "published spam_nb version 2 (signature checked against production)" in out
    assert "signature: compatible" in out
    assert "production -> v2 (was v1, revision 2)" in out
    assert "within the TTL:          200, answered by spam_nb version 1" in out
    assert "after the TTL:           200, answered by spam_nb version 2" in out
    assert "production -> v1 (was v2, revision 3)" in out
    assert out.count("after the TTL:           200, answered by spam_nb version 1") == 1
    assert "maas models retire spam_nb 1: refused: cannot retire spam_nb version 1" in out
    assert "maas models retire spam_nb 2: status retired" in out
    assert (
        "MODEL_VERSION=2: 503 version_not_active" in out
        and "version 2 (pinned by MODEL_VERSION) is retired" in out
    )
    assert "maas models delete spam_nb 2: 3 object versions removed; versions now [1]" in out
    for model in ("spam_lstm", "digits_cnn", "spam_mlp"):
        assert f"published {model} version 1, alias production -> 1" in out
        assert f"POST /models/{model}/predict -> 200, answered by {model} version 1" in out
    assert "POST /models/moby_gen/generate -> 200, answered by moby_gen version 1" in out
    assert "'Call me Ishmael' -> " in out and "a base64 PNG image" in out
    assert "stopping the moto server" in out
