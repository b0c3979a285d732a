"""A scikit-learn handler without Powertools: joblib pickle from S3, sklearn in the handler.

The second baseline of the cold-start benchmark (``sklearn_handler`` is the samples' way, with
Powertools): the comparison is then fair both ways. Never deployed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import joblib

_pipeline: Any = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _pipeline
    if _pipeline is None:
        path = os.path.join(os.environ["MODEL_CACHE_DIR"], "model.joblib")
        boto3.client("s3").download_file(os.environ["MODEL_BUCKET"], os.environ["BASELINE_KEY"], path)
        _pipeline = joblib.load(path)
    texts = json.loads(event["body"])["instances"]
    probabilities = _pipeline.predict_proba(texts)
    labels = list(_pipeline.classes_)
    predictions = [
        {"label": labels[int(row.argmax())], "probabilities": dict(zip(labels, map(float, row), strict=True))}
        for row in probabilities
    ]
    return {"statusCode": 200, "body": json.dumps({"predictions": predictions})}
