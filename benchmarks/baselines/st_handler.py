"""The baseline: what a user would write without us, sentence-transformers on PyTorch.

Download the model folder (safetensors, tokenizer, configs) from S3 to /tmp, load it with
``SentenceTransformer`` and encode the request's instances. Run by the export environment's
Python 3.11 (PyTorch's CPU wheel), one thread, from the same local S3 as our handler.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import boto3

_model: Any = None


def _load() -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    bucket, prefix = os.environ["MODEL_BUCKET"], os.environ["BASELINE_PREFIX"]
    folder = Path(tempfile.mkdtemp(prefix="st-model-"))
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = folder / item["Key"][len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item["Key"], str(target))
    return SentenceTransformer(str(folder), device="cpu")


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _model
    if _model is None:
        _model = _load()
    instances = json.loads(event["body"])["instances"]
    vectors = _model.encode(instances, normalize_embeddings=True)
    return {"statusCode": 200, "body": json.dumps({"embeddings": vectors.tolist()})}
