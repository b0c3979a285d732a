"""Mixed-type tables end to end: four models people fit on DataFrames of strings and gaps,
imported with `maas import` (joblib file + CSV sample), published, served by `maas serve`.

The data: scikit-learn's bundled diabetes table (442 patients) with its real ``sex`` column as the
strings it codes and the WHO BMI class as a second string column; 10% of blood pressures are
blanked. Every answer is parsed with a strict RFC 8259 parser (no NaN, no Infinity).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from ops.cli import main as maas
from ops.event_sources import s3_put_event
from ops.local import create_bucket
from ops.registry_admin import RegistryAdmin
from tests.conftest import load_event
from tests.e2e.conftest import Served, start_serve
from tests.e2e.test_byom import DATA_BUCKET, ModelFunction, data_bucket, publish  # noqa: F401  (fixture)

TABLES_BUCKET = "maas-tables-models"
STRINGS = ["sex", "bmi_class"]
HELD_OUT = 60


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def strict(text: str | bytes) -> Any:
    """JSON as RFC 8259 has it: NaN, Infinity and -Infinity are refused."""
    return json.loads(text, parse_constant=_constant)


def diabetes() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False, as_frame=True)
    frame = data.frame.drop(columns="target")
    frame["sex"] = frame["sex"].map({1.0: "female", 2.0: "male"}).astype(object)
    bins = pd.cut(
        frame["bmi"], [0, 18.5, 25, 30, 100], labels=["underweight", "normal", "overweight", "obese"]
    )
    frame["bmi_class"] = bins.astype(str).astype(object)
    frame.loc[np.random.default_rng(0).random(len(frame)) < 0.1, "bp"] = np.nan
    target = np.where(data.frame["target"] > data.frame["target"].median(), "high", "low")
    return frame, target


@dataclass
class Table:
    name: str
    model: Any
    directory: Path
    printed: str
    source: pd.DataFrame  # held-out rows as the model was fitted (category dtypes kept)


def fit_models(X: pd.DataFrame, y: np.ndarray) -> dict[str, tuple[Any, list[str]]]:
    import lightgbm
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = [c for c in X.columns if c not in STRINGS]
    X, y = X.iloc[:-HELD_OUT], y[:-HELD_OUT]  # the last rows are held out: imported and served
    complete = X.dropna()
    onehot = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("strings", OneHotEncoder(handle_unknown="ignore"), STRINGS),
                        ("numbers", StandardScaler(), numbers),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(complete, y[complete.index])
    imputed = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("strings", OneHotEncoder(handle_unknown="ignore"), STRINGS),
                        ("numbers", make_pipeline(SimpleImputer(), StandardScaler()), numbers),
                    ]
                ),
            ),
            ("model", GradientBoostingClassifier(n_estimators=25, random_state=0)),
        ]
    ).fit(X, y)
    hist = HistGradientBoostingClassifier(max_iter=25, random_state=0).fit(X[numbers], y)
    categorical = X.copy()
    for column in STRINGS:
        categorical[column] = categorical[column].astype("category")
    lgbm = lightgbm.LGBMClassifier(n_estimators=25, verbose=-1, random_state=0).fit(categorical, y)
    return {
        "patients_onehot": (onehot, list(X.columns)),
        "patients_imputed": (imputed, list(X.columns)),
        "patients_hgb": (hist, numbers),
        "patients_lgbm": (lgbm, list(X.columns)),
    }


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Table]:
    """The four models, each imported with the CLI from a joblib file and a CSV sample."""
    work = tmp_path_factory.mktemp("tables")
    X, y = diabetes()
    out: dict[str, Table] = {}
    for name, (model, columns) in fit_models(X, y).items():
        held_out = X[columns].iloc[-HELD_OUT:]
        if name == "patients_onehot":
            held_out = held_out.dropna()  # fitted without gaps: it takes none
        if name == "patients_lgbm":  # as it was fitted: pandas categories (a CSV carries the text)
            for column, fitted in zip(STRINGS, model.booster_.pandas_categorical, strict=True):
                held_out[column] = pd.Categorical(held_out[column], categories=fitted)
        joblib.dump(model, work / f"{name}.joblib")
        held_out.to_csv(work / f"{name}.csv", index=False)
        pd.DataFrame({"target": y[held_out.index]}).to_csv(work / f"{name}.target.csv", index=False)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = maas(
                [
                    "import", str(work / f"{name}.joblib"), "--name", name, "--out", str(work / name),
                    "--sample", str(work / f"{name}.csv"), "--target", str(work / f"{name}.target.csv"), "--quiet",
                ]
            )  # fmt: skip
        assert code == 0
        print(printed.getvalue().strip())
        out[name] = Table(name, model, work / name, printed.getvalue(), held_out)
    return out


@pytest.fixture(scope="module")
def served_tables(
    moto_endpoint: str, tables: dict[str, Table], ridge: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The four models and the overflowing regressor behind `maas serve`."""
    create_bucket(TABLES_BUCKET)
    registry = RegistryAdmin(TABLES_BUCKET)
    for directory in [*(t.directory for t in tables.values()), ridge]:
        published = registry.publish(directory)
        registry.set_alias(published.name, "production", published.version)
    work = tmp_path_factory.mktemp("serve-tables")
    env = {**os.environ, "MODEL_CACHE_DIR": str(work / "cache")}
    process, url = start_serve(["--bucket", TABLES_BUCKET], env, work / "serve.log")
    try:
        yield Served(url, registry, work / "serve.log")
    finally:
        process.terminate()
        process.wait(timeout=30)


