"""Loading a data set for a governed run: validation, ids and a format-independent fingerprint.

Validation happens at the door, once, so that every later stage can trust the records it gets
(Fairlearn's lesson: validate inputs where they enter, with messages that say where and what). Each
error names the file, the line (JSONL/CSV) or row (Parquet) and the field, never the value.

**Fingerprint.** ``FileRecord.fingerprint`` identifies the *content* of a data set regardless of its
file format, so the privacy ledger can tell that ``train.csv`` and ``train.parquet`` are the same data.
It is the sha256 over one line per record, in file order: the record's canonical JSON (sorted keys,
no spaces, UTF-8) after each value is normalised to text, because CSV has no types:

* a string stays as it is, except that the empty string becomes ``null`` (a CSV cell cannot tell
  them apart);
* ``null`` stays ``null``;
* booleans become ``"true"`` / ``"false"``; integers their decimal digits; floats Python's shortest
  round-trip text (``1.5``; an integral float keeps its ``.0``);
* lists and objects become their canonical JSON text.

So data whose values are strings (the common case, and every value a CSV can hold) has the same
fingerprint in JSONL, CSV and Parquet. The byte digest (``FileRecord.sha256``) identifies the file.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from govern.config import DataConfig, canonical_json
from govern.data.io import Format, check_data_file, detect_format, iter_records, location_kwargs
from govern.errors import DataError
from govern.evidence import FileRecord
from govern.stage import file_sha256


def canonical_value(value: Any) -> str | None:
    """A record value as text, the way the fingerprint sees it (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value if value != "" else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return repr(value)
    if isinstance(value, (list, tuple, dict)):
        return canonical_json(_plain(value))
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def canonical_record(record: dict[str, Any]) -> str:
    """One line of the fingerprint: the record's canonical JSON with every value normalised."""
    return canonical_json({str(k): canonical_value(v) for k, v in record.items()})


def label_name(value: Any) -> str:
    """A class label as a string (``1`` → ``"1"``, ``True`` → ``"true"``), the same in every format.

    Training and evaluation map labels to indices through these names, so a JSONL ``1`` and a CSV
    ``"1"`` are the same class.
    """
    name = canonical_value(value)
    if name is None:
        raise ValueError("a label cannot be null")
    return name


class RecordFingerprint:
    """Incremental format-independent fingerprint (feed records in file order)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()

    def update(self, record: dict[str, Any]) -> None:
        self._hash.update(canonical_record(record).encode("utf-8"))
        self._hash.update(b"\n")

    def hexdigest(self) -> str:
        return "sha256:" + self._hash.hexdigest()


def fingerprint_file(path: Path, fmt: str = "auto") -> str:
    """Content fingerprint of a data file, streamed (see the module docstring)."""
    fp = RecordFingerprint()
    for _, record in iter_records(path, fmt):
        fp.update(record)
    return fp.hexdigest()


@dataclass
class LoadedDataset:
    """A validated data file: its records in order, their ids and locations (all three empty when
    streamed: ``load_dataset(keep_records=False)``), and its file record."""

    role: str
    path: Path
    format: Format
    records: list[dict[str, Any]]
    #: Record ids as strings (the id column, or the line / row number when ``id_column`` is null).
    ids: list[str]
    #: Line (JSONL/CSV) or row index (Parquet) of each record, for error messages and findings.
    locations: list[int]
    file: FileRecord
    #: Label name → count (classification); empty otherwise.
    labels: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.file.rows  # records and ids may not be kept (load_dataset(keep_records=False))

    def texts(self, cfg: DataConfig) -> list[str]:
        """The text each record contributes (text column, or prompt + completion)."""
        return [record_text(r, cfg) for r in self.records]


def record_text(record: dict[str, Any], cfg: DataConfig) -> str:
    """The text of a record for leakage checks: the text column, else prompt and completion joined."""
    text = record.get(cfg.text_column)
    if isinstance(text, str):
        return text
    parts = [record.get(c) for c in (cfg.prompt_column, cfg.completion_column) if c]
    return "\n".join(p for p in parts if isinstance(p, str))


def _recordable_columns(columns: list[str], declared: set[str]) -> list[str]:
    """Column names as the evidence may keep them: the ones the config declares by name; any other is
    counted, not named. A column name can itself be personal data (a JSON key such as an e-mail address),
    and this runs before the PII scan, so only names the operator wrote in the config are safe to store."""
    shown: list[str] = []
    undeclared = 0
    for column in columns:
        if column in declared:
            shown.append(column)
        else:
            undeclared += 1
            shown.append(f"<undeclared column {undeclared}>")
    return shown


def required_columns(cfg: DataConfig, task: str) -> list[str]:
    """Columns every record must have, in the order they are checked."""
    columns: list[str] = []
    has_prompt = cfg.prompt_column is not None and cfg.completion_column is not None
    if not (task == "causal-lm" and has_prompt):
        columns.append(cfg.text_column)
    if task == "classification" and cfg.label_column:
        columns.append(cfg.label_column)
    if cfg.prompt_column:
        columns.append(cfg.prompt_column)
    if cfg.completion_column:
        columns.append(cfg.completion_column)
    columns.extend(cfg.sensitive_columns)
    if cfg.id_column:
        columns.append(cfg.id_column)
    return list(dict.fromkeys(columns))


def load_dataset(path: Path, cfg: DataConfig, role: str, task: str, *, keep_records: bool = True,
                 visit: Callable[[str, dict[str, Any]], None] | None = None) -> LoadedDataset:
    """Read and validate one data file against the run's data config.

    ``keep_records=False`` streams: everything is checked and fingerprinted, but neither records, ids
    nor locations are kept (they are empty), so a training file of millions of records costs 8 bytes
    a record (a key of its id, for the uniqueness check), not its contents. ``visit(id, record)`` sees
    each valid record as it streams past (the data stage's leakage check reads the file in the same pass).

    Checks, each failing with a :class:`DataError` that names file, line/record and field: the file
    exists and has records; every record has the required columns; the text (and prompt/completion)
    is a non-empty string; a classification label is a string, integer or boolean; sensitive values
    are scalars or null (null = group unknown); ids are present and unique (both lines are named).
    """
    path = Path(path)
    fmt = detect_format(path, cfg.format)
    try:
        st = check_data_file(path)
    except DataError as exc:
        if exc.reason == "file not found":
            raise DataError(path, f"{role} data file not found") from None
        raise DataError(path, f"{role} data file: {exc.reason}") from None
    if st.st_size == 0:
        raise DataError(path, f"{role} data file is empty (no records)")

    required = required_columns(cfg, task)
    text_columns = [c for c in (cfg.text_column, cfg.prompt_column, cfg.completion_column) if c and c in required]
    label_column = cfg.label_column if task == "classification" else None

    records: list[dict[str, Any]] = []
    ids: list[str] = []
    locations: list[int] = []
    columns: dict[str, None] = {}
    first_location_of_id: dict[str, int] = {}
    labels: Counter[str] = Counter()
    fingerprint = RecordFingerprint()
    id_keys = _IdKeys()
    rows = 0

    for location, record in iter_records(path, fmt, max_record_bytes=cfg.max_record_bytes):
        where = location_kwargs(fmt, location)
        for column in required:
            if column not in record:
                raise DataError(path, f"missing column '{column}'", field=column, **where)
        for column in text_columns:
            value = record[column]
            if value is None:
                raise DataError(path, "text is missing (null or empty)", field=column, **where)
            if not isinstance(value, str):
                raise DataError(path, f"expected text (a string), found {_type_name(value)}", field=column, **where)
            if not value.strip():
                raise DataError(path, "text is empty", field=column, **where)
        if label_column is not None:
            value = record[label_column]
            if value is None:
                raise DataError(path, "label is missing (null)", field=label_column, **where)
            if not isinstance(value, (str, int, bool)):
                raise DataError(
                    path, f"expected a label that is a string, integer or boolean, found {_type_name(value)}",
                    field=label_column, **where,
                )
            if isinstance(value, str) and not value.strip():
                raise DataError(path, "label is empty", field=label_column, **where)
            labels[label_name(value)] += 1
        for column in cfg.sensitive_columns:
            value = record[column]
            if isinstance(value, (list, dict, tuple)):
                raise DataError(
                    path, f"expected a single value (or null for unknown), found {_type_name(value)}",
                    field=column, **where,
                )
        record_id = _record_id(record, location, cfg, path, fmt)
        if keep_records:
            if record_id in first_location_of_id:
                _raise_duplicate_id(path, fmt, cfg, first_location_of_id[record_id], location)
            first_location_of_id[record_id] = location
        else:
            id_keys.append(_id_key(record_id))
        for key in record:
            columns.setdefault(key, None)
        fingerprint.update(record)
        if visit is not None:
            visit(record_id, record)
        rows += 1
        if keep_records:
            records.append(record)
            ids.append(record_id)
            locations.append(location)

    if not rows:
        raise DataError(path, f"{role} data file has no records (only blank lines)")
    if not keep_records:
        _check_streamed_ids_unique(path, fmt, cfg, id_keys)

    file_record = FileRecord(
        role=role,
        path=str(path),
        format=fmt,
        sha256=file_sha256(path),
        size_bytes=path.stat().st_size,
        rows=rows,
        columns=_recordable_columns(list(columns), set(required)),
        fingerprint=fingerprint.hexdigest(),
    )
    return LoadedDataset(
        role=role, path=path, format=fmt, records=records, ids=ids, locations=locations,
        file=file_record, labels=dict(sorted(labels.items())),
    )


def _record_id(record: dict[str, Any], location: int, cfg: DataConfig, path: Path, fmt: Format) -> str:
    """The record's id as text: its id column (a string or integer), else its line / row number."""
    if not cfg.id_column:
        return str(location)
    where = location_kwargs(fmt, location)
    raw_id = record[cfg.id_column]
    if isinstance(raw_id, (list, dict, tuple, float)):
        raise DataError(path, f"record id is {_type_name(raw_id)}; expected a string or integer",
                        field=cfg.id_column, **where)
    record_id = canonical_value(raw_id)
    if record_id is None or not record_id.strip():
        raise DataError(path, "record id is missing (null or empty)", field=cfg.id_column, **where)
    return record_id


def _raise_duplicate_id(path: Path, fmt: Format, cfg: DataConfig, first: int, location: int) -> NoReturn:
    unit = "row" if fmt == "parquet" else "line"
    raise DataError(path, f"duplicate record id: the same id as {unit} {first}", field=cfg.id_column,
                    **location_kwargs(fmt, location))


def _id_key(record_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little")


class _IdKeys:
    """8-byte keys of a streamed file's ids, in numpy blocks: a Python set of millions of id strings
    would be the largest thing the data stage holds (~100 bytes an id)."""

    _BLOCK = 65_536

    def __init__(self) -> None:
        self._blocks: list[np.ndarray] = []
        self._pending: list[int] = []

    def append(self, key: int) -> None:
        self._pending.append(key)
        if len(self._pending) >= self._BLOCK:
            self._blocks.append(np.array(self._pending, dtype=np.uint64))
            self._pending = []

    def repeated(self) -> set[int]:
        """Keys that occur more than once (a repeated id, or — rarely — two ids with one key)."""
        keys = np.sort(np.concatenate([*self._blocks, np.array(self._pending, dtype=np.uint64)]))
        return {int(k) for k in keys[1:][keys[1:] == keys[:-1]]}


def _check_streamed_ids_unique(path: Path, fmt: Format, cfg: DataConfig, id_keys: _IdKeys) -> None:
    """The streamed uniqueness check: repeated keys, then a second pass over just those ids to name the
    first duplicate exactly as the in-memory check does (and to rule out a key collision)."""
    suspects = id_keys.repeated()
    if not suspects:
        return
    first_location: dict[str, int] = {}
    for location, record in iter_records(path, fmt, max_record_bytes=cfg.max_record_bytes):
        record_id = _record_id(record, location, cfg, path, fmt)
        if _id_key(record_id) not in suspects:
            continue
        if record_id in first_location:
            _raise_duplicate_id(path, fmt, cfg, first_location[record_id], location)
        first_location[record_id] = location


def check_label_sets(train: LoadedDataset, eval_: LoadedDataset, cfg: DataConfig) -> None:
    """Classification needs at least two classes in train, and no eval class train never shows."""
    column = cfg.label_column
    # only called for classification, and RunConfig refuses classification without a label column
    assert column is not None
    if len(train.labels) < 2:
        raise DataError(
            train.path,
            f"the label column has {len(train.labels)} distinct class(es); classification needs at least 2",
            field=column,
        )
    for record, location in zip(eval_.records, eval_.locations, strict=True):
        if label_name(record[column]) not in train.labels:
            raise DataError(
                eval_.path,
                f"label is a class that never occurs in the training data ({train.path.name})",
                field=column, **location_kwargs(eval_.format, location),
            )


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
