"""The way the AWS samples serve a scikit-learn model: Powertools Logger and Metrics, a joblib
pickle downloaded from S3 with boto3, scikit-learn in the handler.

The baseline of the cold-start target (``sklearn_plain_handler`` is the same without
Powertools). Never deployed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import joblib
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()
s3 = boto3.client("s3")
_pipeline: Any = None


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _pipeline
    if _pipeline is None:
        path = os.path.join(os.environ["MODEL_CACHE_DIR"], "model.joblib")
        s3.download_file(os.environ["MODEL_BUCKET"], os.environ["BASELINE_KEY"], path)
        _pipeline = joblib.load(path)
        logger.info("model loaded")
    texts = json.loads(event["body"])["instances"]
    probabilities = _pipeline.predict_proba(texts)
    labels = list(_pipeline.classes_)
    predictions = [
        {"label": labels[int(row.argmax())], "probabilities": dict(zip(labels, map(float, row), strict=True))}
        for row in probabilities
    ]
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(predictions))
    return {"statusCode": 200, "body": json.dumps({"predictions": predictions})}
