"""The registry's serving reads (GET an object or a range of it, its tags, HEAD) as SigV4-signed
requests over botocore's own signer and connection pool, without an SDK client.

Building an S3 client loads the service model and the endpoint rules (about 0.1 s of a cold
start) and ``import boto3`` brings s3transfer; a model function needs three read operations.
botocore stays the library: its credential providers, ``S3SigV4Auth``, ``URLLib3Session``,
``StreamingBody`` (which checks the length read) and its exceptions, so a failure is the
``ClientError`` / ``BotoCoreError`` the registry already handles, with the same error codes.

Endpoints: ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (a moto server, path-style), else the
region's standard S3 endpoint. A FIPS or dual-stack configuration is left to the SDK client
(``reader_or_client`` returns one).
"""

from __future__ import annotations

import os
import random
import time
import xml.etree.ElementTree as ElementTree
from typing import Any
from urllib.parse import quote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, EnvProvider
from botocore.exceptions import ClientError, HTTPClientError
from botocore.httpsession import URLLib3Session
from botocore.response import StreamingBody
from botocore.utils import get_environ_proxies

_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_RETRYABLE_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"})
_SDK_ONLY = ("AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT")


def _credentials() -> Credentials | None:
    """Lambda's (the environment's), else botocore's whole provider chain (profiles, IMDS...)."""
    found = EnvProvider().load()
    if found is None:
        import botocore.session

        found = botocore.session.get_session().get_credentials()
    return found


def _region() -> str:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        import botocore.session

        region = botocore.session.get_session().get_config_variable("region")
    return region or "us-east-1"


class S3Reader:
    """GET object / GET object tagging / HEAD object, with the keyword arguments and the answer
    keys of boto3's S3 client (``Body``, ``ETag``, ``VersionId``, ``TagSet``), so the registry
    takes either. Thread-safe: one pool, connections reused while warm."""

    def __init__(self, endpoint_url: str | None = None, region: str | None = None) -> None:
        self.region = region or _region()
        self.endpoint_url = (endpoint_url or "").rstrip("/") or None
        self.max_attempts = max(1, int(os.environ.get("AWS_MAX_ATTEMPTS") or 3))
        self._credentials = _credentials()
        url = self.endpoint_url or f"https://s3.{self.region}.amazonaws.com"
        verify: Any = os.environ.get("AWS_CA_BUNDLE") or True  # a CA bundle's path, as botocore takes
        self._http = URLLib3Session(
            verify=verify,
            proxies=get_environ_proxies(url),
            timeout=60,
            max_pool_connections=10,
        )

    def _url(self, bucket: str, key: str) -> str:
        path = quote(key, safe="/~")
        if self.endpoint_url is not None:
            return f"{self.endpoint_url}/{bucket}/{path}"
        if "." in bucket or bucket.lower() != bucket:  # not a DNS label of its own: path style
            return f"https://s3.{self.region}.amazonaws.com/{bucket}/{path}"
        return f"https://{bucket}.s3.{self.region}.amazonaws.com/{path}"

    def _send(
        self,
        method: str,
        bucket: str,
        key: str,
        operation: str,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One signed request, retried (with jittered backoff) on 5xx, throttling and dropped
        connections; an error answer is raised as botocore's ``ClientError``."""
        for attempt in range(1, self.max_attempts + 1):
            request = AWSRequest(method=method, url=self._url(bucket, key), params=params, headers=headers)
            if self._credentials is not None:
                S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
            prepared = request.prepare()
            prepared.stream_output = True
            try:
                response = self._http.send(prepared)
            except HTTPClientError:
                if attempt == self.max_attempts:
                    raise
            else:
                if response.status_code < 300:
                    return response
                body = response.content if method != "HEAD" else b""
                error = _client_error(response.status_code, response.headers, body, operation)
                code = error.response["Error"]["Code"]
                retryable = response.status_code in _RETRYABLE_STATUS or code in _RETRYABLE_CODES
                if not retryable or attempt == self.max_attempts:
                    raise error
            time.sleep(min(1.0, 0.05 * 2**attempt) * random.random())
        raise AssertionError("unreachable")

    def get_object(
        self, *, Bucket: str, Key: str, Range: str | None = None, VersionId: str | None = None
    ) -> dict[str, Any]:
        """The object (or the ``Range`` of it, from version ``VersionId``), its body streamed."""
        params = {"versionId": VersionId} if VersionId else {}
        response = self._send("GET", Bucket, Key, "GetObject", params, {"Range": Range} if Range else None)
        headers = response.headers
        length = headers.get("content-length")
        size: Any = int(length) if length is not None else None  # None: no length to check
        return {
            "Body": StreamingBody(response.raw, size),
            "ContentLength": size,
            "ContentRange": headers.get("content-range"),
            "ETag": headers.get("etag"),
            "VersionId": headers.get("x-amz-version-id"),
        }

    def get_object_tagging(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        response = self._send("GET", Bucket, Key, "GetObjectTagging", {"tagging": ""})
        root = ElementTree.fromstring(response.content)
        tags = [
            {"Key": _text(tag, "Key"), "Value": _text(tag, "Value")}
            for tag in root.iter()
            if _local(tag.tag) == "Tag"
        ]
        return {"TagSet": tags, "VersionId": response.headers.get("x-amz-version-id")}

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        response = self._send("HEAD", Bucket, Key, "HeadObject", {})
        return {"ETag": response.headers.get("etag"), "VersionId": response.headers.get("x-amz-version-id")}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ElementTree.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return ""


def _client_error(status: int, headers: Any, body: bytes, operation: str) -> ClientError:
    """S3's XML error as boto3 raises it: ``Error.Code`` (``NoSuchKey``, ``AccessDenied``...; the
    status as text when the answer has no body, as for HEAD), its message and the status."""
    code, message = str(status), ""
    if body:
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            pass
        else:
            code = _text(root, "Code") or code
            message = _text(root, "Message")
    answer: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": dict(headers)},
    }
    return ClientError(answer, operation)


def reader_or_client() -> Any:
    """The reader for the environment's S3, or boto3's client where an option only the SDK
    resolves is set (FIPS, dual-stack endpoints)."""
    if any(os.environ.get(name, "").lower() == "true" for name in _SDK_ONLY):
        import boto3

        return boto3.client("s3")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return S3Reader(endpoint)
