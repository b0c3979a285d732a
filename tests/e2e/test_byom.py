"""Bring your own model: import -> publish (+ promote) -> the real handlers answer like the source.

Each model is small and imported once per session; the registry is moto in-process. HTTP goes
through the multi-model function (an imported model has no catalogue entry); S3 batch files and
SQS requests through a model function (``maas.entry.model``) for the imported model's name.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.entry.model import create as create_model_function
from ops.event_sources import s3_put_event
from ops.lifecycle import Lifecycle
from ops.local import LambdaContext
from ops.registry_admin import RegistryAdmin
from tests.conftest import BUCKET, body_of, load_event, make_function
from tests.e2e.byom import TEXTS, ImportedModel, _classified
from training.importer import import_model

DATA_BUCKET = "maas-byom-data"


# --- plumbing ----------------------------------------------------------------------------------


def predict_event(name: str, body: Any) -> dict[str, Any]:
    event = copy.deepcopy(load_event("spam_nb", "predict.json"))
    path = f"/models/{name}/predict"
    event.update(rawPath=path, routeKey="POST /models/{model}/predict", pathParameters={"model": name})
    event["requestContext"].update(routeKey="POST /models/{model}/predict")
    event["requestContext"]["http"]["path"] = path
    event["body"], event["isBase64Encoded"] = json.dumps(body), False
    return event


def publish(registry: RegistryAdmin, directory: Path) -> int:
    return Lifecycle(registry).publish(directory, alias="production").version


def rows_of(held_out: Any) -> list[Any]:
    return held_out.to_numpy().tolist() if hasattr(held_out, "to_numpy") else list(held_out)


def assert_same(predictions: list[dict[str, Any]], expected: list[dict[str, Any]]) -> float:
    """Served answers equal the source model's: labels exactly, probabilities/values to 1e-4."""
    worst = 0.0
    assert len(predictions) == len(expected)
    for got, want in zip(predictions, expected, strict=True):
        if "values" in want or "sum" in want:  # multi-output values, or raw tensors by name
            assert set(got) == set(want)
            for name, values in want.items():
                assert got[name] == pytest.approx(values, rel=1e-4, abs=1e-5)
                worst = max(worst, float(np.max(np.abs(np.subtract(got[name], values)))))
            continue
        if "value" in want:
            assert got["value"] == pytest.approx(want["value"], rel=1e-4, abs=1e-5)
            worst = max(worst, abs(got["value"] - want["value"]))
            continue
        assert got["label"] == want["label"]
        for label, p in want["probabilities"].items():
            worst = max(worst, abs(got["probabilities"][label] - p))
    assert worst <= 1e-4
    return worst


