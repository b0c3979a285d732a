"""The way the AWS samples serve a Keras model: Powertools Logger and Metrics, a TensorFlow
SavedModel downloaded from S3 with boto3, TensorFlow in the handler.

The baseline of the Keras cold-start target: ``keras_plain_handler`` (the same without
Powertools) does the loading and encoding. Never deployed.
"""

from __future__ import annotations

import json
from typing import Any

import keras_plain_handler as plain
import numpy as np
import tensorflow as tf
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if plain._model is None:
        plain._load()
        logger.info("model loaded")
    instances = json.loads(event["body"])["instances"]
    if plain._tokenizer is not None:
        features = plain._encode(instances)
    else:
        features = np.asarray(instances, dtype=np.float32)[..., None]
    outputs = np.asarray(plain._model.serve(tf.constant(features)))
    metrics.add_metric(name="Predictions", unit=MetricUnit.Count, value=len(instances))
    return {"statusCode": 200, "body": json.dumps({"predictions": outputs.tolist()})}
