"""spam_nb: TF-IDF + multinomial naive Bayes, exported as one ONNX graph that takes raw strings.

Tokenisation and TF-IDF run inside the graph, so the handler never re-implements preprocessing.
The fitted pipeline goes through ``maas import``'s own path (``training.importer.import_model``):
export, parity gate on the held-out split, version folder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline

from maas.core.errors import TrainingError
from training.data import SPAMASSASSIN, TextExample, file_sha256, load_spamassassin, split_by_id
from training.importer import DEFAULT_TOKEN_PATTERN, import_model
from training.onnx_rewrite import speed_up_tfidf
from training.options import TrainOptions
from training.progress import Progress
from training.text import classification_metrics

NAME = "spam_nb"
# sklearn's default token pattern (the import path writes it for onnxruntime's regex engine)
TOKEN_PATTERN = DEFAULT_TOKEN_PATTERN
PARAMETERS: dict[str, Any] = {
    "tfidf": {
        "token_pattern": TOKEN_PATTERN,
        "lowercase": True,
        "min_df": 2,
        "max_df": 0.95,
        "max_features": 50000,
        "sublinear_tf": False,
    },
    "nb": {"alpha": 0.05},
}


@dataclass(frozen=True, slots=True)
class TextData:
    name: str
    train: list[TextExample]
    test: list[TextExample]
    labels: list[str]
    positive: str | None
    provenance: dict[str, Any]


def build_pipeline() -> Pipeline:
    # sublinear_tf stays off: skl2onnx 1.20 converts it wrongly (|Δtf-idf| up to 0.03).
    return Pipeline(
        [("tfidf", TfidfVectorizer(**PARAMETERS["tfidf"])), ("nb", MultinomialNB(**PARAMETERS["nb"]))]
    )


def load_data(options: TrainOptions, progress: Progress) -> TextData:
    dataset = options.dataset or "spamassassin"
    if dataset == "spamassassin":
        path = options.data or SPAMASSASSIN
        progress(f"loading {path}")
        split = split_by_id(load_spamassassin(path), seed=options.seed, limit=options.limit)
        provenance = {
            "dataset": "spamassassin",
            "data_file": path.name,
            "data_sha256": file_sha256(path),
            "split": split.description,
        }
        return TextData(dataset, split.train, split.test, ["ham", "spam"], "spam", provenance)
    if dataset == "20newsgroups":
        return _load_newsgroups(options, progress)
    raise TrainingError(f"unknown dataset {dataset!r}: use spamassassin or 20newsgroups")


def _load_newsgroups(options: TrainOptions, progress: Progress) -> TextData:
    """scikit-learn's 20 newsgroups, the classic example of this task; it needs a download."""
    from sklearn.datasets import fetch_20newsgroups

    progress("fetching 20 newsgroups (downloads once into scikit-learn's data home)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its retry warnings; the failure is reported below
            bunch = fetch_20newsgroups(
                subset="all",
                remove=("headers", "footers", "quotes"),
                data_home=str(options.data) if options.data else None,
                n_retries=1,
            )
    except Exception as error:  # URLError, timeouts, HTTP errors: all mean "not reachable"
        raise TrainingError(
            f"20 newsgroups could not be downloaded ({type(error).__name__}: {error})"
        ) from None
    names = [str(n) for n in bunch.target_names]
    examples = [
        TextExample(id=f"{names[target]}/{index:05d}", text=text, label=names[target])
        for index, (text, target) in enumerate(zip(bunch.data, bunch.target, strict=True))
        if text.strip()
    ]
    split = split_by_id(examples, seed=options.seed, limit=options.limit)
    return TextData(
        "20newsgroups",
        split.train,
        split.test,
        names,
        None,
        {"dataset": "20newsgroups", "split": split.description},
    )


@dataclass(frozen=True, slots=True)
class Trained:
    """What a training run produced: the source pipeline, its data and the written manifest."""

    pipeline: Pipeline
    data: TextData
    manifest: dict[str, Any]
    directory: Path


def train(options: TrainOptions, name: str = NAME) -> dict[str, Any]:
    """``maas train spam_nb``: fit, evaluate, export, check parity, write ``options.out``."""
    return train_model(options, name).manifest


def train_model(options: TrainOptions, name: str = NAME) -> Trained:
    progress = Progress(f"train {name}", quiet=options.quiet)
    data = load_data(options, progress)
    progress(f"{len(data.train)} training rows, {len(data.test)} held-out rows")
    pipeline = build_pipeline()
    train_texts = [e.text for e in data.train]
    pipeline.fit(train_texts, [e.label for e in data.train])
    vocabulary = len(pipeline.named_steps["tfidf"].vocabulary_)
    progress(f"fitted TF-IDF ({vocabulary} terms) + naive Bayes")
    test_texts = [e.text for e in data.test]
    reference_probabilities = pipeline.predict_proba(test_texts)
    reference_labels = pipeline.classes_[np.argmax(reference_probabilities, axis=1)]
    labels = [str(c) for c in pipeline.classes_]
    metrics = classification_metrics(
        [e.label for e in data.test], list(reference_labels), labels, data.positive
    )
    progress(f"held-out accuracy {metrics['accuracy']:.4f}, F1 {metrics['f1']:.4f}")
    # the export, parity gate and version folder of `maas import`: the path every user takes
    manifest = import_model(
        pipeline,
        name=name,
        out=options.out,
        X=test_texts,
        labels=labels,
        metrics=metrics,
        provenance={
            **data.provenance,
            "rows_train": len(data.train),
            "rows_test": len(data.test),
            "parameters": PARAMETERS,
            "seed": options.seed,
            "vocabulary_size": vocabulary,
        },
        rewrite=speed_up_tfidf,
        progress=progress,
    )
    return Trained(pipeline=pipeline, data=data, manifest=manifest, directory=options.out.resolve())
