"""Read a batch input object from S3 as a stream of rows, never as a whole.

The body is read block by block; gzip is recognised by its magic bytes (not trusted from the
name), text is decoded as UTF-8 on the fly, and each row becomes either a ``Row`` or a
``RowError`` that says which line and why. Memory therefore depends on the longest row, not on
the size of the file. Anything that makes the whole object unreadable raises ``UnreadableInput``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from botocore.exceptions import BotoCoreError

from maas.core.errors import TransientError, UnreadableInput, cut

GZIP_MAGIC = b"\x1f\x8b"
JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
READ_BLOCK = 1 << 20
MAX_ROW_CHARS = 1_048_576  # a row, like a request body, is at most MAX_BODY_BYTES


@dataclass(frozen=True, slots=True)
class Row:
    """One readable input row: where it was, what it is called, and the instance to score."""

    line: int
    id: Any
    instance: Any


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that cannot even be parsed; it is reported, and the rest of the file goes on."""

    line: int
    id: Any
    code: str
    message: str
    field: str | None = None


class _BodyReader(io.RawIOBase):
    """A file-like view of a botocore ``StreamingBody`` so the io stack can buffer and peek it.

    A fault of the transport (botocore's ``ReadTimeoutError`` and a dropped connection are
    ``OSError``s, as gzip's damaged-data error is) leaves here as ``TransientError``: only what
    comes after, decompression and decoding, can blame the data."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._body.read(len(buffer))
        except (BotoCoreError, OSError) as error:
            raise TransientError(f"reading the input from S3 failed: {type(error).__name__}") from error
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._body.close()
        super().close()


def input_format(key: str) -> str:
    """``jsonl`` or ``csv`` from the key's suffix (a trailing ``.gz`` ignored), else unreadable."""
    name = key.lower().removesuffix(".gz")
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise UnreadableInput(
        f"{key!r} has an unknown extension: use .jsonl, .ndjson or .csv (optionally .gz)",
        code="unknown_format",
        field="key",
    )


def open_text(body: Any, key: str) -> IO[str]:
    """The object's text, decompressed when its first bytes are gzip's magic, decoded as UTF-8."""
    buffered = io.BufferedReader(_BodyReader(body), buffer_size=READ_BLOCK)
    compressed = buffered.peek(2)[:2] == GZIP_MAGIC
    if key.lower().endswith(".gz") and not compressed:
        raise UnreadableInput(f"{key!r} is named .gz but is not gzip data", code="not_gzip", field="key")
    binary: IO[bytes] = (
        gzip.GzipFile(fileobj=buffered, mode="rb") if compressed else buffered  # type: ignore[assignment]
    )
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="strict", newline="")


def _bounded_lines(text: IO[str], limit: int) -> Iterator[str | None]:
    """The text's lines, each read with at most ``limit`` characters held; ``None`` for a longer
    one (its rest is read and dropped piece by piece), so one huge row cannot exhaust memory."""
    while line := text.readline(limit):
        if len(line) < limit or line.endswith("\n"):
            yield line
            continue
        while (rest := text.readline(limit)) and not rest.endswith("\n"):
            pass
        yield None


def _decoded(lines: Iterator[str | None], key: str) -> Iterator[str | None]:
    """Turn decoding and decompression failures into one clear ``UnreadableInput``."""
    try:
        yield from lines
    except UnicodeDecodeError as error:
        raise UnreadableInput(
            f"{key!r} is not UTF-8 text: {error.reason} at byte {error.start} of a block",
            code="not_utf8",
            field="key",
        ) from None
    except (OSError, EOFError, zlib.error) as error:
        raise UnreadableInput(
            f"{key!r} is damaged gzip data: {error}", code="bad_gzip", field="key"
        ) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{cut(text)} is out of range for a number")
    return value


def _strict_json(line: str) -> Any:
    """JSON as RFC 8259 has it: no NaN or Infinity, no number that overflows to infinity, so
    whatever a row carries (its id above all) can be written back as valid JSON."""
    return json.loads(line, parse_constant=_no_constant, parse_float=_finite)


def jsonl_rows(text: IO[str], key: str = "input", max_row: int = MAX_ROW_CHARS) -> Iterator[Row | RowError]:
    """One instance per line, or ``{"id": ..., "instance": ...}``; the line number is the default id."""
    for line_no, line in enumerate(_decoded(_bounded_lines(text, max_row), key), start=1):
        if line is None:
            yield RowError(
                line_no, line_no, "row_too_large", f"line {line_no} is over {max_row} characters", "line"
            )
            continue
        if not line.strip():
            yield RowError(line_no, line_no, "empty_line", f"line {line_no} is empty", "line")
            continue
        try:
            value = _strict_json(line)
        except RecursionError:
            yield RowError(
                line_no, line_no, "too_deeply_nested", f"line {line_no} is nested too deeply", "line"
            )
            continue
        except ValueError as error:  # also NaN, Infinity, 1e400 and integers of over 4,300 digits
            message = f"line {line_no} is not JSON: {cut(str(error))}"
            yield RowError(line_no, line_no, "invalid_json", message, "line")
            continue
        if isinstance(value, dict) and "instance" in value:
            yield Row(line_no, value.get("id", line_no), value["instance"])
        else:
            yield Row(line_no, line_no, value)


