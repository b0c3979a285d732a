"""The local S3 answers a ranged GET by reading the range, as S3 does.

moto (5.2.5) answers every GET of an object, a ranged one included, by reading and copying the whole
body under the object's lock, then slicing the range out of the copy. A large file fetched in 8 MiB
ranges (``maas.core.download``) therefore cost the server the object's size per part: a 404 MB
model's 49 parts copied 20 GB, and the rate of a download fell with the square of the file's size
(39 MB/s for 404 MB, 15 MB/s for 1.1 GB on this machine). No S3 behaves so: it made every large
download of ``maas serve``, the demo and the tests slow, and made the benchmarks' "first token from
the local S3" a measure of moto's copying, worst for the largest peer.

``install`` makes moto read only the requested bytes: while moto builds a GET's answer, an object
whose request has a single ``Range`` hands over a ``RangedBody`` (its length, and the one slice
``_handle_range_header`` takes) instead of its bytes. Everything else about the answer (headers,
status, errors, ``416`` for an unsatisfiable range) is still moto's own.
"""

from __future__ import annotations

import threading
from typing import Any

_RANGED = threading.local()


class RangedBody:
    """An object's bytes as moto's range handling uses them: ``len()`` and one slice, read from the
    object's buffer under its lock when sliced; any other use gets the whole body (``bytes()``)."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def __getitem__(self, window: slice) -> bytes:
        if not isinstance(window, slice) or window.step not in (None, 1):
            return self.whole()[window]  # type: ignore[no-any-return]
        start, stop, _ = window.indices(len(self))
        with self._key.lock:
            self._key._value_buffer.seek(start)
            part: bytes = self._key._value_buffer.read(max(0, stop - start))
        return part

    def whole(self) -> bytes:
        with self._key.lock:
            self._key._value_buffer.seek(0)
            body: bytes = self._key._value_buffer.read()
        return body


def install() -> None:
    """Patch moto's S3 (in this process) once; a second call changes nothing."""
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    if getattr(S3Response, "_maas_ranged_reads", False):
        return
    whole_value = FakeKey.value
    get_object = S3Response.get_object
    handle_range = S3Response._handle_range_header

    def value(self: Any) -> Any:
        if getattr(_RANGED, "active", False):
            _RANGED.active = False  # the one body this GET answers with
            return RangedBody(self)
        return whole_value.fget(self)

    def ranged_get_object(self: Any) -> Any:
        spec = str(self.headers.get("range") or "")
        _RANGED.active = bool(spec) and "," not in spec and not self.querystring.get("partNumber")
        try:
            return get_object(self)
        finally:
            _RANGED.active = False

    def range_header(self: Any, request: Any, headers: dict[str, Any], content: Any) -> Any:
        status, headers, body = handle_range(self, request, headers, content)
        # a range moto answers with the whole object (one it could not parse) gets real bytes
        return status, headers, body.whole() if isinstance(body, RangedBody) else body

    FakeKey.value = property(value, whole_value.fset)  # type: ignore[method-assign, assignment]
    S3Response.get_object = ranged_get_object  # type: ignore[method-assign]
    S3Response._handle_range_header = range_header  # type: ignore[method-assign]
    S3Response._maas_ranged_reads = True  # type: ignore[attr-defined]


if __name__ == "__main__":  # ``python -m ops.moto_ranges -H 127.0.0.1 -p PORT``: moto's server, patched
    from moto.server import main

    install()
    main()
