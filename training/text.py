"""What text models share: metrics on the held-out split, the request schemas, tokenised feeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from maas.core.tasks.generation import LIMITS


def classification_metrics(
    truth: Sequence[str], predicted: Sequence[str], labels: list[str], positive: str | None
) -> dict[str, Any]:
    """Accuracy, precision, recall and F1 (of ``positive`` for two labels, macro-averaged otherwise)."""
    average = "binary" if positive is not None and len(labels) == 2 else "macro"
    precision, recall, f1, _ = precision_recall_fscore_support(
        truth,
        predicted,
        labels=labels,
        pos_label=positive if average == "binary" else 1,
        average=average,
        zero_division=0,
    )
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 6),
        "precision": round(float(precision), 6),
        "recall": round(float(recall), 6),
        "f1": round(float(f1), 6),
        "average": average,
        "positive_label": positive if average == "binary" else None,
        "rows": len(truth),
    }


def instances_schema(items: dict[str, Any], max_batch: int = 256) -> dict[str, Any]:
    """JSON Schema of ``POST /models/{m}/predict``: ``{"instances": [item, ...]}``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["instances"],
        "properties": {"instances": {"type": "array", "minItems": 1, "maxItems": max_batch, "items": items}},
    }


def text_request_schema(max_batch: int = 256) -> dict[str, Any]:
    """The request schema of a raw-text model."""
    return instances_schema({"type": "string", "minLength": 1}, max_batch)


def token_feeds(
    tokenizer: Path, max_length: int, texts: Sequence[str], batch: int = 32
) -> list[dict[str, np.ndarray]]:
    """``texts`` tokenised as the layer tokenises them, a transformer graph's feeds per batch (the
    calibration rows of a quantisation)."""
    from maas.core.tasks.subwords import ID_INPUTS, SubwordTokenizer

    encoder = SubwordTokenizer(tokenizer, max_length)
    dtypes = dict.fromkeys(ID_INPUTS, "int64")
    return [
        encoder.encode(list(texts[start : start + batch])).feeds(list(ID_INPUTS), dtypes)
        for start in range(0, len(texts), batch)
    ]


def generation_request_schema(io: Mapping[str, Any]) -> dict[str, Any]:
    """JSON Schema of ``POST /models/{m}/generate``, within the limits the manifest's ``io`` sets."""
    limit = {key: int(io.get(key, default)) for key, default in LIMITS.items()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "maxLength": limit["max_prompt_chars"]},
            "max_new_tokens": {
                "type": "integer",
                "minimum": 1,
                "maximum": limit["max_new_tokens"],
                "default": 100,
            },
            "num_return_sequences": {
                "type": "integer",
                "minimum": 1,
                "maximum": limit["max_return_sequences"],
                "default": 1,
            },
            "temperature": {"type": "number", "minimum": 0, "maximum": 5, "default": 1.0},
            "top_k": {"type": "integer", "minimum": 0, "default": 0},
            "seed": {"type": "integer", "minimum": 0},
        },
    }