def _whole_lines(lines: Iterator[str | None], key: str, limit: int) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if line is None:  # a CSV record can span lines: there is no telling where the next begins
            raise UnreadableInput(
                f"{key!r}: physical line {number} is over {limit} characters",
                code="row_too_large",
                field="key",
            )
        yield line


def _cell(value: str, text: bool = False) -> Any:
    """A CSV cell of a feature column: empty is a missing value (``None``; the task says whether
    the feature may be missing); a string feature's cell is its text; any other a number when it
    reads as one, else the text (the task then names the feature that is not numeric)."""
    if not value.strip():
        return None
    if text:
        return value
    try:
        return float(value)
    except ValueError:
        return value


def csv_rows(
    text: IO[str],
    key: str = "input",
    max_row: int = MAX_ROW_CHARS,
    features: Sequence[str] | None = None,
    strings: Collection[str] = (),
) -> Iterator[Row | RowError]:
    """CSV with a header: a ``text`` column (the instance) and an optional ``id`` column.

    For a tabular model (``features`` given) the header names the features instead: each row
    becomes an object of its columns but ``id``, keyed by header name, numbers parsed but in the
    ``strings`` features, empty cells ``None``; the task checks the names and values (a missing,
    extra or bad feature is that row's error, naming it)."""
    # strict: a quote that is never closed (or closed mid-field) is an error, not rows merged
    # silently into one field up to the end of the file.
    reader = csv.reader(_whole_lines(_decoded(_bounded_lines(text, max_row), key), key, max_row), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as error:
        raise UnreadableInput(f"{key!r}: the CSV header cannot be read: {error}", code="bad_csv") from None
    columns = [name.strip().lower() for name in header]
    names = [name.strip() for name in header]
    if features is None and "text" not in columns:
        raise UnreadableInput(
            f"{key!r}: the CSV header {header!r} has no 'text' column", code="missing_column", field="text"
        )
    text_at = columns.index("text") if features is None else -1
    id_at = columns.index("id") if "id" in columns and "id" not in (features or ()) else None
    line_no = reader.line_num
    while True:
        start = line_no + 1
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            line_no = reader.line_num
            # every physical line the broken record took is refused, so each keeps its place
            span = f"line {start}" if line_no <= start else f"lines {start}-{line_no}"
            message = f"{span}: not valid CSV ({error}); is a quote not closed?"
            for number in range(start, max(start, line_no) + 1):
                yield RowError(number, number, "invalid_csv", message, "line")
            continue
        line_no = reader.line_num
        row_id: Any = record[id_at] if id_at is not None and id_at < len(record) and record[id_at] else start
        if len(record) != len(columns):
            yield RowError(
                start,
                row_id,
                "invalid_csv",
                f"line {start} has {len(record)} fields, the header has {len(columns)}",
                "line",
            )
            continue
        if features is None:
            yield Row(start, row_id, record[text_at])
        else:
            yield Row(
                start,
                row_id,
                {
                    n: _cell(v, n in strings)
                    for i, (n, v) in enumerate(zip(names, record, strict=True))
                    if i != id_at
                },
            )


def item_row(
    line: int, value: Any, fmt: str, features: Sequence[str] | None = None, strings: Collection[str] = ()
) -> Row:
    """One item a Step Functions ItemReader read, as the row ``jsonl_rows`` or ``csv_rows`` makes of
    the same line: a JSON Lines item is the parsed line; a CSV item maps header names to strings."""
    if fmt == "jsonl":
        if isinstance(value, dict) and "instance" in value:
            return Row(line, value.get("id", line), value["instance"])
        return Row(line, line, value)
    cells = value if isinstance(value, dict) else {}
    columns = {str(name).strip().lower(): name for name in cells}
    with_id = "id" in columns and "id" not in (features or ())
    row_id: Any = cells[columns["id"]] if with_id and cells[columns["id"]] else line
    if features is None:
        return Row(line, row_id, cells[columns["text"]] if "text" in columns else None)
    return Row(
        line,
        row_id,
        {
            str(n).strip(): _cell(v, str(n).strip() in strings) if isinstance(v, str) else v
            for n, v in cells.items()
            if not (with_id and n == columns["id"])
        },
    )


def count_rows(body: Any, key: str, max_row: int = MAX_ROW_CHARS) -> int:
    """The rows a Step Functions ItemReader makes of an object: CSV records after the header, or
    the JSON Lines that are not blank. A second, independent count for a batch job's final check."""
    text = open_text(body, key)
    try:
        if input_format(key) == "jsonl":
            return sum(
                1 for line in _decoded(_bounded_lines(text, max_row), key) if line is None or line.strip()
            )
        lines = _whole_lines(_decoded(_bounded_lines(text, max_row), key), key, max_row)
        return max(0, sum(1 for record in csv.reader(lines) if record) - 1)
    finally:
        text.close()


def read_rows(
    body: Any,
    key: str,
    max_row: int = MAX_ROW_CHARS,
    features: Sequence[str] | None = None,
    strings: Collection[str] = (),
) -> Iterator[Row | RowError]:
    """The rows of an S3 object body, by its format; raises ``UnreadableInput`` when it cannot be read.

    ``features``: the served model's feature names, for a tabular model's CSV (see ``csv_rows``)."""
    kind = input_format(key)
    text = open_text(body, key)
    try:
        if kind == "jsonl":
            yield from jsonl_rows(text, key, max_row)
        else:
            yield from csv_rows(text, key, max_row, features, strings)
    finally:
        text.close()