# --- end to end, every source kind -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["wine_clf", "topics", "wine_xgb", "wine_lgbm", "alcohol", "wine_pair", "mixer"]
)
def test_an_imported_model_is_served_over_http_like_its_source(
    name: str, imported: dict[str, ImportedModel], registry: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    model = imported[name]
    version = publish(registry, model.directory)
    function = make_function("multi_model", s3, tmp_path)
    response = function(predict_event(name, {"instances": rows_of(model.held_out)}))
    assert response["statusCode"] == 200, response
    body = body_of(response)
    assert (body["model_name"], body["model_version"]) == (name, str(version))
    worst = assert_same(body["predictions"], model.expected)
    print(f"{name}: {len(model.expected)} held-out rows, max |Δ| {worst:.2e}")


def infer_event(name: str, body: Any) -> dict[str, Any]:
    """The Open Inference Protocol's infer, as API Gateway sends it to the multi-model function."""
    event = predict_event(name, body)
    path = f"/v2/models/{name}/infer"
    event.update(rawPath=path, routeKey="POST /v2/models/{model}/infer")
    event["requestContext"].update(routeKey="POST /v2/models/{model}/infer")
    event["requestContext"]["http"]["path"] = path
    return event


def test_a_tabular_classifier_answers_the_protocols_infer_like_its_source(
    imported: dict[str, ImportedModel], registry: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    model = imported["wine_clf"]
    publish(registry, model.directory)
    rows = rows_of(model.held_out)[:4]
    tensor = {"name": "input", "shape": [4, len(rows[0])], "datatype": "FP32", "data": rows}
    response = make_function("multi_model", s3, tmp_path)(
        infer_event("wine_clf", {"id": "w-1", "inputs": [tensor]})
    )
    assert response["statusCode"] == 200, response
    body = body_of(response)
    assert body["id"] == "w-1"
    outputs = {o["name"]: o for o in body["outputs"]}
    want = model.expected[:4]
    probabilities = next(o for o in outputs.values() if o["datatype"] == "FP32")
    assert probabilities["shape"] == [4, 3]
    got = np.asarray(probabilities["data"], dtype=np.float64).reshape(4, 3)
    assert np.abs(got - [[w["probabilities"][k] for k in ("0", "1", "2")] for w in want]).max() <= 1e-4


def test_raw_tensors_take_instances_by_input_name_and_name_a_missing_or_unknown_input(
    imported: dict[str, ImportedModel], registry: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    model = imported["mixer"]
    manifest = json.loads((model.directory / "manifest.json").read_text())
    assert manifest["task"] == "tensors" and manifest["parity"]["passed"]
    publish(registry, model.directory)
    function = make_function("multi_model", s3, tmp_path)
    row = model.held_out[0]
    for instance, code, field in (
        ({"a": row["a"]}, "missing_input", "instances[0].b"),
        ({**row, "c": [1.0, 2.0, 3.0]}, "unknown_input", "instances[0].c"),
        ([1.0, 2.0, 3.0], "invalid_type", "instances[0]"),
    ):
        response = function(predict_event("mixer", {"instances": [instance]}))
        error = body_of(response)["error"]
        assert response["statusCode"] == 400 and (error["code"], error["field"]) == (code, field), error
    tensors = [
        {"name": n, "shape": [1, 3], "datatype": "FP32", "data": row[n]} for n in ("b", "a")
    ]  # the protocol names its inputs, in any order
    response = function(infer_event("mixer", {"inputs": tensors}))
    assert response["statusCode"] == 200, response
    outputs = {o["name"]: o["data"] for o in body_of(response)["outputs"]}
    assert outputs == {name: pytest.approx(values) for name, values in model.expected[0].items()}


def test_a_dataframe_model_takes_named_feature_objects_and_names_a_missing_or_extra_feature(
    imported: dict[str, ImportedModel], registry: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    model = imported["wine_clf"]
    manifest = json.loads((model.directory / "manifest.json").read_text())
    assert manifest["features"] == list(model.held_out.columns) and manifest["labels"] == ["0", "1", "2"]
    assert manifest["metrics"]["accuracy"] > 0.9 and manifest["parity"]["passed"]
    publish(registry, model.directory)
    function = make_function("multi_model", s3, tmp_path)
    records = model.held_out.iloc[:3].to_dict(orient="records")
    shuffled = [dict(reversed(list(r.items()))) for r in records]  # order of keys does not matter
    answer = function(predict_event("wine_clf", {"instances": shuffled}))
    assert answer["statusCode"] == 200, answer
    assert_same(body_of(answer)["predictions"], model.expected[:3])

    missing = {k: v for k, v in records[0].items() if k != "proline"}
    response = function(predict_event("wine_clf", {"instances": [missing]}))
    error = body_of(response)["error"]
    assert response["statusCode"] == 400 and error["code"] == "missing_feature"
    assert "'proline'" in error["message"] and error["field"] == "instances[0].proline"

    extra = {**records[0], "vintage": 2019}
    response = function(predict_event("wine_clf", {"instances": [extra]}))
    error = body_of(response)["error"]
    assert (
        response["statusCode"] == 400
        and error["code"] == "unknown_feature"
        and "'vintage'" in error["message"]
    )

    text = {**records[0], "ash": "high"}
    response = function(predict_event("wine_clf", {"instances": [text]}))
    error = body_of(response)["error"]
    assert response["statusCode"] == 400 and "'ash'" in error["message"] and "number" in error["message"]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_keras_file_is_imported_and_served_like_keras(
    suffix: str, keras_files: dict[str, Any], registry: RegistryAdmin, s3: Any, tmp_path: Path
) -> None:
    X_test = keras_files["X_test"]
    labels = ["class_0", "class_1", "class_2"]
    out = tmp_path / "wine_net"
    manifest = import_model(
        keras_files["root"] / f"wine{suffix}", name="wine_net", out=out, X=X_test, labels=labels, quiet=True
    )
    assert manifest["task"] == "tabular-classification" and manifest["labels"] == labels
    expected = _classified(
        labels, np.asarray(keras_files["net"].predict(X_test.to_numpy().astype(np.float32), verbose=0))
    )
    publish(registry, out)
    function = make_function("multi_model", s3, tmp_path)
    response = function(predict_event("wine_net", {"instances": X_test.to_numpy().tolist()}))
    assert response["statusCode"] == 200, response
    worst = assert_same(body_of(response)["predictions"], expected)
    print(f"keras {suffix}: parity {manifest['parity']['max_abs_diff']:.2e}, served max |Δ| {worst:.2e}")


# --- batch files and queues ----------------------------------------------------------------------


class ModelFunction:
    """The model function (``maas.entry.model``) for an imported model, on in-process moto."""

    def __init__(self, name: str, s3: Any, tmp_path: Path) -> None:
        self.function = create_model_function(name)
        environ = {
            "MODEL_BUCKET": BUCKET,
            "DATA_BUCKET": DATA_BUCKET,
            "MODEL_CACHE_DIR": str(tmp_path / "cache"),
        }
        self.function.runtime.reset(environ=environ, s3_client=s3)

    def __call__(self, event: dict[str, Any]) -> Any:
        return self.function.lambda_handler(
            event, LambdaContext(function_name="byom", memory_limit_in_mb=1024)
        )


@pytest.fixture
def data_bucket(s3: Any) -> Any:
    s3.create_bucket(Bucket=DATA_BUCKET)
    s3.put_bucket_versioning(Bucket=DATA_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return s3


def scored_lines(s3: Any, response: dict[str, Any]) -> list[dict[str, Any]]:
    (outcome,) = response["files"]
    assert outcome["status"] == "scored", outcome
    body = s3.get_object(Bucket=DATA_BUCKET, Key=outcome["outputs"]["predictions"])["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines()]


@pytest.mark.parametrize("name", ["wine_clf", "alcohol"])
def test_a_csv_batch_file_of_a_tabular_model_is_scored_through_s3(
    name: str, imported: dict[str, ImportedModel], registry: RegistryAdmin, data_bucket: Any, tmp_path: Path
) -> None:
    model = imported[name]
    publish(registry, model.directory)
    frame = model.held_out.iloc[:6]
    handle = io.StringIO()
    writer = csv.writer(handle)
    writer.writerow(["id", *reversed(list(frame.columns))])  # the header names the columns, any order
    for index, row in enumerate(frame.to_dict(orient="records")):
        writer.writerow([f"row-{index}", *(row[c] for c in reversed(list(frame.columns)))])
    writer.writerow(["bad-row", *(["x"] * len(frame.columns))])
    key = f"inputs/{name}/batch.csv"
    data_bucket.put_object(Bucket=DATA_BUCKET, Key=key, Body=handle.getvalue().encode())
    lines = scored_lines(
        data_bucket,
        ModelFunction(name, data_bucket, tmp_path)(s3_put_event("spam_nb", DATA_BUCKET, key, data_bucket)),
    )
    assert [line["id"] for line in lines] == [*(f"row-{i}" for i in range(6)), "bad-row"]
    assert_same([line["prediction"] for line in lines[:6]], model.expected[:6])
    assert lines[6]["prediction"] is None and lines[6]["error"] == "invalid_type"


def test_a_regressor_answers_sqs_requests_like_http(
    imported: dict[str, ImportedModel], registry: RegistryAdmin, data_bucket: Any, tmp_path: Path
) -> None:
    model = imported["alcohol"]
    publish(registry, model.directory)
    rows = rows_of(model.held_out)
    event = copy.deepcopy(load_event("spam_nb", "sqs_batch.json"))
    template = event["Records"][0]
    requests = [
        {"request_id": "alc-0", "instances": rows[:2]},
        {"request_id": "alc-1", "instances": rows[2:5]},
    ]
    event["Records"] = [
        {**copy.deepcopy(template), "messageId": f"m-{i}", "body": json.dumps(r)}
        for i, r in enumerate(requests)
    ]
    assert ModelFunction("alcohol", data_bucket, tmp_path)(event) == {"batchItemFailures": []}
    answers = [
        json.loads(
            data_bucket.get_object(Bucket=DATA_BUCKET, Key=f"results/alcohol/{r['request_id']}.json")[
                "Body"
            ].read()
        )
        for r in requests
    ]
    assert_same(answers[0]["predictions"] + answers[1]["predictions"], model.expected[:5])


# --- refusals ----------------------------------------------------------------------------------


def test_labels_out_of_order_are_refused_naming_both_orders(
    imported: dict[str, ImportedModel], wine: Any, tmp_path: Path
) -> None:
    from maas.core.errors import TrainingError
    from training.importer import load_source

    X_test = wine[1].iloc[:, 1:]
    with pytest.raises(TrainingError) as refused:
        import_model(
            imported["topics"].directory / "model.onnx",
            name="topics",
            out=tmp_path / "t",
            X=TEXTS,
            labels=["work", "spam", "sport"],
        )
    assert str(refused.value) == (
        "the labels file lists ['work', 'spam', 'sport'] but the model's class order "
        "(the graph's class labels) is ['spam', 'sport', 'work']"
    )
    assert load_source(imported["alcohol"].directory / "model.onnx")
    with pytest.raises(TrainingError, match="has no classes"):
        import_model(
            imported["alcohol"].directory / "model.onnx", name="a", out=tmp_path / "a", X=X_test, labels=["x"]
        )


def test_the_parity_gate_names_the_rows_that_differ(
    wine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LinearRegression

    from maas.core.errors import ParityError

    X_train, X_test, _, _ = wine
    features = X_train.iloc[:, 1:]
    model = LinearRegression().fit(features, X_train.iloc[:, 0])
    real = model.predict

    def drifting(X: Any) -> Any:  # the "source" answers differently on rows 2 and 5
        values = np.array(real(X), dtype=np.float64)
        values[[2, 5]] += 0.01
        return values

    monkeypatch.setattr(model, "predict", drifting)
    with pytest.raises(ParityError) as refused:
        import_model(model, name="alc", out=tmp_path / "alc", X=X_test.iloc[:, 1:], quiet=True)
    assert (
        "ONNX disagrees with the source model on 2 of 89 values, max value/(atol+rtol·|value|) difference"
        in str(refused.value)
    )
    assert str(refused.value).endswith("rows that differ: [2, 5]")
    assert not (tmp_path / "alc").exists()


def test_an_exported_graph_is_checked_against_the_answers_its_source_gave(
    imported: dict[str, ImportedModel], tmp_path: Path
) -> None:
    """``expected=``: a graph exported by the caller, with the source model's answers to the sample.
    The scikit-learn pipeline's answers pass; answers the graph does not give (rows 2 and 5 of
    another model) are refused, naming the rows, and nothing is written."""
    from maas.core.errors import ParityError

    topics = imported["topics"]
    graph = topics.directory / "model.onnx"
    labels = ["spam", "sport", "work"]
    source = np.array([[answer["probabilities"][label] for label in labels] for answer in topics.expected])
    manifest = import_model(graph, name="topics", out=tmp_path / "ok", X=TEXTS, expected=source, quiet=True)
    assert manifest["parity"]["passed"] and manifest["parity"]["rows"] == len(TEXTS)
    assert manifest["provenance"]["parity_inputs"].startswith(
        "the sample rows and the source model's answers"
    )
    other = source.copy()
    other[[2, 5]] = other[[2, 5]][:, [1, 2, 0]]  # another class wins on those rows
    with pytest.raises(ParityError) as refused:
        import_model(graph, name="topics", out=tmp_path / "refused", X=TEXTS, expected=other, quiet=True)
    assert str(refused.value).startswith(
        "refusing to write topics: ONNX disagrees with the source model on 2 of 9 labels, max probability"
    )
    assert str(refused.value).endswith("rows that differ: [2, 5]")
    assert not (tmp_path / "refused").exists()


def _edited(source: Path, destination: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    import shutil

    shutil.copytree(source, destination)
    manifest = json.loads((destination / "manifest.json").read_text())
    edit(manifest)
    (destination / "manifest.json").write_text(json.dumps(manifest))
    return destination
