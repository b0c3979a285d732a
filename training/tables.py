"""Mixed-type tables: DataFrames of string and number columns with gaps, as people model them.

A ``Pipeline`` of a ``ColumnTransformer`` (``OneHotEncoder``/``OrdinalEncoder`` on strings,
``SimpleImputer`` + ``StandardScaler`` on numbers) and an estimator converts through skl2onnx
with one graph input per column, of the column's own type (strings as string tensors). A bare
estimator on a numeric DataFrame with NaN (``HistGradientBoosting*``) keeps one float matrix
input, NaN included. LightGBM and XGBoost fitted on pandas ``category`` columns are converted on
the category codes, and the graph is given a ``LabelEncoder`` per category column in front, so
it takes the strings too (an unseen string becomes the code pandas gives it: missing).

What each column may hold is asked of the source model itself (``probe``): a number column may
be missing if the model answers NaN there; a string column may be missing if it answers ``None``
as it answers the empty string (what the runtime feeds for a null); unseen strings are refused
by the runtime (a 400 naming the feature) when the model refuses them (``handle_unknown="error"``).
The parity sample gets a row with each allowed gap and each allowed unseen category.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from maas.core.errors import TrainingError
from training.text import instances_schema

NUMBER, STRING = "number", "string"
#: a category no model was fitted on: the probe's and the parity sample's unseen value
UNSEEN = "maas-unseen-category"
#: a column with more categories than this is described without its list in the manifest
MAX_LISTED_CATEGORIES = 1000


@dataclass(frozen=True, slots=True)
class Column:
    """One feature of a table: its type, whether it may be missing, and the categories it takes
    when the model refuses others (``None``: any string)."""

    name: str
    kind: str
    missing: bool
    categories: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "missing": self.missing}
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out


def is_table(model: Any, X: Any) -> bool:
    """Whether the sample is a DataFrame this module converts: string or category columns, gaps,
    or a pipeline that picks its columns by name (a ``ColumnTransformer``)."""
    if not hasattr(X, "columns") or not hasattr(X, "dtypes"):
        return False
    first = model.steps[0][1] if hasattr(model, "steps") else model
    if type(first).__name__ == "ColumnTransformer":
        return True
    if any(dtype.kind not in "biuf" for dtype in X.dtypes):
        return True
    return bool(X.isna().to_numpy().any())


def _kind(dtype: Any) -> str:
    return NUMBER if getattr(dtype, "kind", "O") in "biuf" else STRING


def _category_columns(X: Any) -> list[str]:
    return [str(c) for c in X.columns if str(X[c].dtype) == "category"]


def _booster(model: Any) -> Any:
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return final if type(final).__module__.split(".")[0] in ("lightgbm", "xgboost") else None


def categories_of(model: Any, X: Any) -> dict[str, list[str]]:
    """The categories of each pandas ``category`` column a boosted model was fitted on, in code
    order: LightGBM's own record of them, else the sample's dtype (the fitted frame's, sliced)."""
    columns = _category_columns(X)
    booster = _booster(model)
    recorded = getattr(getattr(booster, "booster_", None), "pandas_categorical", None) or []
    if recorded and not columns:  # a CSV sample: the string columns, in order, were the categories
        columns = [str(c) for c in X.columns if X[c].dtype.kind not in "biuf"]
    if recorded and len(recorded) == len(columns):
        return {c: [str(v) for v in values] for c, values in zip(columns, recorded, strict=True)}
    return {c: [str(v) for v in X[c].cat.categories] for c in columns}


def source_frame(X: Any, model: Any, categories: dict[str, list[str]]) -> Any:
    """The rows as the source model takes them: category columns back to their fitted dtype."""
    import pandas as pd

    frame = X.copy()
    for name, values in categories.items():
        column = frame[name].astype(object)
        # an unseen value is missing, as pandas codes it (without its deprecation warning)
        frame[name] = pd.Categorical(column.where(column.isin(values)), categories=values)
    return frame


def check_sample(model: Any, X: Any, categories: dict[str, list[str]]) -> None:
    """A booster fitted on category columns needs them as categories: a CSV sample has plain text."""
    booster = _booster(model)
    text = [str(c) for c in X.columns if X[c].dtype.kind not in "biuf" and str(c) not in categories]
    if text and getattr(booster, "enable_categorical", False):
        raise TrainingError(
            f"{type(booster).__name__} was fitted on pandas 'category' columns, and the sample's column "
            f"{text[0]!r} is plain text (a CSV cannot carry categories): give the sample as a DataFrame "
            "with the fitted category dtypes (import_model(X=...))"
        )


def _answers(model: Any, frame: Any) -> np.ndarray:
    method = getattr(model, "predict_proba", None) or model.predict
    return np.asarray(method(frame), dtype=np.float64)


def probe(model: Any, X: Any, categories: dict[str, list[str]]) -> list[Column]:
    """Each column's type, missingness and accepted categories, asked of the source model."""
    head = X.head(min(len(X), 8)).copy()
    prepared = source_frame(head, model, categories)

    def answers(name: str, value: Any) -> np.ndarray | None:
        trial = head.copy()
        trial[name] = trial[name].astype(object)
        trial[name] = [value] * len(trial)
        try:
            return _answers(model, source_frame(trial, model, categories))
        except (ValueError, TypeError, KeyError):
            return None

    _answers(model, prepared)  # the sample itself must be answered
    refused = _encoder_categories(model)
    columns = []
    for name in [str(c) for c in X.columns]:
        kind = _kind(X[name].dtype) if name not in categories else STRING
        if kind == NUMBER:
            columns.append(Column(name, NUMBER, answers(name, np.nan) is not None))
            continue
        missing, empty = answers(name, None), answers(name, "")
        nullable = missing is not None and empty is not None and np.allclose(missing, empty, atol=1e-9)
        known: tuple[str, ...] | None = None
        if answers(name, UNSEEN) is None:
            known = tuple(categories.get(name) or refused.get(name) or ())
            if not known:
                raise TrainingError(
                    f"column {name!r}: the model refuses categories it was not fitted on, and its "
                    "encoder's categories cannot be found to tell a client which it takes"
                )
        columns.append(Column(name, STRING, nullable, known))
    return columns


def _encoder_categories(model: Any) -> dict[str, list[str]]:
    """The fitted categories of each string column an encoder of a ``ColumnTransformer`` reads."""
    found: dict[str, list[str]] = {}
    steps = [s for _, s in model.steps] if hasattr(model, "steps") else [model]
    for step in steps:
        for _, transformer, columns in getattr(step, "transformers_", []):
            encoder = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
            fitted = getattr(encoder, "categories_", None)
            if fitted is None or not isinstance(columns, list | tuple):
                continue
            for column, values in zip(columns, fitted, strict=False):
                found[str(column)] = [str(v) for v in values if v is not None and v == v]
    return found


def parity_rows(X: Any, columns: list[Column]) -> Any:
    """The sample, and a row more for each gap and each unseen category the model takes: the
    parity gate then compares what a client may send, not only what the training data held."""
    import pandas as pd

    extra = []
    for index, column in enumerate(columns):
        row = X.iloc[[index % len(X)]].copy()
        row[column.name] = row[column.name].astype(object)
        if column.missing:
            gap = row.copy()
            gap[column.name] = [None if column.kind == STRING else np.nan]
            extra.append(gap)
        if column.kind == STRING and column.categories is None:
            row[column.name] = [UNSEEN]
            extra.append(row)
    if not extra:
        return X
    frame = pd.concat([X.astype(object), *[e.astype(object) for e in extra]], ignore_index=True)
    for column in columns:
        if column.kind == NUMBER:
            frame[column.name] = pd.to_numeric(frame[column.name], errors="coerce").astype(np.float64)
    return frame


def instances(frame: Any, columns: list[Column]) -> list[dict[str, Any]]:
    """The rows as a client sends them: objects keyed by feature, ``None`` for a gap."""
    rows = []
    for record in frame.to_dict(orient="records"):
        row: dict[str, Any] = {}
        for column in columns:
            value = record[column.name]
            if value is None or (isinstance(value, float) and value != value):
                row[column.name] = None
            elif column.kind == NUMBER:
                row[column.name] = float(value)
            else:
                row[column.name] = str(value)
        rows.append(row)
    return rows


def served_frame(frame: Any, columns: list[Column]) -> Any:
    """The rows as the source model answers them: gaps as NaN (numbers) or None (strings)."""
    out = frame.copy()
    for column in columns:
        if column.kind == STRING:
            out[column.name] = [None if v is None or v != v else str(v) for v in out[column.name]]
    return out


@dataclass(frozen=True)
class Table:
    """A table's converted graph with what the manifest and the parity gate need."""

    onnx_model: onnx.ModelProto
    io: dict[str, Any]
    features: list[str]
    columns: list[dict[str, Any]]
    #: the sample, then a row per allowed gap and unseen category, as a client sends them
    instances: list[dict[str, Any]]
    #: the source model's answers to those rows
    reference: dict[str, Any]
    #: the user's sample rows (a target covers these only)
    target_rows: int


def convert(
    model: Any,
    X: Any,
    classifier: bool,
    options: dict[Any, Any],
    targets: dict[str, int],
    convertible: Callable[[Any], Any] = lambda model: model,
) -> Table:
    """A DataFrame model to ONNX: the columns asked of the model, the parity rows and the source
    model's answers to them. ``convertible`` gives the copy the converter reads (an XGBoost
    booster without its column names)."""
    from skl2onnx import convert_sklearn

    from training.conversion import converted

    fitted = getattr(model, "feature_names_in_", None)
    names = [str(n) for n in fitted] if fitted is not None else [str(c) for c in X.columns]
    missing = [n for n in names if n not in [str(c) for c in X.columns]]
    if missing:
        raise TrainingError(f"the sample has no column {missing[0]!r}; the model's features are {names}")
    X = X[names]
    categories = categories_of(model, X)
    check_sample(model, X, categories)
    columns = probe(model, X, categories)
    frame = served_frame(parity_rows(X, columns), columns)
    source = source_frame(frame, model, categories)
    onx = converted(
        model,
        lambda: _graph(convertible(model), columns, categories, convert_sklearn, options, targets),
    )
    reference = (
        {"probabilities": model.predict_proba(source), "labels": model.predict(source)}
        if classifier
        else {"values": np.asarray(model.predict(source))}
    )
    return Table(
        onnx_model=onx,
        io={"input": onx.graph.input[0].name} if len(onx.graph.input) == 1 else {},
        features=names,
        columns=[c.to_dict() for c in columns],
        instances=instances(frame, columns),
        reference=reference,
        target_rows=len(X),
    )


def _graph(
    model: Any,
    columns: list[Column],
    categories: dict[str, list[str]],
    convert_sklearn: Callable[..., onnx.ModelProto],
    options: dict[Any, Any],
    targets: dict[str, int],
) -> onnx.ModelProto:
    """The graph: per-column inputs for a column-picking pipeline or category codes, else one
    float matrix named ``input`` (NaN allowed where the column may be missing)."""
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    first = model.steps[0][1] if hasattr(model, "steps") else model
    if type(first).__name__ == "ColumnTransformer":
        types = [
            (c.name, StringTensorType([None, 1]) if c.kind == STRING else FloatTensorType([None, 1]))
            for c in columns
        ]
        return convert_sklearn(model, initial_types=types, options=options, target_opset=targets)
    strings = [c.name for c in columns if c.kind == STRING]
    unknown = [name for name in strings if name not in categories]
    if unknown:
        raise TrainingError(
            f"column {unknown[0]!r} holds strings, which {type(model).__name__} cannot take: put "
            "a ColumnTransformer with a OneHotEncoder or OrdinalEncoder for it in a Pipeline in front "
            "of the estimator (or give LightGBM/XGBoost a pandas 'category' column) and refit"
        )
    graph = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, len(columns)]))],
        options=options,
        target_opset=targets,
    )
    return with_column_inputs(graph, columns, categories) if categories else graph


