"""The TF-IDF graph rewrites: fewer passes over the dense matrix, the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maas.core.predictor import Predictor
from training.importer import convert_text_classifier
from training.models import spam_nb
from training.onnx_rewrite import speed_up_tfidf


def test_rewrites_drop_the_dense_passes_and_keep_the_answers(
    trained_spam_nb: spam_nb.Trained, tmp_path: Path
) -> None:
    plain = convert_text_classifier(trained_spam_nb.pipeline)
    fast = convert_text_classifier(trained_spam_nb.pipeline)
    assert speed_up_tfidf(fast) == {"fold_idf": 1, "defer_l2": 1}
    ops = [node.op_type for node in fast.graph.node]
    assert "Normalizer" not in ops and "Mul" not in ops and "ReduceL2" in ops
    assert "Normalizer" in [node.op_type for node in plain.graph.node]

    texts = [e.text for e in trained_spam_nb.data.test[:200]] + [
        "!!! ??? ...",
        "a",
    ]  # the last two: no tokens
    feeds = np.asarray(texts, dtype=object).reshape(-1, 1)
    answers = {}
    for name, model in (("plain", plain), ("fast", fast)):
        (tmp_path / f"{name}.onnx").write_bytes(model.SerializeToString())
        answers[name] = Predictor(tmp_path / f"{name}.onnx").run({"text": feeds})
    assert (answers["plain"]["label"] == answers["fast"]["label"]).all()
    assert np.abs(answers["plain"]["probabilities"] - answers["fast"]["probabilities"]).max() < 1e-4
    expected = trained_spam_nb.pipeline.predict_proba(texts)
    assert np.abs(answers["fast"]["probabilities"] - expected).max() < 1e-4