def with_gaps_and_unseen(table: Table) -> pd.DataFrame:
    """Held-out rows plus rows a client may send: an unseen category, a gap in each feature the
    model takes missing (per the manifest's signature)."""
    manifest = json.loads((table.directory / "manifest.json").read_text())
    frame = table.source.astype(object).copy()
    extra = []
    for index, feature in enumerate(manifest["signature"]["features"]):
        row = frame.iloc[[index]].copy()
        if feature["type"] == "string":
            unseen = row.copy()
            unseen[feature["name"]] = "retired"  # no such category in the training data
            extra.append(unseen)
        if feature["missing"]:
            row[feature["name"]] = None
            extra.append(row)
    return pd.concat([frame, *extra], ignore_index=True)


def as_instances(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (None if v is None or (isinstance(v, float) and np.isnan(v)) else v) for k, v in row.items()}
        for row in frame.astype(object).to_dict(orient="records")
    ]


def source_answers(table: Table, frame: pd.DataFrame) -> np.ndarray:
    given = frame.copy()
    for column in given.columns:
        if column in STRINGS:
            dtype = table.source[column].dtype
            given[column] = (
                pd.Categorical(
                    given[column].where(given[column].isin(dtype.categories)), categories=dtype.categories
                )
                if str(dtype) == "category"
                else given[column]
            )
        else:
            given[column] = pd.to_numeric(given[column]).astype(np.float64)
    return np.asarray(table.model.predict_proba(given))


@pytest.mark.parametrize("name", ["patients_onehot", "patients_imputed", "patients_hgb", "patients_lgbm"])
def test_a_mixed_table_model_is_served_like_its_source_with_gaps_and_unseen_categories(
    name: str, tables: dict[str, Table], served_tables: Served
) -> None:
    table = tables[name]
    assert "parity 0 of" in table.printed
    frame = with_gaps_and_unseen(table)
    response = served_tables.post(f"/models/{name}/predict", {"instances": as_instances(frame)})
    assert response.status_code == 200, response.text
    predictions = strict(response.text)["predictions"]
    want = source_answers(table, frame)
    labels = [str(c) for c in table.model.classes_]
    got = np.asarray([[p["probabilities"][label] for label in labels] for p in predictions])
    assert np.max(np.abs(got - want)) <= 1e-4
    assert [p["label"] for p in predictions] == [
        str(v) for v in table.model.classes_[np.argmax(want, axis=1)]
    ]
    # lists in feature order answer the same
    features = list(table.source.columns)
    rows = [[instance[f] for f in features] for instance in as_instances(frame.iloc[:3])]
    listed = served_tables.post(f"/models/{name}/predict", {"instances": rows})
    assert strict(listed.text)["predictions"] == predictions[:3]
    print(
        f"{name}: {len(frame)} rows ({len(frame) - len(table.source)} with a gap or an unseen category), max |Δ| {np.max(np.abs(got - want)):.2e}"
    )


