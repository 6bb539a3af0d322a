"""Loading a data set for a run: each validation failure names file, line/record and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from govern.config import DataConfig
from govern.data.io import write_records
from govern.data.validate import canonical_value, fingerprint_file, label_name, load_dataset
from govern.errors import DataError


def config(tmp_path: Path, **overrides: Any) -> DataConfig:
    values: dict[str, Any] = {"train": tmp_path / "train.jsonl", "eval": tmp_path / "eval.jsonl",
                              "label_column": "label", "sensitive_columns": ["region"]}
    values.update(overrides)
    return DataConfig(**values)


def rows(n: int = 4) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "text": f"message number {i}", "label": "ab"[i % 2], "region": "nesw"[i % 4]}
            for i in range(n)]


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def load(path: Path, cfg: DataConfig, task: str = "classification"):
    return load_dataset(path, cfg, "train", task)


_DELETE = object()


def edited_error(tmp_path: Path, index: int, field: str, value: Any = _DELETE) -> DataError:
    """The DataError of loading :func:`rows` with record ``index``'s ``field`` set to ``value`` (or deleted)."""
    records = rows()
    if value is _DELETE:
        del records[index][field]
    else:
        records[index][field] = value
    with pytest.raises(DataError) as err:
        load(write_jsonl(tmp_path / "train.jsonl", records), config(tmp_path))
    return err.value


