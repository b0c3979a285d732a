"""Reading batch inputs as streams: formats, gzip by magic bytes, UTF-8, row errors, unreadable files."""

from __future__ import annotations

import gzip
import io

import pytest

from maas.core.errors import UnreadableInput
from maas.events.streams import Row, RowError, item_row, read_rows
from training.data import PROJECT_ROOT

INPUTS = PROJECT_ROOT / "events" / "spam_nb" / "inputs"


def rows_of(content: bytes, key: str) -> list[Row | RowError]:
    return list(read_rows(io.BytesIO(content), key))


def test_jsonl_plain_and_id_instance_lines_keep_their_line_numbers() -> None:
    rows = rows_of((INPUTS / "sample.jsonl").read_bytes(), "sample.jsonl")
    assert [r.line for r in rows] == list(range(1, 9))
    assert [type(r).__name__ for r in rows] == ["Row", "Row", "Row", "Row", "RowError", "Row", "Row", "Row"]
    assert (rows[1].id, rows[0].id) == ("msg-002", 1)
    assert isinstance(rows[4], RowError) and rows[4].code == "invalid_json"


def test_gzip_is_recognised_by_its_magic_bytes_whatever_the_name() -> None:
    content = gzip.compress(b'"one"\n"two"\n')
    assert [r.instance for r in rows_of(content, "a.jsonl.gz")] == ["one", "two"]
    assert [r.instance for r in rows_of(content, "a.jsonl")] == ["one", "two"]


def test_csv_multiline_quoted_text_and_a_utf8_bom() -> None:
    content = "\ufeff".encode() + (INPUTS / "sample.csv").read_bytes()
    rows = rows_of(content, "sample.csv")
    assert [(r.id, r.line) for r in rows] == [("c-1", 2), ("c-2", 3), ("c-3", 5), ("c-4", 6)]
    assert isinstance(rows[1], Row) and "\n" in rows[1].instance
    assert rows[2].instance == ""


def test_a_csv_row_with_the_wrong_number_of_fields_is_a_row_error() -> None:
    rows = rows_of(b"id,text\n1,hello,extra\n2,fine\n", "x.csv")
    assert isinstance(rows[0], RowError) and rows[0].code == "invalid_csv" and rows[0].id == "1"
    assert isinstance(rows[1], Row) and rows[1].instance == "fine"


def test_an_empty_line_in_jsonl_is_reported_not_dropped() -> None:
    rows = rows_of(b'"a"\n\n"b"\n', "x.ndjson")
    assert [(r.line, type(r).__name__) for r in rows] == [(1, "Row"), (2, "RowError"), (3, "Row")]


@pytest.mark.parametrize(
    ("key", "content", "code"),
    [
        ("x.parquet", b"PAR1", "unknown_format"),
        ("x.jsonl.gz", b'"not gzip"\n', "not_gzip"),
        ("x.jsonl", b'"ok"\n"\xff\xfe broken"\n', "not_utf8"),
        ("x.csv", b"id,body\n1,hi\n", "missing_column"),
        ("x.jsonl.gz", gzip.compress(b'"a"\n' * 1000)[:40], "bad_gzip"),
    ],
)
def test_unreadable_inputs_raise_one_clear_error(key: str, content: bytes, code: str) -> None:
    with pytest.raises(UnreadableInput) as raised:
        rows_of(content, key)
    assert raised.value.code == code and key in raised.value.message


def test_an_overlong_jsonl_line_is_a_row_error_and_the_next_line_is_read() -> None:
    rows = list(read_rows(io.BytesIO(b'"short"\n"' + b"x" * 5000 + b'"\n"after"\n'), "x.jsonl", max_row=1000))
    assert [type(r).__name__ for r in rows] == ["Row", "RowError", "Row"]
    assert isinstance(rows[1], RowError) and rows[1].code == "row_too_large" and rows[1].line == 2
    assert isinstance(rows[2], Row) and rows[2].instance == "after" and rows[2].line == 3


def test_an_overlong_csv_line_makes_the_file_unreadable() -> None:
    with pytest.raises(UnreadableInput) as raised:
        list(read_rows(io.BytesIO(b"id,text\n1," + b"x" * 5000 + b"\n"), "x.csv", max_row=1000))
    assert raised.value.code == "row_too_large"


def test_a_tables_csv_empty_cell_is_missing_and_a_string_features_cell_stays_text() -> None:
    body = b"id,age,sex,zip\nr1,59,male,02139\nr2,,,\nr3,old,female,90210\n"
    rows = list(read_rows(io.BytesIO(body), "t.csv", features=["age", "sex", "zip"], strings={"sex", "zip"}))
    assert [r.instance for r in rows if isinstance(r, Row)] == [
        {"age": 59.0, "sex": "male", "zip": "02139"},  # a string feature's digits stay its text
        {"age": None, "sex": None, "zip": None},
        {"age": "old", "sex": "female", "zip": "90210"},  # the task names the bad cell
    ]
    item = item_row(
        2,
        {"id": "r2", "age": "", "sex": "male", "zip": "02139"},
        "csv",
        ["age", "sex", "zip"],
        {"sex", "zip"},
    )
    assert (item.id, item.instance) == ("r2", {"age": None, "sex": "male", "zip": "02139"})
