"""Bring-your-own-model sources of every kind, fitted and imported once per session (small models)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.importer import import_model

TEXTS = [
    "cheap pills, buy now and win money fast",
    "win a free prize, click the link today",
    "limited offer: cheap watches and free money",
    "the meeting moved to noon, see the agenda",
    "lunch tomorrow with the project team?",
    "please review the draft report before friday",
    "great goal in the second half of the match",
    "the team won the football game last night",
    "the striker scored twice, final score 3-1",
]
TEXT_LABELS = ["spam"] * 3 + ["work"] * 3 + ["sport"] * 3


@dataclass(frozen=True)
class ImportedModel:
    name: str
    directory: Path
    held_out: Any  # what clients send: a DataFrame of features, or texts
    expected: list[dict[str, Any]]  # the source model's answers on held_out (labels, or values)
    kind: str  # "classifier" | "regressor"


@pytest.fixture(scope="session")
def wine() -> tuple[Any, Any, Any, Any]:
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True, as_frame=True)
    return X.iloc[::2], X.iloc[1::2], y.iloc[::2], y.iloc[1::2]


def _classified(labels: list[str], probabilities: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "label": labels[int(np.argmax(row))],
            "probabilities": dict(zip(labels, map(float, row), strict=True)),
        }
        for row in probabilities
    ]


@pytest.fixture(scope="session")
def imported(
    wine: tuple[Any, Any, Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ImportedModel]:
    """Every source kind, imported once; the expected answers come from the source model."""
    import lightgbm
    import xgboost
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_train, X_test, y_train, y_test = wine
    root = tmp_path_factory.mktemp("byom")
    models: dict[str, ImportedModel] = {}

    def add(
        name: str, source: Any, sample: Any, expected: list[dict[str, Any]], kind: str, **extra: Any
    ) -> None:
        import_model(source, name=name, out=root / name, X=sample, quiet=True, **extra)
        models[name] = ImportedModel(name, root / name, sample, expected, kind)

    labels = ["0", "1", "2"]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    add("wine_clf", clf, X_test, _classified(labels, clf.predict_proba(X_test)), "classifier", y=y_test)

    text = make_pipeline(TfidfVectorizer(), MultinomialNB()).fit(TEXTS, TEXT_LABELS)
    add("topics", text, TEXTS, _classified(sorted(set(TEXT_LABELS)), text.predict_proba(TEXTS)), "classifier")

    booster = xgboost.XGBClassifier(n_estimators=15, max_depth=3).fit(X_train, y_train)
    add("wine_xgb", booster, X_test, _classified(labels, booster.predict_proba(X_test)), "classifier")
    light = lightgbm.LGBMClassifier(n_estimators=15, verbose=-1).fit(X_train, y_train)
    add("wine_lgbm", light, X_test, _classified(labels, light.predict_proba(X_test)), "classifier")

    # a hand-exported ONNX regressor: alcohol from the other 12 features
    features_train, features_test = X_train.iloc[:, 1:], X_test.iloc[:, 1:]
    gbr = GradientBoostingRegressor(n_estimators=50, random_state=0).fit(
        features_train.to_numpy(), X_train.iloc[:, 0]
    )
    onnx_file = root / "alcohol.onnx"
    onnx_file.write_bytes(to_onnx(gbr, features_train.to_numpy().astype(np.float32)).SerializeToString())
    add(
        "alcohol",
        onnx_file,
        features_test,  # a DataFrame: its columns name the features
        [{"value": float(v)} for v in gbr.predict(features_test.to_numpy())],
        "regressor",
    )

    # a multi-output regressor fitted on a DataFrame: alcohol and malic acid from the other 11
    from sklearn.linear_model import Ridge

    targets = ["alcohol", "malic_acid"]
    rest_train, rest_test = X_train.drop(columns=targets), X_test.drop(columns=targets)
    ridge = Ridge(alpha=1.0).fit(rest_train, X_train[targets])
    add(
        "wine_pair",
        ridge,
        rest_test,
        [{"values": [float(v) for v in row]} for row in ridge.predict(rest_test)],
        "regressor",
        y=X_test[targets].to_numpy(),
    )

    # raw tensors: a hand-built graph of two inputs and two outputs, served by input name
    add("mixer", mixer_graph(), MIXER_ROWS, [mixed(row) for row in MIXER_ROWS], "tensors")
    return models


MIXER_ROWS = [{"a": [1.0, 2.0, 3.0], "b": [0.5, -1.0, 2.0]}, {"a": [0.0, 4.0, -2.0], "b": [3.0, 0.25, 1.0]}]


def mixer_graph() -> Any:
    """(a, b) -> (sum = a + b, scaled = 2 * a * b): no framework, an ONNX graph as a user writes it."""
    from onnx import TensorProto, helper

    row = [None, 3]
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Mul", ["a", "b"], ["ab"]),
            helper.make_node("Mul", ["ab", "two"], ["scaled"]),
        ],
        "mixer",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, row) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, row) for n in ("sum", "scaled")],
        [two],
    )
    # IR version 9: what the pinned onnxruntime reads (onnx's helper writes the newest)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def mixed(row: dict[str, list[float]]) -> dict[str, list[float]]:
    a, b = np.asarray(row["a"]), np.asarray(row["b"])
    return {"sum": (a + b).tolist(), "scaled": (2 * a * b).tolist()}


@pytest.fixture(scope="session")
def keras_files(wine: tuple[Any, Any, Any, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small Dense net on the wine data, trained once, saved as .keras and .h5."""
    from training.keras_common import tensorflow

    tensorflow()
    import keras

    X_train, X_test, y_train, _ = wine
    keras.utils.set_random_seed(3)
    normalise = keras.layers.Normalization()
    normalise.adapt(X_train.to_numpy())
    net = keras.Sequential(
        [
            keras.Input((13,)),
            normalise,
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    net.fit(X_train.to_numpy(), y_train.to_numpy(), epochs=15, verbose=0)
    root = tmp_path_factory.mktemp("keras")
    net.save(root / "wine.keras")
    net.save(root / "wine.h5")
    return {"net": net, "root": root, "X_test": X_test}