def with_column_inputs(
    graph: onnx.ModelProto, columns: list[Column], categories: dict[str, list[str]]
) -> onnx.ModelProto:
    """A graph on a float matrix of category codes, given one input per column: a string column
    goes through a ``LabelEncoder`` (its category to its code, anything else NaN, as pandas codes
    an unseen value) and the columns are concatenated into the matrix the trees read."""
    model = copy.deepcopy(graph)
    matrix = model.graph.input[0].name
    del model.graph.input[:]
    nodes, parts = [], []
    for column in columns:
        if column.kind == STRING:
            model.graph.input.append(
                helper.make_tensor_value_info(column.name, TensorProto.STRING, [None, 1])
            )
            code = f"{column.name}__code"
            nodes.append(
                helper.make_node(
                    "LabelEncoder",
                    [column.name],
                    [code],
                    domain="ai.onnx.ml",
                    keys_strings=categories[column.name],
                    values_floats=[float(i) for i in range(len(categories[column.name]))],
                    default_float=float("nan"),
                )
            )
            parts.append(code)
        else:
            model.graph.input.append(helper.make_tensor_value_info(column.name, TensorProto.FLOAT, [None, 1]))
            parts.append(column.name)
    nodes.append(helper.make_node("Concat", parts, [matrix], axis=1))
    existing = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([*nodes, *existing])
    domains = {entry.domain: entry for entry in model.opset_import}
    if "ai.onnx.ml" in domains:
        domains["ai.onnx.ml"].version = max(domains["ai.onnx.ml"].version, 2)
    else:
        model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 2))
    onnx.checker.check_model(model)
    return model


