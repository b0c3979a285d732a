"""Model files from S3 to /tmp: parallel ranged GETs, hashed while they arrive.

A 90 MB model in one GET is bound by one connection's throughput, so a file is fetched in
``PART_BYTES`` ranges by ``CONCURRENCY`` threads. The first GET asks for the first range: its
answer says the object's size and S3 version (a file of one part is then complete), and every
other range is fetched from that version, so a replacement during the download cannot mix two
objects. Parts are written (and hashed) in order as they arrive, at most ``CONCURRENCY`` of them
held in memory: the sha256 needs no second read of the file, and memory stays bounded whatever
the file's size. A part whose body breaks off is fetched again (``PART_ATTEMPTS``).

Our own code, not boto3's transfer manager (``s3transfer``), because it runs on the serving
reader (``maas.core.s3_reads``, or an injected client): a cold start that downloads a large
file no longer imports boto3 and s3transfer nor builds an S3 client (about 0.3 s of Gemma's
first token, measured between the end of one file and the start of the next) and needs neither
the HEAD s3transfer sends nor the plain GET (its body dropped) that told the size before.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError

PART_BYTES = 8 * 1024 * 1024
CONCURRENCY = 8
#: tries of one range whose body breaks off (a dropped connection, a read timeout)
PART_ATTEMPTS = 3
#: what a broken body raises: botocore's streaming and length errors, urllib3's, the socket's
_BROKEN_BODY = (BotoCoreError, HTTPError, OSError)


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
    """A write-only file that hashes what it writes (the parts, in order)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)


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


def _get(s3: Any, bucket: str, key: str, first: int, last: int, version_id: str | None) -> dict[str, Any]:
    extra = {"VersionId": version_id} if version_id else {}
    answer: dict[str, Any] = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **extra)
    return answer


def _body(answer: dict[str, Any], first: int, last: int) -> bytes:
    """A ranged answer's bytes, all of them: a short body is a broken one too."""
    body: bytes = answer["Body"].read()
    if len(body) != last - first + 1:
        raise OSError(f"bytes {first}-{last} came back as {len(body)} bytes")
    return body


def _part(s3: Any, bucket: str, key: str, first: int, last: int, version_id: str | None) -> bytes:
    """Bytes ``first..last`` of the object's version, fetched again when the body breaks off
    (``ClientError``, an answer of S3's, is not retried here: the reader retried it already)."""
    for _ in range(PART_ATTEMPTS - 1):
        try:
            return _body(_get(s3, bucket, key, first, last, version_id), first, last)
        except _BROKEN_BODY:
            continue
    return _body(_get(s3, bucket, key, first, last, version_id), first, last)  # the last try raises


def _total_size(answer: dict[str, Any]) -> int | None:
    """The object's size from a ranged answer's ``Content-Range`` (``bytes 0-99/1234``)."""
    content_range = answer.get("ContentRange")
    if not content_range or "/" not in str(content_range):
        return None
    total = str(content_range).rsplit("/", 1)[1]
    return int(total) if total.isdigit() else None


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

    ``s3``: the serving reader or a boto3 client (both take ``Range`` and ``VersionId``).
    ``ClientError`` propagates (the registry maps it)."""
    started = time.perf_counter()
    try:
        first = _get(s3, bucket, key, 0, part_bytes - 1, None)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "InvalidRange":
            raise
        # an empty object has no byte 0: S3 refuses the range (416); a plain GET answers it
        return streamed_download(s3.get_object(Bucket=bucket, Key=key), destination)
    size = _total_size(first)
    if size is None:  # the range was ignored: the answer is the whole object
        return streamed_download(first, destination)
    version_id = first.get("VersionId")
    head_end = min(part_bytes, size) - 1

    def fetch(start: int, end: int) -> bytes:  # a range of the first answer's version
        return _part(s3, bucket, key, start, end, version_id)

    def head() -> bytes:  # the first answer's body, fetched again if it broke off
        try:
            return _body(first, 0, head_end)
        except _BROKEN_BODY:
            return fetch(0, head_end)

    ranges = [(start, min(start + part_bytes, size) - 1) for start in range(part_bytes, size, part_bytes)]
    with destination.open("wb") as handle:
        sink = HashingSink(handle)
        if ranges:
            _write_parts(sink, head, fetch, ranges, concurrency)
        else:  # a file of one part (most files) needs no threads
            sink.write(head())
    return Downloaded(
        version_id, sink.digest.hexdigest(), sink.size, time.perf_counter() - started, 1 + len(ranges)
    )


def _write_parts(
    sink: HashingSink,
    head: Callable[[], bytes],
    fetch: Callable[[int, int], bytes],
    ranges: list[tuple[int, int]],
    concurrency: int,
) -> None:
    """``head`` then ``ranges``, written in order; the ranges are fetched on ``concurrency``
    threads (started before ``head`` is read), at most ``concurrency`` of them in memory."""
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="maas-download")
    try:
        pending: deque[Future[bytes]] = deque()
        waiting = iter(ranges)

        def fetch_next() -> None:
            span = next(waiting, None)
            if span is not None:
                pending.append(pool.submit(fetch, *span))

        for _ in range(concurrency):
            fetch_next()
        sink.write(head())
        while pending:
            body = pending.popleft().result()
            fetch_next()
            sink.write(body)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
