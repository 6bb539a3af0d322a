"""Reading and writing record files (JSONL, CSV, Parquet) in constant memory.

Every reader yields ``(location, record)`` pairs so that any later error — a missing column, a PII
finding, a duplicate id — can point the user at the exact place in *their* file: the 1-based physical
line for JSONL and CSV (the CSV header is line 1; a record whose quoted field spans several lines is
located at the line where it starts), and the 0-based row index for Parquet, which has no lines.

Errors are :class:`~govern.errors.DataError` and never quote cell values (they may be personal data):
they name the file, the line or record, the field and what was wrong.

CSV has no types, so a CSV cell is always a string, and an empty cell is a missing value (``None``).
"""

from __future__ import annotations

import csv
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from govern.config import FileFormat
from govern.errors import DataError

#: The data modules' name for a file format (one definition: ``govern.config.FileFormat``).
Format = FileFormat

#: Suffix → format. Compression is not supported: fingerprints and line numbers refer to plain files.
SUFFIX_FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json-lines": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

_FORMATS: tuple[Format, ...] = ("jsonl", "csv", "parquet")


def detect_format(path: Path, declared: str = "auto") -> Format:
    """The format of ``path``: ``declared`` when it is not ``auto``, else from the file suffix."""
    if declared != "auto":
        if declared not in _FORMATS:
            raise DataError(path, f"unknown data format '{declared}' (expected one of: auto, {', '.join(_FORMATS)})")
        return declared
    fmt = SUFFIX_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise DataError(
            path,
            f"cannot tell the data format from the suffix '{Path(path).suffix}' (known: {known}); "
            "rename the file or set data.format",
        )
    return fmt


def location_kwargs(fmt: Format, location: int) -> dict[str, int]:
    """``DataError`` keyword for a location: ``line=`` for JSONL/CSV, ``record=`` (row index) for Parquet."""
    return {"record": location} if fmt == "parquet" else {"line": location}


def check_data_file(path: Path) -> os.stat_result:
    """The file's ``stat`` when ``path`` is a readable regular file; else a :class:`DataError` saying why.

    One place for what can be wrong with a path itself (missing, a symbolic link loop, a directory, a
    FIFO or device, no read permission), so every command reports it the same way instead of a
    traceback from ``Path.resolve`` or ``open``.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(path, "cannot open: a symbolic link loop") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataError(path, "file not found") from None
        raise DataError(path, f"cannot read: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(path, "is a directory, expected a data file")
    if not stat.S_ISREG(st.st_mode):
        raise DataError(path, "not a regular file (a FIFO, socket or device cannot be read as data)")
    if not os.access(path, os.R_OK):
        raise DataError(path, "cannot read: permission denied")
    return st


def safe_resolve(path: Path) -> Path:
    """``path.resolve()``, or the absolute path when it cannot be resolved (a symlink loop): for
    recording and display, where the real error is reported by :func:`check_data_file`."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError):  # RuntimeError up to Python 3.12, OSError after
        return Path(os.path.abspath(path))


