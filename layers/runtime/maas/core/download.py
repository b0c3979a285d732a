"""Large model files from S3 to /tmp: parallel ranged GETs, hashed while they stream.

A 90 MB model in one GET is bound by one connection's throughput; ``s3transfer`` (boto3's
transfer manager, in the Lambda runtime already) splits it into ``PART_BYTES`` ranges fetched by
``CONCURRENCY`` threads. The destination is handed to it as a write-only, non-seekable stream:
``s3transfer`` then writes the parts in order, holding back only the few that arrive early (its
IO queue is bounded), so the sha256 is computed on the bytes as they arrive and memory stays
bounded whatever the file's size: no second read of the file to hash it. Every part is fetched
from one object version (the ``VersionId`` read first), so a replacement during the download
cannot mix two objects.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

PART_BYTES = 8 * 1024 * 1024
CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Downloaded:
    """What arrived: the S3 version id, the sha256 and size of the bytes written, and how fast."""

    version_id: str | None
    sha256: str
    size: int
    seconds: float
    parts: int

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / max(self.seconds, 1e-9)


class HashingSink:
    """A write-only stream that hashes what it writes; not seekable, so parts arrive in order."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def seekable(self) -> bool:
        return False


def streamed_download(response: dict[str, Any], destination: Path) -> Downloaded:
    """A GET's body (``get_object``'s answer, the reader's or the client's) to ``destination``,
    hashed as it streams: the path of a file small enough for one request."""
    started = time.perf_counter()
    with destination.open("wb") as handle:
        sink = HashingSink(handle)
        for chunk in response["Body"].iter_chunks(1 << 20):
            sink.write(chunk)
    elapsed = time.perf_counter() - started
    return Downloaded(response.get("VersionId"), sink.digest.hexdigest(), sink.size, elapsed, 1)


def ranged_download(
    s3: Any,
    bucket: str,
    key: str,
    destination: Path,
    *,
    part_bytes: int = PART_BYTES,
    concurrency: int = CONCURRENCY,
) -> Downloaded:
    """Download ``s3://bucket/key`` (its current version) to ``destination``, hashing as it goes.

    ``ClientError`` propagates (the registry maps it)."""
    # imported here, not at the top: boto3's transfer manager costs ~34 ms to import, which every
    # cold start paid (11% of spam_nb's) though only a file of PART_BYTES or more needs it
    from boto3.s3.transfer import TransferConfig

    started = time.perf_counter()
    head = s3.head_object(Bucket=bucket, Key=key)
    version_id = head.get("VersionId")
    size = int(head.get("ContentLength", 0))
    config = TransferConfig(
        multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=concurrency
    )
    extra = {"VersionId": version_id} if version_id else {}
    with destination.open("wb") as handle:
        sink = HashingSink(handle)
        s3.download_fileobj(bucket, key, sink, ExtraArgs=extra, Config=config)
    parts = max(1, -(-size // part_bytes)) if size >= part_bytes else 1
    return Downloaded(version_id, sink.digest.hexdigest(), sink.size, time.perf_counter() - started, parts)
