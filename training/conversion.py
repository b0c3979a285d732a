"""A converter's failure as one line: which estimator, what went wrong, what to do.

skl2onnx and onnxmltools fail with multi-line dumps (a node's attributes, whole arrays) that a
terminal cuts off. The importer says in one line what failed and how to get past it; the
original exception stays chained (``__cause__``), and ``maas import --verbose`` prints it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from maas.core.errors import TrainingError

T = TypeVar("T")
SHOWN = 160


def estimator_name(model: Any) -> str:
    """``Pipeline(ColumnTransformer+LogisticRegression)``, or the estimator's class name."""
    steps = getattr(model, "steps", None)
    if steps:
        return f"{type(model).__name__}({'+'.join(type(step).__name__ for _, step in steps)})"
    return type(model).__name__


def advice(error: BaseException) -> str:
    """What to do about a converter's error, by what it says."""
    text = str(error)
    missing = "MissingShapeCalculator" in type(error).__name__ or "MissingConverter" in type(error).__name__
    if missing or re.search(r"Unable to find a (?:shape calculator|converter)", text):
        named = re.search(r"([A-Za-z_][A-Za-z0-9_]*)'>", text)
        step = named.group(1) if named else "a step of the model"
        return (
            f"skl2onnx has no converter for {step}: refit with steps skl2onnx converts, or export the "
            "graph yourself and import the .onnx file"
        )
    if "feature names should follow pattern" in text:
        return "refit the booster on a DataFrame whose columns are numbers or pandas 'category' columns"
    return (
        "run again with --verbose for the converter's traceback; to get past it, refit with steps "
        "skl2onnx converts, or export the graph yourself and import the .onnx file"
    )


def one_line(error: BaseException) -> str:
    """The first line of an error, whitespace collapsed and cut, without array dumps."""
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    first = re.sub(r"\s+", " ", first).strip()
    first = re.sub(r"array\(\[.*", "…", first)
    return first if len(first) <= SHOWN else first[: SHOWN - 1] + "…"


def converted(model: Any, convert: Callable[[], T]) -> T:
    """``convert()``, or a one-line ``TrainingError`` naming the estimator and what to do."""
    try:
        return convert()
    except TrainingError:
        raise
    except Exception as error:  # any converter failure: said in one line, kept as the cause
        raise TrainingError(
            f"cannot convert {estimator_name(model)} to ONNX: {type(error).__name__}: {one_line(error)}; "
            f"{advice(error)}",
            code="conversion_failed",
        ) from error