def iter_records(path: Path, fmt: str = "auto", *, batch_size: int = 1000,
                 max_record_bytes: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Stream ``(location, record)`` pairs from a JSONL, CSV or Parquet file in constant memory.

    ``location`` is the 1-based line (JSONL, CSV) or 0-based row index (Parquet). Blank lines are
    skipped. ``batch_size`` is the number of Parquet rows decoded at a time.

    ``max_record_bytes`` bounds one record (a JSONL line, a CSV record with its quoted newlines, a
    Parquet row's Arrow size): a larger one is a :class:`DataError` naming its line or row, raised
    *before* it becomes Python objects — a JSONL line is read at most ``max_record_bytes + 1`` bytes
    at a time, so a 21 MB line costs 1 MiB, not gigabytes. ``None`` (no bound) is for files govern
    wrote itself from records that were already admitted under a bound (redacted copies).
    """
    path = Path(path)
    check_data_file(path)
    if path.name.endswith(".shards.json"):  # a sharded data set (see govern.data.shards): one stream
        from govern.data.shards import iter_sharded

        yield from iter_sharded(path, batch_size, max_record_bytes)
        return
    resolved = detect_format(path, fmt)
    if resolved == "jsonl":
        yield from _iter_jsonl(path, max_record_bytes)
    elif resolved == "csv":
        yield from _iter_csv(path, max_record_bytes)
    else:
        yield from _iter_parquet(path, batch_size, max_record_bytes)


def _too_large(path: Path, limit: int, *, line: int | None = None, record: int | None = None) -> DataError:
    return DataError(
        path, f"record is larger than the maximum record size of {limit:,} bytes (raise data.max_record_bytes "
        "in the run config, or --max-record-bytes for govern scan, if such records are intended)",
        line=line, record=record,
    )


def read_records(path: Path, fmt: str = "auto") -> list[dict[str, Any]]:
    """All records of a file, in order (for data sets small enough to hold in memory)."""
    return [record for _, record in iter_records(path, fmt)]


def _decode_line(path: Path, raw: bytes, line_no: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not valid UTF-8 (byte {exc.start} of the line)", line=line_no) from None
    if line_no == 1 and text.startswith("\ufeff"):  # a byte-order mark some editors write
        text = text[1:]
    return text


def _read_line(fh: Any, limit: int | None) -> tuple[bytes, bool]:
    """One line, at most ``limit`` bytes of it (without its newline); ``(b"", False)`` at the end.

    The flag is true when the line is longer than ``limit``: the caller reports it (an error) without
    the rest of the line ever being read.
    """
    if limit is None:
        return fh.readline(), False
    raw = fh.readline(limit + 1)
    if len(raw) <= limit or raw.endswith(b"\n"):  # at most ``limit`` bytes before the newline
        return raw, False
    return b"", True


def _iter_jsonl(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, "rb") as fh:
        line_no = 0
        while True:
            raw, oversized = _read_line(fh, limit)
            line_no += 1
            if oversized:
                assert limit is not None
                raise _too_large(path, limit, line=line_no)
            if not raw:
                break
            text = _decode_line(path, raw, line_no)
            if not text.strip():
                continue
            value = parse_json_line(path, text, line_no)
            if not isinstance(value, dict):
                raise DataError(
                    path, f"expected a JSON object, found {_json_type_name(value)}", line=line_no
                )
            yield line_no, value


def parse_json_line(path: Path, text: str, line_no: int) -> Any:
    """One JSONL line's value, or a DataError naming the file, the line and the column (never the content)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's reason ("Expecting ',' delimiter"), never the content.
        raise DataError(path, f"invalid JSON at column {exc.colno}: {exc.msg}", line=line_no) from None


def _json_type_name(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


class _LineCounter:
    """Feeds decoded lines to ``csv.reader`` while remembering the physical line number, and the
    bytes of the record being read (``record_bytes``, reset by the caller per record) against ``limit``."""

    def __init__(self, path: Path, fh: Any, limit: int | None = None) -> None:
        self.path = path
        self.fh = fh
        self.line_no = 0
        self.limit = limit
        self.record_bytes = 0
        self.record_start = 1

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> str:
        budget = None if self.limit is None else self.limit - self.record_bytes
        raw, oversized = _read_line(self.fh, max(budget, 0) if budget is not None else None)
        if oversized:
            assert self.limit is not None
            raise _too_large(self.path, self.limit, line=self.record_start)
        if not raw:
            raise StopIteration
        self.line_no += 1
        self.record_bytes += len(raw)
        return _decode_line(self.path, raw, self.line_no)


def _iter_csv(path: Path, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    if limit is not None and csv.field_size_limit() < limit:
        # csv's own per-field cap (128 KiB by default) would reject what the record bound admits;
        # the record bound is the one that holds (the setting is process-wide, and only ever raised).
        csv.field_size_limit(limit)
    with open(path, "rb") as fh:
        lines = _LineCounter(path, fh, limit)
        reader = csv.reader(lines, strict=True)
        header: list[str] | None = None
        while True:
            start = lines.line_no + 1  # the line the next record starts on
            lines.record_bytes, lines.record_start = 0, start
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise DataError(path, f"malformed CSV: {exc}", line=start) from None
            if not row:
                continue  # blank line
            if header is None:
                header = [name.strip() for name in row]
                _check_header(path, header, start)
                continue
            if len(row) != len(header):
                raise DataError(
                    path, f"expected {len(header)} fields (as in the header), found {len(row)}", line=start
                )
            yield start, {name: (cell if cell != "" else None) for name, cell in zip(header, row, strict=True)}


def _check_header(path: Path, header: list[str], line_no: int) -> None:
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if not name:
            raise DataError(path, f"CSV header column {position} has no name", line=line_no)
        if name in seen:
            raise DataError(path, "CSV header names a column twice", line=line_no, field=name)
        seen.add(name)


def _iter_parquet(path: Path, batch_size: int, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet_file = pq.ParquetFile(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise DataError(path, f"not a readable Parquet file ({type(exc).__name__})") from None
    index = 0
    try:
        for batch in parquet_file.iter_batches(batch_size=batch_size):
            if limit is not None and batch.nbytes > limit:
                # Only a batch larger than the bound can hold a row larger than it; measure its rows
                # in Arrow (a slice's nbytes counts only the bytes that row references).
                for i in range(batch.num_rows):
                    if batch.slice(i, 1).nbytes > limit:
                        raise _too_large(path, limit, record=index + i)
            for record in batch.to_pylist():
                yield index, record
                index += 1
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise DataError(path, f"corrupt Parquet data after row {index} ({type(exc).__name__})", record=index) from None


# ------------------------------------------------------------------------------------------ writing
def write_records(
    path: Path,
    records: Iterable[dict[str, Any]],
    fmt: str,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int = 1000,
) -> int:
    """Write ``records`` to ``path`` in ``fmt`` (streaming); return the number written.

    Used for derived copies (e.g. the PII-redacted data set), so the file is written to a temporary
    name and renamed into place: a crash never leaves a half-written copy that looks complete.
    ``columns`` fixes the CSV/Parquet column order; default: the first record's keys.
    """
    path = Path(path)
    resolved = detect_format(path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if resolved == "jsonl":
            count = _write_jsonl(tmp, records)
        elif resolved == "csv":
            count = _write_csv(tmp, records, columns)
        else:
            count = _write_parquet(tmp, records, columns, batch_size)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def _write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")
            count += 1
    return count


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return str(value)


def _write_csv(path: Path, records: Iterable[dict[str, Any]], columns: Sequence[str] | None) -> int:
    count = 0
    header: list[str] | None = list(columns) if columns is not None else None
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        if header is not None:
            writer.writerow(header)
        for record in records:
            if header is None:
                header = list(record)
                writer.writerow(header)
            extra = [k for k in record if k not in header]
            if extra:
                raise DataError(path, f"record {count} has a column the CSV header lacks", field=extra[0])
            writer.writerow([_csv_cell(record.get(name)) for name in header])
            count += 1
    return count


def _write_parquet(
    path: Path, records: Iterable[dict[str, Any]], columns: Sequence[str] | None, batch_size: int
) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    names: list[str] | None = list(columns) if columns is not None else None
    count = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer, schema
        if not batch:
            return
        try:
            table = pa.Table.from_pylist(batch) if schema is None else pa.Table.from_pylist(batch, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(
                path, f"records {count - len(batch)}-{count - 1} do not fit one Parquet column type "
                f"({type(exc).__name__}); give each column one type"
            ) from None
        if schema is None:
            # A column that is all-null in the first batch would get type null; text is the safe guess.
            fields = [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            schema = pa.schema(fields)
            table = table.cast(schema)
            writer = pq.ParquetWriter(path, schema)
        assert writer is not None
        writer.write_table(table)
        batch.clear()

    try:
        for record in records:
            if names is None:
                names = list(record)
            batch.append({name: record.get(name) for name in names})
            count += 1
            if len(batch) >= batch_size:
                flush()
        flush()
        if writer is None:  # no records: still write a valid (empty) file with the given columns
            empty_schema = pa.schema([(name, pa.string()) for name in (names or [])])
            pq.write_table(empty_schema.empty_table(), path)
    finally:
        if writer is not None:
            writer.close()
    return count
