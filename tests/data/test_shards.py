"""A data set as shards plus a manifest reads like one file: same records, same fingerprint, checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from govern.data.io import iter_records, read_records, write_records
from govern.data.shards import shard_entry, write_manifest
from govern.data.validate import fingerprint_file
from govern.errors import DataError


def _records(n: int = 1000) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "text": f"order {i} arrived {'late' if i % 3 else 'on time'}", "label": i % 2,
             "meta": {"n": i}} for i in range(n)]


def _shard(records: list[dict[str, Any]], folder: Path, n: int, fmt: str, suffix: str) -> Path:
    folder.mkdir()
    size = -(-len(records) // n)
    entries = []
    for i in range(n):
        part = folder / f"part-{i:05d}{suffix}"
        count = write_records(part, records[i * size:(i + 1) * size], fmt)
        entries.append(shard_entry(part, count, folder))
    manifest = folder / "train.shards.json"
    write_manifest(manifest, fmt, entries)  # type: ignore[arg-type]  # fmt: a parametrized Format
    return manifest


@pytest.mark.parametrize(("fmt", "suffix"), [("jsonl", ".jsonl"), ("parquet", ".parquet"), ("csv", ".csv")])
def test_one_file_and_eight_shards_have_the_same_fingerprint_and_records(tmp_path: Path, fmt: str,
                                                                         suffix: str) -> None:
    records = _records() if fmt != "csv" else [{k: str(v) for k, v in r.items() if k != "meta"} for r in _records()]
    single = tmp_path / f"train{suffix}"
    write_records(single, records, fmt)
    manifest = _shard(records, tmp_path / "shards", 8, fmt, suffix)
    assert len(json.loads(manifest.read_text())["shards"]) == 8
    assert fingerprint_file(manifest, fmt) == fingerprint_file(single, fmt)
    assert read_records(manifest, fmt) == read_records(single, fmt)  # training reads it like one file
    locations = [loc for loc, _ in iter_records(manifest, fmt)]
    assert len(set(locations)) == len(records) and locations == sorted(locations)
    if fmt != "csv":  # JSONL lines / Parquet rows of the concatenation
        assert locations == [loc for loc, _ in iter_records(single, fmt)]


def test_a_changed_shard_is_an_error_naming_it(tmp_path: Path) -> None:
    manifest = _shard(_records(), tmp_path / "shards", 4, "jsonl", ".jsonl")
    part = tmp_path / "shards" / "part-00002.jsonl"
    part.write_text(part.read_text().replace("late", "LATE", 1))
    with pytest.raises(DataError) as info:
        read_records(manifest, "jsonl")
    assert info.value.file.endswith("part-00002.jsonl") and "sha256" in str(info.value)


def test_a_missing_shard_or_a_broken_manifest_is_a_clear_error(tmp_path: Path) -> None:
    manifest = _shard(_records(), tmp_path / "shards", 4, "jsonl", ".jsonl")
    (tmp_path / "shards" / "part-00003.jsonl").unlink()
    with pytest.raises(DataError, match="missing"):
        read_records(manifest, "jsonl")
    manifest.write_text('{"kind": "govern.shards/v1", "format": "jsonl", "records": "many", "shards": []}')
    with pytest.raises(DataError) as info:
        read_records(manifest, "jsonl")
    assert info.value.field == "records" and "not a valid shard manifest" in str(info.value)


def test_a_shard_outside_the_manifest_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.jsonl"
    count = write_records(outside, _records(10), "jsonl")
    folder = tmp_path / "shards"
    folder.mkdir()
    entry = shard_entry(outside, count, tmp_path).model_copy(update={"path": "../elsewhere.jsonl"})
    manifest = folder / "x.shards.json"
    write_manifest(manifest, "jsonl", [entry])
    with pytest.raises(DataError, match="outside"):
        read_records(manifest, "jsonl")
