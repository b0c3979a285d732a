"""Bring your own model: a fitted model (or its file) in, the version folder ``maas train`` writes out.

The same export -> parity -> write path as the trainers (``training.export.write_version``):

- scikit-learn estimators and pipelines through skl2onnx (text pipelines with the TF-IDF options
  this machine needs, ``zipmap: False`` on classifiers); XGBoost and LightGBM through onnxmltools'
  converters registered with skl2onnx; DataFrames of strings and numbers with gaps (a
  ``ColumnTransformer`` pipeline, HistGradientBoosting on NaN, boosters on pandas categories)
  through ``training.tables``, one graph input per column;
- Keras models (objects, ``.keras``, ``.h5``) through ``tf2onnx.convert.from_function``, as the
  Keras trainers export;
- ONNX files as they are (their parity is the served path against a plain onnxruntime run), or
  a graph the caller exported with the source model's answers to the sample (``expected=``), the
  files its served path reads (``artifacts=``, named in ``io=``): a tokeniser, a vocabulary.

What the manifest needs is inferred: the signature from the graph, the class order from the model
(``classes_`` or the graph's class labels; a labels file that contradicts it is refused), feature
names from ``feature_names_in_`` (or a CSV sample's header), and the task; ``task=`` overrides it.
The parity gate runs on the sample: the user's rows, which with a target are the held-out rows the
manifest's metrics come from. The source model answers the rows as given; the ONNX graph answers
them through the runtime's own task type (float32 feeds), so parity is what a client will see.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime

from maas.core.errors import TrainingError
from maas.core.predictor import Predictor
from maas.core.registry import MANIFEST_NAME, MODEL_FILE, check_model_name
from maas.core.tasks import TASKS, task_for
from maas.core.tasks.base import Classifier
from maas.core.tasks.generation import GenerationRequest, TextGenerator
from maas.core.tasks.sequences import binary_probabilities
from training.conversion import converted
from training.export import (
    Candidate,
    ParityReport,
    compare_classifier,
    compare_generations,
    compare_values,
    write_version,
)
from training.keras_common import without_initializer_inputs
from training.progress import Progress
from training.quantize import quantisation
from training.tables import convert as convert_table
from training.tables import is_table, patch_tree_converter
from training.tables import request_schema as table_request_schema
from training.text import (
    classification_metrics,
    generation_request_schema,
    instances_schema,
    text_request_schema,
)

CLASSIFIER_TASKS = (
    "text-classification",
    "sequence-classification",
    "tabular-classification",
    "image-classification",
)
#: tasks whose instances are strings; only a text-classification graph reads them itself, the
#: others are fed by the runtime through an artifact of the version (a tokeniser, a vocabulary)
TEXT_TASKS = ("text-classification", "sequence-classification", "text-generation")
ONNX_OPSET = 17
#: a quantised classifier may move a probability this far, and flip no label of the sample
INT8_PROBABILITY_TOLERANCE = 0.05
ML_OPSET = 3
# sklearn's default token pattern, written so onnxruntime's regex engine matches it on Unicode
# (its \w is ASCII-only); C.UTF-8 because en_US is absent on these machines.
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
ONNX_TOKENS = r"[\p{L}\p{N}_]{2,}"
MODEL_SUFFIXES = (".onnx", ".keras", ".h5", ".joblib", ".pkl", ".pickle")
SAMPLE_SUFFIXES = (".csv", ".jsonl", ".ndjson", ".npy")


# --- reading what the user hands over ----------------------------------------------------------


def load_source(path: Path) -> Any:
    """A model file: ONNX (bytes), Keras (``.keras``/``.h5``), or a pickled/joblib estimator."""
    if not path.is_file():
        raise TrainingError(f"{path} does not exist", code="source_missing")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return path.read_bytes()
    if suffix in (".keras", ".h5"):
        from training.keras_common import tensorflow

        tensorflow()
        import keras

        try:
            return keras.models.load_model(path, compile=False)
        except Exception as error:  # Keras raises many types for a file it cannot read
            raise TrainingError(f"{path} is not a Keras model Keras can load: {error}") from None
    if suffix in (".joblib", ".pkl", ".pickle"):
        import joblib

        try:
            return joblib.load(path)
        except (pickle.UnpicklingError, EOFError, ValueError, ImportError, AttributeError) as error:
            raise TrainingError(f"{path} cannot be unpickled: {error}") from None
    raise TrainingError(f"{path}: unknown model file type {suffix!r}; use one of {list(MODEL_SUFFIXES)}")


def read_sample(path: Path) -> Any:
    """Sample rows: CSV with a header (a DataFrame), JSON Lines (one instance a line), or ``.npy``."""
    if not path.is_file():
        raise TrainingError(f"{path} does not exist", code="sample_missing")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path)
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as error:
                raise TrainingError(f"{path} line {number} is not JSON: {error}") from None
        if rows and all(isinstance(r, dict) for r in rows):
            import pandas as pd

            return pd.DataFrame(rows)
        return rows
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    raise TrainingError(f"{path}: unknown sample file type {suffix!r}; use one of {list(SAMPLE_SUFFIXES)}")


def read_target(path: Path) -> np.ndarray:
    """The target of the sample rows: a one-column CSV (header), JSON Lines, or ``.npy``."""
    value = read_sample(path)
    if hasattr(value, "to_numpy"):
        value = value.to_numpy()
    array = np.asarray(value)
    return array.ravel() if array.ndim == 2 and array.shape[1] == 1 else array


def read_labels(path: Path) -> list[str]:
    """Labels, one a line (or a JSON list), in the model's class order."""
    if not path.is_file():
        raise TrainingError(f"{path} does not exist", code="labels_missing")
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        return [str(label) for label in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- what kind of model ------------------------------------------------------------------------


def _is_keras(model: Any) -> bool:
    return any(klass.__module__.startswith("keras") for klass in type(model).__mro__)


_KIND_NAMES = {"sklearn": "scikit-learn/XGBoost/LightGBM", "keras": "Keras", "onnx": "ONNX"}


def _kind(model: Any) -> str:
    if isinstance(model, bytes | bytearray | onnx.ModelProto):
        return "onnx"
    if _is_keras(model):
        return "keras"
    if hasattr(model, "predict"):
        return "sklearn"
    raise TrainingError(
        f"cannot import a {type(model).__module__}.{type(model).__name__}: give a scikit-learn, "
        "XGBoost or LightGBM estimator, a Keras model or an ONNX file"
    )


def _final_step(model: Any) -> Any:
    return model.steps[-1][1] if hasattr(model, "steps") else model


def _is_text_sample(X: Any) -> bool:
    if isinstance(X, list | tuple):
        return bool(X) and all(isinstance(x, str) for x in X)
    array = np.asarray(X) if not hasattr(X, "columns") else None
    return array is not None and array.dtype.kind in "OUS" and array.ndim == 1


def _register_boosting_converters() -> None:
    """XGBoost and LightGBM models convert through onnxmltools' converters, registered with skl2onnx."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    except ImportError:
        pass
    else:
        update_registered_converter(
            xgboost.XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            xgboost.XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
        )
    try:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    except ImportError:
        pass
    else:
        update_registered_converter(
            lightgbm.LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            lightgbm.LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            options={"split": None},
        )


def _without_booster_names(model: Any) -> Any:
    """onnxmltools' XGBoost converter reads features as ``f<i>``: a booster fitted on a DataFrame
    carries column names instead, so a copy without them is converted (the order is the same)."""
    targets = [step for _, step in model.steps] if hasattr(model, "steps") else [model]
    if not any(hasattr(step, "get_booster") for step in targets):
        return model
    converted = copy.deepcopy(model)
    for step in [s for _, s in converted.steps] if hasattr(converted, "steps") else [converted]:
        if hasattr(step, "get_booster"):
            step.get_booster().feature_names = None
    return converted


# --- the parts of a version ----------------------------------------------------------------------


@dataclass
class Imported:
    """A converted graph with what the manifest and the parity gate need."""

    task: str
    onnx_model: onnx.ModelProto
    labels: list[str]
    io: dict[str, Any]
    features: list[str] | None
    instances: list[Any]
    #: the source model's answers to ``instances``, by what the parity gate compares
    reference: dict[str, Any]
    framework: dict[str, Any]
    class_source: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    #: a table's features: type, missingness, categories (``training.tables.Column.to_dict``)
    columns: list[dict[str, Any]] | None = None
    #: the sample rows the target (and so the metrics) covers: the parity gate may add more
    target_rows: int | None = None


def _feature_frame(X: Any, features: list[str] | None, width: int) -> tuple[np.ndarray, list[str]]:
    """The sample as a float64 matrix in the model's feature order, and the feature names.

    The source model answers these values as given; the served path casts them to float32 as the
    runtime does. (Rounding them for the source too would break trees whose thresholds are data
    values: ``x <= t`` holds in float64 and, by monotone rounding, in float32, not across both.)"""
    if hasattr(X, "columns"):
        columns = [str(c) for c in X.columns]
        names = features or columns
        missing = [n for n in names if n not in columns]
        if missing:
            raise TrainingError(f"the sample has no column {missing[0]!r}; the model's features are {names}")
        frame = X[names]
        bad = [str(c) for c in frame.columns if frame[c].dtype.kind not in "biuf"]
        if bad:
            raise TrainingError(f"sample column {bad[0]!r} is not numeric: tabular models take numbers only")
        matrix = frame.to_numpy(dtype=np.float64)
    else:
        try:
            matrix = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError):
            raise TrainingError("the sample must hold numbers (rows of features)") from None
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1) if width and matrix.size == width else matrix.reshape(-1, 1)
        names = features or [f"f{i}" for i in range(matrix.shape[1])]
    if matrix.ndim != 2 or (width and matrix.shape[1] != width):
        raise TrainingError(
            f"the sample has shape {list(matrix.shape)}; the model takes (rows, {width}) features"
        )
    return matrix, names


def convert_text_classifier(model: Any) -> onnx.ModelProto:
    """One graph from raw strings to labels and probabilities: a text pipeline through skl2onnx,
    its vectorisers tokenising as scikit-learn does (the locale and token pattern onnxruntime's
    regex engine needs on Unicode text), ``zipmap`` off so it answers a probability matrix."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    options: dict[Any, Any] = {type(_final_step(model)): {"zipmap": False}}
    for _, step in getattr(model, "steps", []):
        if isinstance(step, TfidfVectorizer | CountVectorizer):
            pattern = step.token_pattern
            options[id(step)] = {
                "locale": "C.UTF-8",
                "tokenexp": ONNX_TOKENS if pattern == DEFAULT_TOKEN_PATTERN else pattern,
            }
    onx: onnx.ModelProto = convert_sklearn(
        model,
        initial_types=[("text", StringTensorType([None, 1]))],
        options=options,  # skl2onnx's default opsets: speed_up_tfidf writes ReduceL2 as of opset 18
    )
    return onx


def _sklearn(model: Any, X: Any, task: str | None) -> Imported:
    import skl2onnx
    import sklearn
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.base import is_classifier, is_regressor
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    _register_boosting_converters()
    final = _final_step(model)
    first = model.steps[0][1] if hasattr(model, "steps") else model
    classifier = is_classifier(model) or is_classifier(final)
    if not classifier and not (is_regressor(model) or is_regressor(final)):
        raise TrainingError(
            f"{type(final).__name__} is neither a classifier nor a regressor: nothing to serve"
        )
    text = isinstance(first, TfidfVectorizer | CountVectorizer) or _is_text_sample(X)
    options: dict[Any, Any] = {}
    if classifier:
        options[type(final)] = {"zipmap": False}  # by type: XGBoost models are converted as a copy
    framework = {
        "name": "scikit-learn",
        "version": sklearn.__version__,
        "converter": f"skl2onnx {skl2onnx.__version__}",
        "estimator": "+".join(type(step).__name__ for _, step in getattr(model, "steps", [("", model)])),
    }
    for module in ("xgboost", "lightgbm"):
        if type(final).__module__.startswith(module):
            import onnxmltools

            framework.update(
                name=module,
                version=__import__(module).__version__,
                converter=f"onnxmltools {onnxmltools.__version__} via skl2onnx {skl2onnx.__version__}",
            )
    targets = {"": ONNX_OPSET, "ai.onnx.ml": ML_OPSET}
    patch_tree_converter()
    if is_table(model, X) and not text:
        return _table(model, X, task, classifier, options, targets, framework)
    if text:
        if not classifier:
            raise TrainingError("a text model must be a classifier to be served (text-classification)")
        texts = [str(x) for x in (X.tolist() if hasattr(X, "tolist") else X)]
        onx = convert_text_classifier(model)
        reference = {"probabilities": model.predict_proba(texts), "labels": model.predict(texts)}
        return Imported(
            task=task or "text-classification",
            onnx_model=onx,
            labels=[str(c) for c in model.classes_],
            io={
                "input": "text",
                "label_output": onx.graph.output[0].name,
                "probability_output": onx.graph.output[1].name,
            },
            features=None,
            instances=texts,
            reference=reference,
            framework=framework,
            class_source="classes_",
        )
    width = int(getattr(model, "n_features_in_", 0) or 0)
    fitted_names = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in fitted_names] if fitted_names is not None else None
    matrix, features = _feature_frame(X, names, width)
    source_input: Any = matrix
    if fitted_names is not None:
        import pandas as pd

        source_input = pd.DataFrame(matrix, columns=features)
    onx = converted(
        model,
        lambda: convert_sklearn(
            _without_booster_names(model),
            initial_types=[("input", FloatTensorType([None, matrix.shape[1]]))],
            options=options,
            target_opset=targets,
        ),
    )
    outputs = [o.name for o in onx.graph.output]
    if classifier:
        return Imported(
            task=task or "tabular-classification",
            onnx_model=onx,
            labels=[str(c) for c in model.classes_],
            io={"input": "input", "label_output": outputs[0], "probability_output": outputs[1]},
            features=features,
            instances=matrix.tolist(),
            reference={
                "probabilities": model.predict_proba(source_input),
                "labels": model.predict(source_input),
            },
            framework=framework,
            class_source="classes_",
        )
    return Imported(
        task=task or "regression",
        onnx_model=onx,
        labels=[],
        io={"input": "input", "value_output": outputs[0]},
        features=features,
        instances=matrix.tolist(),
        reference={"values": np.asarray(model.predict(source_input))},
        framework=framework,
    )