def request_schema(columns: list[dict[str, Any]]) -> dict[str, Any]:
    """A table's instances: objects keyed by feature (or lists in feature order), each value of
    its feature's type, ``null`` where the feature may be missing, a listed category where the
    model refuses others."""

    def value(column: dict[str, Any]) -> dict[str, Any]:
        kind: dict[str, Any] = {"type": [column["type"], "null"] if column["missing"] else column["type"]}
        if column.get("categories") is not None:
            kind["enum"] = [*column["categories"], *([None] if column["missing"] else [])]
        return kind

    names = [str(c["name"]) for c in columns]
    row = {
        "type": "array",
        "prefixItems": [value(c) for c in columns],
        "minItems": len(names),
        "maxItems": len(names),
    }
    named = {
        "type": "object",
        "properties": {str(c["name"]): value(c) for c in columns},
        "required": names,
        "additionalProperties": False,
    }
    return instances_schema({"oneOf": [row, named]})


def patch_tree_converter() -> None:
    """skl2onnx 1.20 passes scikit-learn 1.9's numpy booleans (a HistGradientBoosting node's
    ``missing_go_to_left``) where ONNX takes integers, and fails to build the tree node: cast them."""
    from skl2onnx.common import tree_ensemble

    if getattr(tree_ensemble.add_node, "maas_patched", False):
        return
    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return original(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    add_node.maas_patched = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = add_node
