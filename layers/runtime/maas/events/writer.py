"""Write one S3 object from many small pieces without holding it all: multipart past one part.

Memory stays at one part (8 MiB by default) per open object whatever the object's size. A small
object costs a single ``PutObject``; an abandoned one aborts its multipart upload, and the data
bucket's lifecycle rule cleans up after a crash that could not.
"""

from __future__ import annotations

from typing import Any

MIN_PART_BYTES = 5 * 1024 * 1024  # S3's minimum for every part but the last
DEFAULT_PART_BYTES = 8 * 1024 * 1024


class ObjectWriter:
    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        content_type: str = "application/x-ndjson",
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.content_type = content_type
        self.part_bytes = max(part_bytes, MIN_PART_BYTES)
        self.size = 0
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) >= self.part_bytes:
            self._flush_part()

    def _flush_part(self) -> None:
        if self._upload_id is None:
            started = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self._upload_id = str(started["UploadId"])
        number = len(self._parts) + 1
        answer = self.s3.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=bytes(self._buffer),
        )
        self._parts.append({"ETag": answer["ETag"], "PartNumber": number})
        self._buffer.clear()

    def close(self) -> None:
        """Finish the object: one PUT if it never outgrew a part, else the last part and complete."""
        if self._upload_id is None:
            self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self._buffer), ContentType=self.content_type
            )
        else:
            if self._buffer:
                self._flush_part()
            self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()

    def abort(self) -> None:
        """Give up: nothing is written at the key, and a started multipart upload is aborted."""
        self._buffer.clear()
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            self._upload_id = None