def _table(
    model: Any,
    X: Any,
    task: str | None,
    classifier: bool,
    options: dict[Any, Any],
    targets: dict[str, int],
    framework: dict[str, Any],
) -> Imported:
    """A DataFrame of string and number columns with gaps, through ``training.tables``."""
    table = convert_table(model, X, classifier, options, targets, _without_booster_names)
    outputs = [o.name for o in table.onnx_model.graph.output]
    io = {
        **table.io,
        **(
            {"label_output": outputs[0], "probability_output": outputs[1]}
            if classifier
            else {"value_output": outputs[0]}
        ),
    }
    return Imported(
        task=task or ("tabular-classification" if classifier else "regression"),
        onnx_model=table.onnx_model,
        labels=[str(c) for c in model.classes_] if classifier else [],
        io=io,
        features=table.features,
        instances=table.instances,
        reference=table.reference,
        framework=framework,
        class_source="classes_" if classifier else None,
        columns=table.columns,
        target_rows=table.target_rows,
    )


def _keras(model: Any, X: Any, task: str | None, input_name: str) -> Imported:
    from training.keras_common import export_model, keras_framework

    shape = [int(d) if d is not None else None for d in model.input_shape[1:]]
    if any(d is None for d in shape):
        raise TrainingError(
            f"the Keras model's input shape {model.input_shape} has a free dimension besides the batch"
        )
    last = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(getattr(last, "activation", None), "__name__", "")
    width = int(model.output_shape[-1])
    rank = len(shape) + 1
    if task is None:
        if activation == "softmax" and width > 1:
            task = (
                "tabular-classification" if rank == 2 else "image-classification" if rank == 4 else "tensors"
            )
        else:
            task = "regression" if rank == 2 else "tensors"
    output = "probabilities" if task in CLASSIFIER_TASKS else "value" if task == "regression" else "output"
    onx = export_model(model, shape, "float32", input_name, output)
    names: list[str] | None = None
    if rank == 2:
        matrix, names = _feature_frame(X, None, shape[0])
        inputs = matrix.astype(np.float32)
        instances: list[Any] = matrix.tolist()
    else:
        inputs = np.asarray(X, dtype=np.float32)
        instances = inputs.astype(np.float64).tolist()
    reference = np.asarray(model.predict(inputs, verbose=0), dtype=np.float64)
    io: dict[str, Any] = {"input": input_name}
    if task in CLASSIFIER_TASKS:
        io["probability_output"] = output
    elif task == "regression":
        io["value_output"] = output
    if task == "image-classification":
        io["value_range"] = [min(0.0, float(inputs.min())), max(1.0, float(inputs.max()))]
    labels = [str(i) for i in range(width)] if task in CLASSIFIER_TASKS else []
    return Imported(
        task=task,
        onnx_model=onx,
        labels=labels,
        io=io,
        features=names,
        instances=instances,
        reference={"probabilities": reference} if task in CLASSIFIER_TASKS else {"values": reference},
        framework=keras_framework(type(model).__name__),
        class_source=None,
    )


