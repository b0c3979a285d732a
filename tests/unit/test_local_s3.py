"""The local S3 (moto, started by ``ops.local``) answers ranged GETs as S3 does, reading the range only."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from ops import moto_ranges
from ops.local import moto_server

SIZE = 24 * 1024 * 1024 + 13  # three 8 MiB parts and a few bytes


def _client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def body() -> bytes:
    return os.urandom(SIZE)


def _ranges_answer_like_s3(s3: Any, bucket: str, body: bytes, target: Path) -> None:
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="model.onnx.data", Body=body)

    def get(spec: str) -> dict[str, Any]:
        answer: dict[str, Any] = s3.get_object(Bucket=bucket, Key="model.onnx.data", Range=spec)
        answer["bytes"] = answer["Body"].read()
        return answer

    middle = get("bytes=5-1000004")
    assert middle["bytes"] == body[5:1000005]
    assert middle["ContentRange"] == f"bytes 5-1000004/{SIZE}"
    assert middle["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert get(f"bytes={SIZE - 3}-")["bytes"] == body[-3:]
    assert get("bytes=-7")["bytes"] == body[-7:]
    assert get(f"bytes=0-{SIZE * 2}")["bytes"] == body  # an end past the object: up to its end
    # two ranges at once: moto answers with the whole object (S3 would send multipart)
    assert get("bytes=0-1,4-5")["bytes"] == body
    with pytest.raises(ClientError) as refused:
        get(f"bytes={SIZE}-")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    whole = s3.get_object(Bucket=bucket, Key="model.onnx.data")
    assert whole["Body"].read() == body and whole["ContentLength"] == SIZE
    # the layer's ranged download (8 MiB parts on 8 threads) gets the same bytes
    from maas.core.download import ranged_download

    downloaded = ranged_download(s3, bucket, "model.onnx.data", target)
    assert downloaded.parts == 4 and downloaded.size == SIZE
    assert downloaded.sha256 == hashlib.sha256(body).hexdigest()
    assert target.read_bytes() == body


def test_the_server_process_answers_ranged_gets_like_s3(
    moto_endpoint: str, body: bytes, tmp_path: Path
) -> None:
    _ranges_answer_like_s3(_client(moto_endpoint), "ranges-in-a-process", body, tmp_path / "out")


def test_the_in_process_server_reads_only_the_range_it_sends(body: bytes, tmp_path: Path) -> None:
    from moto.s3.models import s3_backends

    with moto_server() as endpoint:
        s3 = _client(endpoint)
        _ranges_answer_like_s3(s3, "ranges-in-process", body, tmp_path / "out")
        key = s3_backends["123456789012"]["aws"].get_object("ranges-in-process", "model.onnx.data")
        buffer = key._value_buffer
        read: list[int] = []
        original = buffer.read

        def counted(size: int = -1) -> bytes:
            data: bytes = original(size)
            read.append(len(data))
            return data

        buffer.read = counted
        try:
            answer = s3.get_object(Bucket="ranges-in-process", Key="model.onnx.data", Range="bytes=100-199")
            assert answer["Body"].read() == body[100:200]
        finally:
            del buffer.read
    # moto 5.2.5 unpatched read all SIZE bytes (and copied them) to send these 100
    assert sum(read) == 100


def test_installing_twice_patches_once() -> None:
    from moto.s3.responses import S3Response

    moto_ranges.install()
    patched = S3Response.get_object
    moto_ranges.install()
    assert S3Response.get_object is patched
