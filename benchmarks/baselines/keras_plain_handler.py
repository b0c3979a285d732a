"""A TensorFlow SavedModel handler without Powertools: the model from S3, TF in the handler.

The second baseline of the Keras cold-start benchmark (``keras_handler`` is the samples' way, with
Powertools Logger and Metrics); never deployed. The SavedModel is
uploaded as one zip (``BASELINE_KEY``); a text model also downloads its tokeniser
(``BASELINE_TOKENIZER_KEY``) and encodes here, as such handlers do.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from typing import Any

import boto3
import numpy as np
import tensorflow as tf

_model: Any = None
_tokenizer: dict[str, Any] | None = None


def _load() -> None:
    global _model, _tokenizer
    cache = os.environ["MODEL_CACHE_DIR"]
    s3 = boto3.client("s3")
    archive = os.path.join(cache, "saved_model.zip")
    s3.download_file(os.environ["MODEL_BUCKET"], os.environ["BASELINE_KEY"], archive)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(os.path.join(cache, "saved_model"))
    _model = tf.saved_model.load(os.path.join(cache, "saved_model"))
    tokenizer_key = os.environ.get("BASELINE_TOKENIZER_KEY")
    if tokenizer_key:
        path = os.path.join(cache, "tokenizer.json")
        s3.download_file(os.environ["MODEL_BUCKET"], tokenizer_key, path)
        with open(path, encoding="utf-8") as handle:
            _tokenizer = json.load(handle)


def _encode(texts: list[str]) -> np.ndarray:
    assert _tokenizer is not None
    index = {word: i for i, word in enumerate(_tokenizer["vocabulary"])}
    length = int(_tokenizer["sequence_length"])
    batch = np.zeros((len(texts), length), dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [index.get(w, 1) for w in re.findall(_tokenizer["pattern"], text.lower())[:length]]
        if ids:
            batch[row, -len(ids) :] = ids
    return batch


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if _model is None:
        _load()
    instances = json.loads(event["body"])["instances"]
    if _tokenizer is not None:
        features = _encode(instances)
    else:
        features = np.asarray(instances, dtype=np.float32)[..., None]
    outputs = np.asarray(_model.serve(tf.constant(features)))
    return {"statusCode": 200, "body": json.dumps({"predictions": outputs.tolist()})}