def test_tritons_client_with_its_default_arguments_scores_a_mixed_table(
    tables: dict[str, Table], served_tables: Served
) -> None:
    """One binary tensor per column (BYTES for strings, FP32 for numbers), outputs as binary."""
    import tritonclient.http as triton

    table = tables["patients_imputed"]
    frame = table.source.iloc[:5]
    client = triton.InferenceServerClient(url=served_tables.url.removeprefix("http://"))
    inputs = []
    for column in frame.columns:
        strings = column in STRINGS
        tensor = triton.InferInput(column, [len(frame), 1], "BYTES" if strings else "FP32")
        values = frame[[column]].to_numpy()
        tensor.set_data_from_numpy(values.astype(object) if strings else values.astype(np.float32))
        inputs.append(tensor)
    result = client.infer("patients_imputed", inputs)
    assert np.max(np.abs(result.as_numpy("probabilities") - table.model.predict_proba(frame))) <= 1e-4
    assert [v.decode() for v in result.as_numpy("label")] == list(table.model.predict(frame))
    print(
        f"tritonclient defaults, patients_imputed: labels {[v.decode() for v in result.as_numpy('label')]}, "
        f"probabilities {result.as_numpy('probabilities')[:2].round(4).tolist()}…, "
        f"binary_data_size {result.get_output('probabilities')['parameters']['binary_data_size']}"
    )
    client.close()


def test_the_signature_says_each_features_type_and_missingness(tables: dict[str, Table]) -> None:
    onehot = json.loads((tables["patients_onehot"].directory / "manifest.json").read_text())
    features = {f["name"]: f for f in onehot["signature"]["features"]}
    assert features["sex"] == {"name": "sex", "type": "string", "missing": True}
    assert features["bp"] == {"name": "bp", "type": "number", "missing": False}  # no imputer
    imputed = json.loads((tables["patients_imputed"].directory / "manifest.json").read_text())
    assert {f["name"]: f["missing"] for f in imputed["signature"]["features"]}["bp"] is True
    assert [i["dtype"] for i in imputed["signature"]["inputs"]][:2] == ["float32", "string"]


@pytest.mark.parametrize(
    ("name", "change", "field", "code"),
    [
        ("patients_imputed", {"age": "old"}, "instances[0].age", "invalid_type"),
        ("patients_imputed", {"sex": 1}, "instances[0].sex", "invalid_type"),
        ("patients_onehot", {"bp": None}, "instances[0].bp", "missing_value"),
        ("patients_imputed", {"shoe_size": 43}, "instances[0].shoe_size", "unknown_feature"),
    ],
)
def test_a_bad_cell_is_a_400_naming_the_feature(
    name: str, change: dict[str, Any], field: str, code: str, tables: dict[str, Table], served_tables: Served
) -> None:
    instance = {**as_instances(tables[name].source.iloc[:1])[0], **change}
    response = served_tables.post(f"/models/{name}/predict", {"instances": [instance]})
    assert response.status_code == 400, response.text
    error = strict(response.text)["error"]
    assert (error["field"], error["code"]) == (field, code)
    missing = as_instances(tables[name].source.iloc[:1])[0]
    del missing["bmi_class"]
    answer = strict(served_tables.post(f"/models/{name}/predict", {"instances": [missing]}).text)
    assert answer["error"]["field"] == "instances[0].bmi_class"