def graph_labels(model: onnx.ModelProto) -> list[str] | None:
    """The class labels an ONNX-ML classifier node carries, in the graph's probability order."""
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "classlabels_strings" and attribute.strings:
                return [s.decode() for s in attribute.strings]
            if attribute.name in ("classlabels_int64s", "classlabels_ints") and attribute.ints:
                return [str(i) for i in attribute.ints]
    return None


def labels_from_answers(
    model: onnx.ModelProto, probabilities: np.ndarray, answered: np.ndarray
) -> list[str] | None:
    """The class order of a graph that answers labels but carries them in no classifier node (a
    scikit-learn pipeline ends in ArrayFeatureExtractor over a constant): a constant of as many
    labels, consistent with what the graph answered at each row's argmax; else the answers alone
    if they cover every class."""
    from onnx import numpy_helper

    width = probabilities.shape[1]
    seen: dict[int, str] = {}
    for index, label in zip(np.argmax(probabilities, axis=1), np.asarray(answered).ravel(), strict=True):
        seen.setdefault(int(index), label.decode() if isinstance(label, bytes) else str(label))
    for init in model.graph.initializer:
        if init.data_type not in (onnx.TensorProto.STRING, onnx.TensorProto.INT64):
            continue
        values = numpy_helper.to_array(init).ravel()
        if values.size != width:
            continue
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in values]
        if seen and all(names[i] == label for i, label in seen.items()):
            return names
    return [seen[i] for i in range(width)] if len(seen) == width else None