def test_valid_file_loads_with_ids_labels_and_file_record(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", rows())
    data = load(path, config(tmp_path))
    assert data.ids == ["r0", "r1", "r2", "r3"]
    assert data.locations == [1, 2, 3, 4]
    assert data.labels == {"a": 2, "b": 2}
    assert data.file.rows == 4
    assert data.file.columns == ["id", "text", "label", "region"]
    assert data.file.sha256 and data.file.fingerprint.startswith("sha256:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train data file not found") as err:
        load(tmp_path / "train.jsonl", config(tmp_path))
    assert str(tmp_path / "train.jsonl") in str(err.value)


def test_empty_file_has_no_records(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(DataError, match="empty"):
        load(tmp_path / "train.jsonl", config(tmp_path))
    (tmp_path / "train.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no records"):
        load(tmp_path / "train.jsonl", config(tmp_path))


def test_csv_with_only_a_header_has_no_records(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("id,text,label,region\n")
    with pytest.raises(DataError, match="no records"):
        load(tmp_path / "train.csv", config(tmp_path))


def test_missing_column_names_line_and_field(tmp_path: Path) -> None:
    err = edited_error(tmp_path, 2, "label")
    assert (err.line, err.field) == (3, "label")
    assert str(err) == f"{tmp_path / 'train.jsonl'}, line 3, field 'label': missing column 'label'"


def test_missing_sensitive_column_names_it(tmp_path: Path) -> None:
    err = edited_error(tmp_path, 1, "region")
    assert (err.line, err.field) == (2, "region")


def test_missing_column_in_parquet_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "train.parquet"
    write_records(path, [{k: v for k, v in r.items() if k != "text"} for r in rows()], "parquet")
    with pytest.raises(DataError) as err:
        load(path, config(tmp_path))
    assert (err.value.record, err.value.field) == (0, "text")
    assert "record 0, field 'text'" in str(err.value)


def test_text_of_the_wrong_type(tmp_path: Path) -> None:
    err = edited_error(tmp_path, 1, "text", 12345)
    assert (err.line, err.field) == (2, "text")
    assert "expected text (a string), found an integer" in str(err)
    assert "12345" not in str(err)


def test_blank_text(tmp_path: Path) -> None:
    assert "line 1, field 'text': text is empty" in str(edited_error(tmp_path, 0, "text", "   "))


def test_null_label(tmp_path: Path) -> None:
    err = edited_error(tmp_path, 3, "label", None)
    assert (err.line, err.field) == (4, "label")
    assert "label is missing (null)" in str(err)


def test_label_of_the_wrong_type(tmp_path: Path) -> None:
    err = edited_error(tmp_path, 1, "label", 0.5)
    assert "line 2, field 'label': expected a label that is a string, integer or boolean" in str(err)


def test_sensitive_value_may_be_null_but_not_a_list(tmp_path: Path) -> None:
    records = rows()
    records[0]["region"] = None
    load(write_jsonl(tmp_path / "train.jsonl", records), config(tmp_path))  # null = unknown group
    records[2]["region"] = ["n", "s"]
    with pytest.raises(DataError, match="line 3, field 'region': expected a single value"):
        load(write_jsonl(tmp_path / "train.jsonl", records), config(tmp_path))


@pytest.mark.parametrize("keep_records", [True, False])  # False: the streamed check of a training file
def test_duplicate_ids_name_both_lines(tmp_path: Path, keep_records: bool) -> None:
    records = rows(6)
    records[4]["id"] = "r1"
    records[5]["id"] = "r0"  # a later repeat: the first duplicate in file order is the one named
    with pytest.raises(DataError) as err:
        load_dataset(write_jsonl(tmp_path / "train.jsonl", records), config(tmp_path), "train", "classification",
                     keep_records=keep_records)
    assert (err.value.line, err.value.field) == (5, "id")
    assert "duplicate record id: the same id as line 2" in str(err.value)


@pytest.mark.parametrize("keep_records", [True, False])
def test_integer_and_string_ids_that_print_alike_are_duplicates(tmp_path: Path, keep_records: bool) -> None:
    records = rows(3)
    records[0]["id"], records[2]["id"] = 7, "7"
    with pytest.raises(DataError, match="line 3, field 'id': duplicate record id: the same id as line 1"):
        load_dataset(write_jsonl(tmp_path / "train.jsonl", records), config(tmp_path), "train", "classification",
                     keep_records=keep_records)


def test_a_streamed_file_keeps_no_records_or_ids_and_visits_each_record(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    data = load_dataset(write_jsonl(tmp_path / "train.jsonl", rows()), config(tmp_path), "train", "classification",
                        keep_records=False, visit=lambda i, r: seen.append((i, r["text"])))
    assert (data.records, data.ids, data.locations) == ([], [], [])
    assert len(data) == data.file.rows == 4
    assert seen == [(f"r{i}", f"message number {i}") for i in range(4)]
    assert data.file.fingerprint == load(tmp_path / "train.jsonl", config(tmp_path)).file.fingerprint


def test_null_id(tmp_path: Path) -> None:
    records = rows(3)
    records[1]["id"] = None
    with pytest.raises(DataError, match="line 2, field 'id': record id is missing"):
        load(write_jsonl(tmp_path / "train.jsonl", records), config(tmp_path))


def test_without_an_id_column_the_line_is_the_id(tmp_path: Path) -> None:
    records = [{k: v for k, v in r.items() if k != "id"} for r in rows()]
    data = load(write_jsonl(tmp_path / "train.jsonl", records), config(tmp_path, id_column=None))
    assert data.ids == ["1", "2", "3", "4"]


def test_causal_lm_with_prompt_and_completion_needs_no_label_or_text(tmp_path: Path) -> None:
    records = [{"id": str(i), "prompt": f"question {i}", "completion": f"answer {i}", "region": None} for i in range(3)]
    cfg = config(tmp_path, label_column=None, prompt_column="prompt", completion_column="completion")
    data = load(write_jsonl(tmp_path / "train.jsonl", records), cfg, task="causal-lm")
    assert data.labels == {}
    assert data.texts(cfg)[0] == "question 0\nanswer 0"
    records[1]["completion"] = ""
    with pytest.raises(DataError, match="line 2, field 'completion'"):
        load(write_jsonl(tmp_path / "train.jsonl", records), cfg, task="causal-lm")


def test_same_data_in_jsonl_csv_and_parquet_has_the_same_fingerprint(tmp_path: Path) -> None:
    records = rows(50)
    records[3]["region"] = None
    records[5]["text"] = 'with "quotes", commas,\nnewlines and ünïcödé'
    paths = {fmt: tmp_path / f"train.{fmt}" for fmt in ("jsonl", "csv", "parquet")}
    for fmt, path in paths.items():
        write_records(path, records, fmt)
    loaded = {fmt: load(path, config(tmp_path)) for fmt, path in paths.items()}
    fingerprints = {d.file.fingerprint for d in loaded.values()}
    assert len(fingerprints) == 1, fingerprints
    assert len({d.file.sha256 for d in loaded.values()}) == 3, "the byte digests differ by format"
    assert fingerprint_file(paths["csv"]) == loaded["jsonl"].file.fingerprint
    assert {d.file.rows for d in loaded.values()} == {50}


def test_fingerprint_changes_with_content_and_order(tmp_path: Path) -> None:
    base = load(write_jsonl(tmp_path / "train.jsonl", rows()), config(tmp_path)).file.fingerprint
    changed = rows()
    changed[2]["text"] += "!"
    assert load(write_jsonl(tmp_path / "train.jsonl", changed), config(tmp_path)).file.fingerprint != base
    assert load(write_jsonl(tmp_path / "train.jsonl", rows()[::-1]), config(tmp_path)).file.fingerprint != base
    reordered_keys = [dict(reversed(list(r.items()))) for r in rows()]
    assert load(write_jsonl(tmp_path / "train.jsonl", reordered_keys), config(tmp_path)).file.fingerprint == base


def test_typed_jsonl_values_normalise_like_csv_text() -> None:
    assert canonical_value(3) == "3"
    assert canonical_value(True) == "true"
    assert canonical_value("") is None
    assert canonical_value(1.5) == "1.5"
    assert label_name(1) == label_name("1") == "1"
    with pytest.raises(ValueError):
        label_name(None)


def test_integer_labels_in_jsonl_and_string_labels_in_csv_are_the_same_classes(tmp_path: Path) -> None:
    records = [{"id": str(i), "text": f"text {i}", "label": i % 2, "region": "n"} for i in range(4)]
    write_jsonl(tmp_path / "train.jsonl", records)
    write_records(tmp_path / "train.csv", records, "csv")
    jsonl = load(tmp_path / "train.jsonl", config(tmp_path))
    csv = load(tmp_path / "train.csv", config(tmp_path))
    assert jsonl.labels == csv.labels == {"0": 2, "1": 2}
    assert jsonl.file.fingerprint == csv.file.fingerprint