def test_a_conversion_failure_is_one_line_naming_the_estimator_and_verbose_shows_the_detail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sklearn.semi_supervised import SelfTrainingClassifier
    from sklearn.svm import SVC

    X, y = diabetes()
    numbers = X[["age", "bmi", "s1"]].dropna()
    model = SelfTrainingClassifier(SVC(probability=True)).fit(numbers, y[numbers.index].astype(object))
    joblib.dump(model, tmp_path / "m.joblib")
    numbers.iloc[:20].to_csv(tmp_path / "s.csv", index=False)
    args = ["import", str(tmp_path / "m.joblib"), "--name", "m", "--out", str(tmp_path / "o"), "--sample", str(tmp_path / "s.csv"), "--quiet"]  # fmt: skip
    assert maas(args) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "SelfTrainingClassifier" in err and "Traceback" not in err
    print(err.strip())
    assert maas([*args, "--verbose"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_an_ordinal_encoder_takes_unseen_categories_and_a_strict_one_hot_encoder_refuses_them(
    tmp_path: Path,
) -> None:
    """handle_unknown honoured: OrdinalEncoder(use_encoded_value) answers an unseen category as
    scikit-learn does; OneHotEncoder(handle_unknown="error") makes it a 400 naming the feature."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    from maas.core.errors import RequestError
    from maas.core.predictor import Predictor
    from maas.core.tasks import task_for
    from maas.core.tasks.base import Classifier
    from training.importer import import_model

    X, y = diabetes()
    numbers = [c for c in X.columns if c not in STRINGS]
    ordinal = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        (
                            "strings",
                            OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                            STRINGS,
                        ),
                        ("numbers", SimpleImputer(), numbers),
                    ]
                ),
            ),
            ("model", HistGradientBoostingClassifier(max_iter=20, random_state=0)),
        ]
    ).fit(X.iloc[:-40], y[:-40])
    complete = X.dropna()
    strict_onehot = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [("strings", OneHotEncoder(handle_unknown="error"), STRINGS)], remainder=StandardScaler()
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(complete.iloc[:-40], y[complete.index][:-40])
    served = {}
    for name, model, sample in (
        ("ordinal", ordinal, X.iloc[-40:]),
        ("strict", strict_onehot, complete.iloc[-40:]),
    ):
        manifest = import_model(model, name=name, out=tmp_path / name, X=sample, quiet=True)
        assert manifest["parity"]["passed"]
        task = task_for(Predictor(tmp_path / name / "model.onnx"), manifest)
        assert isinstance(task, Classifier)
        served[name] = (task, manifest, as_instances(sample.iloc[:1])[0])
    task, manifest, row = served["ordinal"]
    assert manifest["parity"]["rows"] > 40  # the unseen categories and gaps were compared too
    unseen = {**row, "sex": "retired"}
    (answer,) = task.predict(task.prepare([unseen]))
    want = ordinal.predict_proba(pd.DataFrame([unseen]).astype({c: float for c in numbers}))[0]
    assert (
        max(abs(answer["probabilities"][str(c)] - p) for c, p in zip(ordinal.classes_, want, strict=True))
        <= 1e-4
    )
    task, manifest, row = served["strict"]
    sex = next(f for f in manifest["signature"]["features"] if f["name"] == "sex")
    assert sex["categories"] == ["female", "male"]
    with pytest.raises(RequestError) as refused:
        task.prepare([{**row, "sex": "retired"}])
    assert (refused.value.code, refused.value.field) == ("unknown_category", "instances[0].sex")


def test_xgboost_on_category_columns_imports_with_its_categories_and_a_csv_sample_is_told_why_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xgboost

    from training.importer import import_model

    X, y = diabetes()
    for column in STRINGS:
        X[column] = X[column].astype("category")
    model = xgboost.XGBClassifier(n_estimators=20, enable_categorical=True, max_cat_to_onehot=1).fit(
        X, (y == "high").astype(int)
    )
    manifest = import_model(model, name="patients_xgb", out=tmp_path / "xgb", X=X.iloc[-40:], quiet=True)
    parity = manifest["parity"]
    assert parity["passed"] and parity["rows"] > 40  # the gate's rows include gaps and unseen categories
    inputs = {i["name"]: i["dtype"] for i in manifest["signature"]["inputs"]}
    assert (inputs["sex"], inputs["age"]) == ("string", "float32")
    joblib.dump(model, tmp_path / "xgb.joblib")
    X.iloc[-40:].to_csv(tmp_path / "xgb.csv", index=False)
    args = ["import", str(tmp_path / "xgb.joblib"), "--name", "x", "--out", str(tmp_path / "o"), "--sample", str(tmp_path / "xgb.csv"), "--quiet"]  # fmt: skip
    assert maas(args) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'category' columns" in err and "'sex'" in err


# --- strict JSON: a regressor driven to overflow ----------------------------------------------------


@pytest.fixture(scope="module")
def ridge(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sklearn.linear_model import Ridge

    from training.importer import import_model

    X, _ = diabetes()
    numbers = X[["age", "bmi", "s1", "s5"]].dropna()
    model = Ridge().fit(numbers, numbers["s5"] * 3 + numbers["bmi"])
    out = tmp_path_factory.mktemp("ridge") / "ridge"
    import_model(model, name="overflow", out=out, X=numbers.iloc[:20], quiet=True)
    return out


OVERFLOW = {"age": 1e38, "bmi": 1e38, "s1": 1e38, "s5": 1e38}


def test_a_non_finite_output_is_that_rows_error_on_http_and_the_protocol(
    ridge: Path, served_tables: Served
) -> None:
    fine = {"age": 50.0, "bmi": 25.0, "s1": 180.0, "s5": 4.5}
    response = served_tables.post("/models/overflow/predict", {"instances": [fine, OVERFLOW]})
    assert response.status_code == 400
    assert strict(response.text)["error"]["code"] == "non_finite_output"
    assert strict(response.text)["error"]["field"] == "instances[1]"
    tensor = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1e38] * 4}]}
    infer = served_tables.post("/v2/models/overflow/infer", tensor)
    assert infer.status_code == 400 and strict(infer.text)["code"] == "non_finite_output"
    assert "row 0 of output" in strict(infer.text)["error"]
    ok = served_tables.post("/models/overflow/predict", {"instances": [fine]})
    assert ok.status_code == 200 and np.isfinite(strict(ok.text)["predictions"][0]["value"])


# --- in-process moto (mock_aws) from here on: it resets the moto backend `maas serve` reads, so
# these come after every test of the served models above.


def test_a_csv_batch_takes_empty_cells_as_missing_and_refuses_a_bad_cell_in_its_row(
    tables: dict[str, Table],
    registry: RegistryAdmin,
    data_bucket: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    table = tables["patients_imputed"]
    publish(registry, table.directory)
    frame = table.source.iloc[:4].astype(object).copy()
    frame.iloc[1, frame.columns.get_loc("bp")] = None  # an empty cell
    frame.iloc[2, frame.columns.get_loc("sex")] = None
    handle = io.StringIO()
    writer = csv.writer(handle)
    writer.writerow(["id", *frame.columns])
    for index, row in enumerate(frame.itertuples(index=False)):
        writer.writerow([f"r{index}", *("" if v is None or v != v else v for v in row)])
    writer.writerow(["bad", *("old" if c == "age" else "" for c in frame.columns)])
    key = "inputs/patients_imputed/visits.csv"
    data_bucket.put_object(Bucket=DATA_BUCKET, Key=key, Body=handle.getvalue().encode())
    response = ModelFunction("patients_imputed", data_bucket, tmp_path)(
        s3_put_event("spam_nb", DATA_BUCKET, key, data_bucket)
    )
    (outcome,) = response["files"]
    lines = [
        strict(line)
        for line in data_bucket.get_object(Bucket=DATA_BUCKET, Key=outcome["outputs"]["predictions"])["Body"]
        .read()
        .decode()
        .splitlines()
    ]
    assert [line["id"] for line in lines] == ["r0", "r1", "r2", "r3", "bad"]
    want = source_answers(table, frame)
    got = np.asarray(
        [[line["prediction"]["probabilities"][c] for c in table.model.classes_] for line in lines[:4]]
    )
    assert np.max(np.abs(got - want)) <= 1e-4
    assert lines[4]["prediction"] is None and lines[4]["error"] == "invalid_type"
    errors = data_bucket.get_object(Bucket=DATA_BUCKET, Key=outcome["outputs"]["errors"])["Body"].read()
    (refused,) = [strict(line) for line in errors.decode().splitlines()]
    assert (refused["id"], refused["error"]["field"]) == ("bad", "instance.age")


def test_a_non_finite_output_is_that_rows_error_in_s3_files_and_sqs_results(
    ridge: Path,
    registry: RegistryAdmin,
    data_bucket: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    publish(registry, ridge)
    fine = {"age": 50.0, "bmi": 25.0, "s1": 180.0, "s5": 4.5}
    key = "inputs/overflow/rows.jsonl"
    body = "\n".join(json.dumps(r) for r in (fine, OVERFLOW, fine))
    data_bucket.put_object(Bucket=DATA_BUCKET, Key=key, Body=body.encode())
    function = ModelFunction("overflow", data_bucket, tmp_path)
    (outcome,) = function(s3_put_event("spam_nb", DATA_BUCKET, key, data_bucket))["files"]
    text = data_bucket.get_object(Bucket=DATA_BUCKET, Key=outcome["outputs"]["predictions"])["Body"].read()
    lines = [strict(line) for line in text.decode().splitlines()]
    assert [line.get("error") for line in lines] == [None, "non_finite_output", None]
    event = copy.deepcopy(load_event("spam_nb", "sqs_batch.json"))
    template = event["Records"][0]
    requests = [{"request_id": "fine", "instances": [fine]}, {"request_id": "over", "instances": [OVERFLOW]}]
    event["Records"] = [
        {**copy.deepcopy(template), "messageId": f"m-{i}", "body": json.dumps(r)}
        for i, r in enumerate(requests)
    ]
    # the overflowing request fails alone (retried, then dead-lettered); nothing holds a NaN
    assert function(event) == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    written = data_bucket.list_objects_v2(Bucket=DATA_BUCKET, Prefix="results/overflow/")["Contents"]
    assert [o["Key"] for o in written] == ["results/overflow/fine.json"]
    answer = strict(data_bucket.get_object(Bucket=DATA_BUCKET, Key=written[0]["Key"])["Body"].read())
    assert np.isfinite(answer["predictions"][0]["value"])
