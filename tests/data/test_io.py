"""Reading and writing record files: every bad-input class gives a DataError naming file, line, field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from govern.data.io import detect_format, iter_records, read_records, write_records
from govern.errors import DataError
from tests.conftest import peak_memory

RECORDS = [
    {"id": "r1", "text": "hello world", "label": "a", "group": None},
    {"id": "r2", "text": 'quoted "text", with a comma\nand a newline', "label": "b", "group": "x"},
    {"id": "r3", "text": "ünïcödé ✓", "label": "a", "group": "y"},
]


def test_detect_format_by_suffix_and_declared() -> None:
    assert detect_format(Path("a.jsonl")) == "jsonl"
    assert detect_format(Path("a.NDJSON")) == "jsonl"
    assert detect_format(Path("a.csv")) == "csv"
    assert detect_format(Path("a.pq")) == "parquet"
    assert detect_format(Path("a.txt"), "csv") == "csv"


def test_unknown_format_names_the_file_and_the_way_out() -> None:
    with pytest.raises(DataError) as err:
        detect_format(Path("data/train.txt"))
    assert "data/train.txt" in str(err.value)
    assert "data.format" in str(err.value)
    with pytest.raises(DataError, match="unknown data format 'xml'"):
        detect_format(Path("a.jsonl"), "xml")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_round_trip_keeps_records(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"data.{fmt}"
    assert write_records(path, iter(RECORDS), fmt) == 3
    assert read_records(path) == RECORDS
    # no temporary file left behind by the atomic write
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_locations_are_physical_lines_for_text_formats_and_row_indices_for_parquet(tmp_path: Path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert [loc for loc, _ in iter_records(jsonl)] == [1, 3]
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('id,text\n1,"two\nlines"\n2,x\n')
    assert [loc for loc, _ in iter_records(csv_path)] == [2, 4]
    pq = tmp_path / "a.parquet"
    write_records(pq, [{"a": "1"}, {"a": "2"}], "parquet")
    assert [loc for loc, _ in iter_records(pq, batch_size=1)] == [0, 1]


def test_csv_cells_are_strings_and_empty_cells_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("id,n,flag\n1,,true\n")
    assert read_records(path) == [{"id": "1", "n": None, "flag": "true"}]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found") as err:
        read_records(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(err.value)


def test_broken_json_line_names_the_line_and_position_not_the_content(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "secret-value-123",}\n')
    with pytest.raises(DataError) as err:
        read_records(path)
    message = str(err.value)
    assert err.value.line == 2
    assert f"{path}, line 2: invalid JSON at column" in message
    assert "secret-value-123" not in message


# One bad input per row: the file's name and bytes, then the line (and field) the DataError must name and
# the words its message must hold.
BAD_INPUTS = [
    pytest.param("train.jsonl", b'{"text": "fine"}\n["a", "list"]\n', 2, None,
                 "line 2: expected a JSON object, found an array", id="jsonl-line-not-an-object"),
    pytest.param("train.jsonl", b'{"text": "ok"}\n{"text": "ok"}\n{"text": "bad \xff byte"}\n', 3, None,
                 "not valid UTF-8", id="jsonl-invalid-utf8"),
    pytest.param("train.csv", b"id,text\n1,ok\n2,caf\xe9\n", 3, None, "line 3: not valid UTF-8", id="csv-invalid-utf8"),
    pytest.param("train.csv", b'id,text,label\n1,"multi\nline",a\n2,too,many,fields\n', 4, None,
                 "expected 3 fields (as in the header), found 4", id="csv-row-with-wrong-number-of-fields"),
    pytest.param("train.csv", b"id,text,text\n1,a,b\n", 1, "text", "", id="csv-header-with-a-duplicate-column"),
]


@pytest.mark.parametrize(("name", "content", "line", "field", "words"), BAD_INPUTS)
def test_bad_input_names_the_line(tmp_path: Path, name: str, content: bytes, line: int, field: str | None,
                                  words: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_records(path)
    assert err.value.line == line
    if field is not None:
        assert err.value.field == field
    assert words in str(err.value)


def test_corrupt_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_records(path)


def test_csv_writer_refuses_a_column_the_header_lacks(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        write_records(tmp_path / "o.csv", [{"a": "1"}, {"a": "2", "b": "3"}], "csv")
    assert err.value.field == "b"
    assert not list(tmp_path.iterdir()), "a failed write leaves no file behind"


def test_reading_a_large_file_streams_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    line = json.dumps({"id": 0, "text": "x" * 100, "label": "a"}) + "\n"
    with open(path, "w") as fh:
        for _ in range(200_000):
            fh.write(line)
    assert path.stat().st_size > 25_000_000
    count, peak = peak_memory(lambda: sum(1 for _ in iter_records(path)))
    assert count == 200_000
    assert peak < 2_000_000, f"peak {peak} bytes: the reader holds records in memory"


def test_parquet_streams_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    write_records(path, ({"id": str(i), "text": "y" * 100} for i in range(100_000)), "parquet", batch_size=10_000)
    count, peak = peak_memory(lambda: sum(1 for _ in iter_records(path, batch_size=1000)))
    assert count == 100_000
    assert peak < 8_000_000, f"peak {peak} bytes"


def test_parquet_writer_reports_mixed_column_types_as_a_data_error(tmp_path: Path) -> None:
    records = [{"a": 1}, {"a": "text"}]
    with pytest.raises(DataError, match="do not fit one Parquet column type"):
        write_records(tmp_path / "o.parquet", records, "parquet", batch_size=1)
    assert not list(tmp_path.iterdir())