# onnxruntime's element types -> the numpy dtype a sample is fed as (what the runtime casts to)
_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


def _tensor_rows(X: Any, inputs: list[Any]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """A sample for a graph of several inputs: a dict of arrays (one per input name, rows first)
    or a list of row objects keyed by input name. Returns the rows (the served instances) and the
    feeds (for the graph's own answers)."""
    names = [i.name for i in inputs]
    if hasattr(X, "to_dict") and hasattr(X, "columns"):  # JSON Lines objects read as a DataFrame
        X = X.to_dict(orient="records")
    if isinstance(X, dict):
        missing = [n for n in names if n not in X]
        if missing:
            raise TrainingError(f"the sample has no input {missing[0]!r}; the graph takes {names}")
        columns = {n: np.asarray(X[n]) for n in names}
        rows = [{n: columns[n][i].tolist() for n in names} for i in range(len(columns[names[0]]))]
    elif isinstance(X, list | tuple) and X and all(isinstance(row, dict) for row in X):
        rows = [dict(row) for row in X]
    else:
        raise TrainingError(
            f"the graph takes several inputs {names}: give the sample as rows keyed by input name "
            "(JSON Lines objects) or as a dict of arrays"
        )
    feeds = {
        i.name: np.asarray([row[i.name] for row in rows], dtype=_NUMPY_TYPES.get(i.type, np.float32))
        for i in inputs
    }
    return rows, feeds


def _expected(task: str, expected: Any, rows: int) -> dict[str, Any]:
    """The source model's answers to the sample (``expected=``), keyed as the parity gate reads
    them: a classifier's (rows, labels) probabilities, a regressor's values, a generator's greedy
    continuations (or ``{"text": [...], "logits": [...]}``, the logits after each token of prompt +
    continuation), or a mapping of output name to answers."""
    if task == "text-generation":
        answers = dict(expected) if isinstance(expected, Mapping) else {"text": expected}
        if "text" not in answers or any(not isinstance(t, str) or not t for t in answers["text"]):
            raise TrainingError(
                "expected= of a generator is its greedy continuation of each prompt, a non-empty string each"
            )
        reference: dict[str, Any] = {"text": list(answers["text"])}
        if "logits" in answers:
            reference["logits"] = [np.asarray(positions, dtype=np.float64) for positions in answers["logits"]]
    elif isinstance(expected, Mapping):
        reference = {str(key): np.asarray(value) for key, value in expected.items()}
    elif task in CLASSIFIER_TASKS:
        reference = {"probabilities": np.asarray(expected, dtype=np.float64)}
        if reference["probabilities"].ndim != 2:
            raise TrainingError(
                f"expected= of a classifier is a (rows, labels) probability matrix, not of shape "
                f"{list(reference['probabilities'].shape)}"
            )
    elif task == "regression":
        reference = {"values": np.asarray(expected, dtype=np.float64)}
    else:
        raise TrainingError(f"expected= of a {task!r} graph is a mapping of output name to answers")
    for key, value in reference.items():
        if len(value) != rows:
            raise TrainingError(f"expected= holds {len(value)} {key} for {rows} sample rows")
    return reference


def _onnx(
    model: Any,
    X: Any,
    task: str | None,
    labels: list[str] | None,
    given_io: Mapping[str, Any] | None = None,
    expected: Any = None,
) -> Imported:
    onx = model if isinstance(model, onnx.ModelProto) else onnx.load_from_string(bytes(model))
    onx = without_initializer_inputs(onx)
    try:
        session = onnxruntime.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime's own Fail/InvalidGraph/...: the graph, not the caller
        # the last clause of its message: "... Model::Model(...) Unsupported model IR version: 14, ..."
        reason = str(error).splitlines()[0].rsplit(" : ", 1)[-1].rsplit(") ", 1)[-1][:300]
        raise TrainingError(
            f"onnxruntime {onnxruntime.__version__} cannot load the ONNX graph: {reason}",
            code="graph_unloadable",
        ) from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if any(o.type.startswith("seq(") or o.type.startswith("map(") for o in outputs):
        raise TrainingError(
            "the ONNX graph answers a sequence of maps (ZipMap): export the classifier with "
            "options={id(model): {'zipmap': False}} so it answers a probability matrix"
        )
    rank = len(inputs[0].shape) if len(inputs) == 1 else 0
    label_output = next(
        (o.name for o in outputs if len(o.shape) == 1 and o.type in ("tensor(int64)", "tensor(string)")), None
    )
    # a (batch, classes) float output of two or more classes; (batch, 1) is a value
    probability_output = next(
        (
            o.name
            for o in outputs
            if len(o.shape) == 2
            and o.type == "tensor(float)"
            and not (isinstance(o.shape[1], int) and o.shape[1] < 2)
        ),
        None,
    )
    found = graph_labels(onx)
    if task is None:
        if len(inputs) != 1:
            task = "tensors"
        elif inputs[0].type == "tensor(string)":
            task = "text-classification"
        elif rank == 2 and probability_output and (label_output or labels or found):
            task = "tabular-classification"
        elif rank == 4 and probability_output and (labels or found):
            task = "image-classification"
        elif rank == 2 and inputs[0].type in ("tensor(float)", "tensor(double)"):
            task = "regression"
        else:
            task = "tensors"
    # a generator names its inputs itself (io's token_input and state_input)
    io: dict[str, Any] = {} if task == "text-generation" else {"input": inputs[0].name}
    features: list[str] | None = None
    feeds: dict[str, np.ndarray] | None = None
    feed: Any = None
    if task in TEXT_TASKS:
        instances: list[Any] = [str(x) for x in (X.tolist() if hasattr(X, "tolist") else X)]
        if task == "text-classification":
            feed = np.asarray(instances, dtype=object).reshape(-1, 1)
    elif task in ("tabular-classification", "regression"):
        width = inputs[0].shape[1] if isinstance(inputs[0].shape[1], int) else 0
        matrix, features = _feature_frame(X, None, width)
        instances = matrix.tolist()
        feed = matrix.astype(np.float64 if inputs[0].type == "tensor(double)" else np.float32)
    elif len(inputs) > 1 or isinstance(X, dict):
        instances, feeds = _tensor_rows(X, inputs)
    else:
        feed = np.asarray(X, dtype=_NUMPY_TYPES.get(inputs[0].type, np.float32))
        instances = feed.tolist()
    io.update(given_io or {})
    if expected is not None:
        reference = _expected(task, expected, len(instances))
    elif feed is None and feeds is None:
        raise TrainingError(
            f"the runtime feeds a {task!r} graph through an artifact of the version, not the sample as "
            "it is: give the source model's answers to the sample (expected=) for the parity gate",
            code="expected_missing",
        )
    else:
        reference = {}
    if task in CLASSIFIER_TASKS:
        probability_output = io.get("probability_output", probability_output)
        if probability_output is None:
            raise TrainingError(
                f"task {task!r} needs a (batch, classes) float output; the graph has {[o.name for o in outputs]}"
            )
        io["probability_output"] = probability_output
        if label_output:
            io.setdefault("label_output", label_output)
        answers: dict[str, np.ndarray] = {}
        if feed is not None:  # the graph's own answers: the reference, or its class order at least
            names = [n for n in (probability_output, label_output) if n]
            answers = dict(zip(names, session.run(names, {inputs[0].name: feed}), strict=True))
        if not reference:
            reference["probabilities"] = answers[probability_output]
            if label_output:
                reference["labels"] = answers[label_output]
        width = int(reference["probabilities"].shape[1])
        if found is None and label_output in answers:
            found = labels_from_answers(onx, answers[probability_output], answers[str(label_output)])
        chosen = found or labels or [str(i) for i in range(width)]
    elif task == "regression":
        value_output = next(
            (o.name for o in outputs if o.type.startswith("tensor(float") or o.type == "tensor(double)"),
            outputs[0].name,
        )
        io.setdefault("value_output", value_output)
        if not reference:
            reference["values"] = session.run([io["value_output"]], {inputs[0].name: feed})[0]
        chosen = []
    else:
        chosen = []
        if not reference:
            answered = session.run(None, feeds or {inputs[0].name: feed})
            reference = {o.name: np.asarray(v) for o, v in zip(outputs, answered, strict=True)}
    return Imported(
        task=task,
        onnx_model=onx,
        labels=chosen,
        io=io,
        features=features,
        instances=instances,
        reference=reference,
        framework={
            "name": "onnx",
            "version": onnx.__version__,
            "converter": "none (an ONNX file as it was given)",
            "producer": f"{onx.producer_name} {onx.producer_version}".strip(),
        },
        class_source="the graph's class labels" if task in CLASSIFIER_TASKS and found else None,
    )


# --- checks, metrics, schema -------------------------------------------------------------------


def check_labels(imported: Imported, labels: list[str] | None) -> list[str]:
    """The model's class order wins; a labels file must name the same classes in the same order."""
    if labels is None:
        return imported.labels
    if imported.task not in CLASSIFIER_TASKS:
        raise TrainingError(f"a {imported.task!r} model has no classes: drop the labels file")
    if imported.class_source is not None and labels != imported.labels:
        raise TrainingError(
            f"the labels file lists {labels} but the model's class order ({imported.class_source}) is "
            f"{imported.labels}",
            code="labels_mismatch",
        )
    width = int(np.asarray(imported.reference["probabilities"]).shape[1])
    if len(labels) != width:
        raise TrainingError(
            f"the labels file lists {len(labels)} labels but the model answers {width} probabilities",
            code="labels_mismatch",
        )
    return labels


def _metrics(imported: Imported, labels: list[str], y: Any) -> dict[str, Any]:
    if y is None:
        return {}
    truth = np.asarray(y)
    truth = truth.ravel() if truth.ndim == 2 and truth.shape[1] == 1 else truth  # (rows, targets)
    rows = imported.target_rows or len(imported.instances)
    if len(truth) != rows:
        raise TrainingError(f"the target has {len(truth)} rows, the sample {rows}")
    if imported.task in CLASSIFIER_TASKS:
        probabilities = np.asarray(imported.reference["probabilities"])[:rows]
        predicted = [labels[int(i)] for i in np.argmax(probabilities, axis=1)]
        if "labels" in imported.reference:
            predicted = [str(v) for v in np.asarray(imported.reference["labels"]).ravel()[:rows]]
        names = [str(v) for v in truth]
        if not set(names) <= set(labels) and all(n.isdigit() and int(n) < len(labels) for n in names):
            names = [labels[int(n)] for n in names]  # a target of class indices
        return {
            **classification_metrics(names, predicted, labels, None),
            "source": "the sample and target given",
        }
    if imported.task == "regression":
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        values = np.asarray(imported.reference["values"], dtype=np.float64)[:rows].reshape(len(truth), -1)
        want = truth.astype(np.float64).reshape(len(truth), -1)
        return {
            "mae": round(float(mean_absolute_error(want, values)), 6),
            "rmse": round(float(np.sqrt(mean_squared_error(want, values))), 6),
            "r2": round(float(r2_score(want, values)), 6),
            "rows": len(truth),
            "source": "the sample and target given",
        }
    return {}


def image_request_schema(shape: Sequence[int]) -> dict[str, Any]:
    """The request schema of an image model: nested arrays in [0, 1], or base64 PNG/JPEG objects."""
    array: dict[str, Any] = {"type": "number", "minimum": 0.0, "maximum": 1.0}
    for size in reversed(shape):
        array = {"type": "array", "minItems": size, "maxItems": size, "items": array}
    encoded = {
        "type": "object",
        "required": ["b64"],
        "properties": {
            "b64": {"type": "string", "contentEncoding": "base64", "description": "a PNG or JPEG file"}
        },
    }
    return instances_schema({"oneOf": [array, encoded]})


def request_schema(imported: Imported) -> dict[str, Any]:
    if imported.task in ("text-classification", "sequence-classification"):
        return text_request_schema()
    if imported.task == "text-generation":
        return generation_request_schema(imported.io)
    if imported.task == "image-classification" and imported.io.get("value_range") == [0.0, 1.0]:
        return image_request_schema(np.asarray(imported.instances[0]).shape)
    if imported.columns is not None:
        return table_request_schema(imported.columns)
    if imported.features is not None:
        row = {
            "type": "array",
            "items": {"type": "number"},
            "minItems": len(imported.features),
            "maxItems": len(imported.features),
        }
        named = {
            "type": "object",
            "properties": {name: {"type": "number"} for name in imported.features},
            "required": list(imported.features),
            "additionalProperties": False,
        }
        return instances_schema({"oneOf": [row, named]})
    return instances_schema({"type": "array"})


def _parity(imported: Imported, manifest: dict[str, Any]) -> Any:
    """The served path (the runtime's own task type, float32 feeds) against the source's answers."""

    def parity(predictor: Predictor) -> ParityReport:
        served = task_for(predictor, manifest)
        if isinstance(served, TextGenerator):
            return _greedy_parity(served, imported.instances, imported.reference)
        if not isinstance(served, Classifier):
            raise TrainingError(f"task {imported.task!r} does not predict: it cannot be imported")
        feeds = served.prepare(list(imported.instances))
        if imported.task in CLASSIFIER_TASKS:
            raw = predictor.run(feeds)[str(manifest["io"]["probability_output"])]
            if raw.ndim == 2 and raw.shape[1] == 1 and len(manifest["labels"]) == 2:
                raw = binary_probabilities(raw)  # one sigmoid column, read as the served task reads it
            labels = [p["label"] for p in served.predict(feeds)]
            reference = np.asarray(imported.reference["probabilities"], dtype=np.float64)
            expected = imported.reference.get("labels")
            if expected is None:
                expected = np.asarray([manifest["labels"][int(i)] for i in np.argmax(reference, axis=1)])
            return compare_classifier(np.array(labels), raw, expected, reference)
        if imported.task == "regression":
            raw = predictor.run(feeds)[str(manifest["io"]["value_output"])]
            return compare_values(raw, imported.reference["values"])
        answers = predictor.run(feeds)
        reports = [compare_values(answers[name], ref) for name, ref in imported.reference.items()]
        return max(reports, key=lambda r: (r.label_disagreements, r.max_abs_diff))

    return parity


def _greedy_parity(served: TextGenerator, prompts: list[str], reference: dict[str, Any]) -> ParityReport:
    """The served generator's greedy continuation of each prompt against the source's and, with
    the source's logits, the step graph's logits fed prompt + the source's continuation."""
    texts: list[str] = reference["text"]
    continued = [
        served.generate(GenerationRequest(prompt, len(text), temperature=0.0))[0].text
        for prompt, text in zip(prompts, texts, strict=True)
    ]
    wanted: list[np.ndarray] = reference.get("logits", [])
    logits = [_step_logits(served, p + t) for p, t in zip(prompts, texts, strict=True)] if wanted else []
    for number, (got, want) in enumerate(zip(logits, wanted, strict=True)):
        if got.shape != want.shape:
            raise TrainingError(
                f"the expected logits of prompt {number} have shape {list(want.shape)}; the graph answers "
                f"{list(got.shape)} (one row per token of prompt + continuation)"
            )
    return compare_generations(continued, texts, logits, wanted)


def _step_logits(served: TextGenerator, text: str) -> np.ndarray:
    """The step graph's logits after each token of ``text``, fed one token at a time."""
    state = np.zeros((1, served.state_size), dtype=np.float32)
    steps = []
    for token in served.encode(text, "expected text"):
        answer, state = served.step(np.asarray([token]), state)
        steps.append(answer[0])
    return np.stack(steps)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_model(
    model: Any,
    *,
    name: str,
    out: Path | str,
    X: Any,
    y: Any = None,
    labels: Sequence[str] | None = None,
    task: str | None = None,
    quiet: bool = False,
    input_name: str = "input",
    metrics: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    framework: dict[str, Any] | None = None,
    rewrite: Callable[[onnx.ModelProto], dict[str, int]] | None = None,
    progress: Progress | None = None,
    quantize: str | None = None,
    io: Mapping[str, Any] | None = None,
    artifacts: Mapping[str, bytes] | None = None,
    expected: Any = None,
) -> dict[str, Any]:
    """Export ``model`` (an object or a file path) to ONNX, check parity on ``X``, write ``out``.

    The built-in trainers come this way too, with what they know besides the model: ``metrics``
    they computed (instead of those of ``y``), the ``provenance`` of their data, ``framework``
    details, a graph ``rewrite`` (returning what it rewrote, recorded in the framework) and the
    name of a Keras model's input (``input_name``). Returns the written manifest. Raises
    ``TrainingError`` (``ParityError`` for the gate) with a one-line reason for anything it refuses.

    A graph exported by the caller (ONNX, with ``task``) comes with what the importer cannot ask
    it: ``expected``, the source model's answers to ``X`` (see ``_expected``), which the gate
    compares with the served path (the runtime's task type on the written graph and artifacts);
    ``io`` entries of the manifest over those read from the graph (the artifact a task reads, a
    generator's inputs and limits); ``artifacts``, files of the version next to ``model.onnx``.

    ``quantize`` (``int8``) writes the quantised graph instead, if the task has a quantisation
    gate: a classifier's may flip no label of the sample and move no probability more than 0.05.
    """
    check_model_name(name)
    if task is not None and task not in TASKS:
        raise TrainingError(f"unknown task {task!r}: the runtime serves {sorted(TASKS)}", code="unknown_task")
    if X is None or (hasattr(X, "__len__") and len(X) == 0):
        raise TrainingError(
            "a sample is needed (--sample): the parity gate compares ONNX with the model on it"
        )
    progress = progress or Progress(f"import {name}", quiet=quiet)
    source: dict[str, Any] = {"source": "a Python object"}
    if isinstance(model, str | Path):
        path = Path(model)
        model = load_source(path)
        source = {"source": path.name, "source_sha256": _sha256(path)}
    kind = _kind(model)
    if kind != "onnx" and (expected is not None or io is not None):
        raise TrainingError(
            "expected= and io= describe a graph the caller exported: give it as ONNX (a "
            f"{_KIND_NAMES[kind]} model is exported, and answers its sample, here)"
        )
    artifacts = dict(artifacts or {})
    clashing = sorted(n for n in artifacts if n in (MODEL_FILE, MANIFEST_NAME) or Path(n).name != n)
    if clashing:
        raise TrainingError(
            f"artifact {clashing[0]!r} must be a plain file name, not {MODEL_FILE} or {MANIFEST_NAME}"
        )
    progress(
        "reading the ONNX graph" if kind == "onnx" else f"exporting the {_KIND_NAMES[kind]} model to ONNX"
    )
    if kind == "sklearn":
        imported = _sklearn(model, X, task)
    elif kind == "keras":
        imported = _keras(model, X, task, input_name)
    else:
        imported = _onnx(model, X, task, list(labels) if labels is not None else None, io, expected)
    chosen = check_labels(imported, list(labels) if labels is not None else None)
    if imported.task in CLASSIFIER_TASKS:
        width = int(np.asarray(imported.reference["probabilities"]).shape[1])
        if len(chosen) != width:
            raise TrainingError(f"{len(chosen)} labels for {width} probabilities", code="labels_mismatch")
    progress(
        f"task {imported.task}, {len(imported.instances)} sample rows"
        + (f", features {imported.features}" if imported.features else "")
    )
    manifest = {"task": imported.task, "io": imported.io, "labels": chosen, "features": imported.features}
    if imported.columns is not None:
        manifest["signature"] = {"features": imported.columns}
    onx = imported.onnx_model
    described = {**imported.framework, **(framework or {})}
    if rewrite is not None:
        rewrites = rewrite(onx)
        described["graph_rewrites"] = rewrites
        progress(f"graph rewrites for speed: {rewrites}")
    candidate = Candidate(
        name=name,
        task=imported.task,
        onnx_bytes=onx.SerializeToString(),
        labels=chosen,
        io=imported.io,
        metrics=metrics if metrics is not None else _metrics(imported, chosen, y),
        framework=described,
        provenance={
            **source,
            "imported": True,
            "sample_rows": len(imported.instances),
            "target": y is not None or metrics is not None,
            "parity_inputs": (
                "the sample rows; ONNX through the served path (float32 feeds)"
                if expected is None
                else "the sample rows and the source model's answers to them; ONNX through the served path"
            ),
            **(provenance or {}),
        },
        request_schema=request_schema(imported),
        opsets={entry.domain or "ai.onnx": entry.version for entry in onx.opset_import},
        artifacts=artifacts,
        features=imported.features,
        columns=imported.columns,
        sample=imported.instances,
    )
    parity = _parity(imported, manifest)
    gate = None
    if imported.task in CLASSIFIER_TASKS:

        def gate(predictor: Predictor) -> ParityReport:
            return replace(parity(predictor), tolerance=INT8_PROBABILITY_TOLERANCE)

    return write_version(candidate, Path(out), parity, progress, quantisation(quantize, gate))
