"""Large files over the serving reader (``maas.core.s3_reads``), against a real moto server: parts
in parallel, pinned to one object version, fetched again when a body breaks off, without boto3."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ResponseStreamingError

from maas.core.download import ranged_download
from maas.core.s3_reads import S3Reader
from ops.local import create_bucket
from tests.e2e.faults import faulty_forwarder

MIB = 1024 * 1024
LAYER = Path(__file__).resolve().parents[2] / "layers" / "runtime"
BUCKET = "light-downloads"


@pytest.fixture(scope="module")
def bucket(moto_endpoint: str) -> str:
    create_bucket(BUCKET)  # versioned, as the registry's is
    return BUCKET


def _put(key: str, body: bytes) -> str:
    answer = boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return str(answer["VersionId"])


def test_a_large_file_arrives_in_ranges_of_one_version_without_boto3(
    bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    content = os.urandom(3 * MIB + MIB // 2)
    version_id = _put("large/model.onnx.data", content)
    # a fresh interpreter, as a cold start is: what it imports is what a Lambda would
    script = f"""
import json, sys
sys.path.insert(0, {str(LAYER)!r})
from pathlib import Path
from maas.core.download import ranged_download
from maas.core.s3_reads import S3Reader
reader = S3Reader({moto_endpoint!r})
asked = []
get = reader.get_object
def recording(**kwargs):
    asked.append({{k: kwargs.get(k) for k in ("Range", "VersionId")}})
    return get(**kwargs)
reader.get_object = recording
done = ranged_download(reader, {bucket!r}, "large/model.onnx.data", Path({str(tmp_path / "out")!r}), part_bytes={MIB})
loaded = sorted({{m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('boto3', 's3transfer')}})
print(json.dumps({{"sha256": done.sha256, "size": done.size, "parts": done.parts,
                  "version_id": done.version_id, "asked": asked, "loaded": loaded}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == []  # neither boto3 nor s3transfer
    assert answer["sha256"] == hashlib.sha256(content).hexdigest() and answer["size"] == len(content)
    assert (tmp_path / "out").read_bytes() == content
    assert answer["parts"] == 4 and answer["version_id"] == version_id
    first, *rest = answer["asked"]
    assert first == {"Range": f"bytes=0-{MIB - 1}", "VersionId": None}
    assert sorted(a["Range"] for a in rest) == [
        f"bytes={MIB}-{2 * MIB - 1}",
        f"bytes={2 * MIB}-{3 * MIB - 1}",
        f"bytes={3 * MIB}-{len(content) - 1}",
    ]
    assert {a["VersionId"] for a in rest} == {version_id}


def test_an_object_replaced_during_the_download_is_read_from_the_version_it_started_with(
    bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    original = os.urandom(2 * MIB + 5)
    _put("replaced/weights.bin", original)
    reader = S3Reader(moto_endpoint)
    get = reader.get_object
    replaced: list[str] = []

    def replacing_after_the_first_answer(**kwargs: Any) -> dict[str, Any]:
        answer = get(**kwargs)
        if not replaced:
            replaced.append(_put("replaced/weights.bin", os.urandom(2 * MIB + 5)))
        return answer

    reader.get_object = replacing_after_the_first_answer  # type: ignore[method-assign]
    done = ranged_download(reader, bucket, "replaced/weights.bin", tmp_path / "out", part_bytes=MIB)
    assert replaced and (tmp_path / "out").read_bytes() == original
    assert done.sha256 == hashlib.sha256(original).hexdigest() and done.parts == 3


@pytest.mark.parametrize("client", ["reader", "boto3"])
def test_an_empty_object_downloads_though_it_has_no_first_byte(
    bucket: str, moto_endpoint: str, tmp_path: Path, client: str
) -> None:
    _put("empty/labels.txt", b"")
    s3 = S3Reader(moto_endpoint) if client == "reader" else boto3.client("s3")
    done = ranged_download(s3, bucket, "empty/labels.txt", tmp_path / "out", part_bytes=MIB)
    assert done.size == 0 and (tmp_path / "out").read_bytes() == b""
    assert done.sha256 == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("cut", [1, 2])
def test_a_part_whose_body_breaks_off_is_fetched_again(
    bucket: str, moto_endpoint: str, tmp_path: Path, cut: int
) -> None:
    """The connection drops halfway through a ranged answer (the first, or the first two):
    those ranges are asked for again and the file is whole."""
    content = os.urandom(3 * MIB)
    _put("cut/model.onnx.data", content)
    with faulty_forwarder(moto_endpoint) as (endpoint, plan):
        plan.key, plan.fault, plan.limit = "cut/model.onnx.data", "cut", cut
        done = ranged_download(
            S3Reader(endpoint), bucket, "cut/model.onnx.data", tmp_path / "out", part_bytes=MIB
        )
    assert plan.hits == cut
    assert (tmp_path / "out").read_bytes() == content and done.sha256 == hashlib.sha256(content).hexdigest()


def test_a_part_that_keeps_breaking_off_fails_the_download(
    bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    _put("always-cut/model.onnx.data", os.urandom(2 * MIB))
    with faulty_forwarder(moto_endpoint) as (endpoint, plan), pytest.raises(ResponseStreamingError):
        plan.key, plan.fault = "always-cut/model.onnx.data", "cut"
        ranged_download(
            S3Reader(endpoint), bucket, "always-cut/model.onnx.data", tmp_path / "out", part_bytes=MIB
        )
    assert plan.hits >= 3  # tried again before giving up
