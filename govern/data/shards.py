"""A data set written as shards plus a manifest, read back like one file.

Redaction on Ray (:mod:`govern.pii.ray_backend`) writes its copy in parallel, one shard per task. The
stages after it (training, the audits) read their data with :func:`govern.data.io.iter_records`; when
the path they are given is a manifest (``*.shards.json``), that reads the shards in manifest order as
one stream of records, so no stage needs to know the data was sharded.

Why a manifest and not "every file in a folder": it fixes the order of the shards (the order of the
records, and so the fingerprint), and it carries each shard's sha256 and record count, which the
reader checks — a shard swapped, truncated or edited after the run is an error naming it, not
silently different training data. The manifest's own sha256 (what the lineage DB records as the
artifact digest) thereby covers every byte of every shard.

Locations: as if the shards were one file concatenated in order — a record's location is its location
in its shard plus the last location of every shard before it (JSONL: the line of the concatenation;
Parquet: the row index). Unique and stable, which is what findings, errors and audits need.

The content fingerprint (:func:`govern.data.validate.fingerprint_file`) is a hash over the records in
order, so it does not depend on how the records were split: one file and the same records in 8 shards
have the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from govern.config import FileFormat
from govern.errors import DataError

MANIFEST_SUFFIX = ".shards.json"
MANIFEST_KIND: Literal["govern.shards/v1"] = "govern.shards/v1"


class ShardEntry(BaseModel):
    """One shard: where it is (relative to the manifest's folder), its bytes and its records."""

    path: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    records: int = Field(ge=0)
    size_bytes: int = Field(ge=0)


class ShardManifest(BaseModel):
    """The manifest file: the shards in record order, their format, and the totals."""

    kind: Literal["govern.shards/v1"] = MANIFEST_KIND
    format: FileFormat
    records: int = Field(ge=0)
    shards: list[ShardEntry]


def is_manifest(path: Path) -> bool:
    return Path(path).name.endswith(MANIFEST_SUFFIX)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path) -> ShardManifest:
    """The manifest at ``path``, or a :class:`DataError` saying what is wrong with it."""
    try:
        return ShardManifest.model_validate_json(Path(path).read_bytes())
    except OSError as exc:
        raise DataError(path, f"cannot read the shard manifest ({exc.strerror})") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise DataError(path, f"not a valid shard manifest: {first['msg']}", field=where) from None


def shard_entry(path: Path, records: int, folder: Path) -> ShardEntry:
    """The manifest entry of a shard just written (``folder``: the manifest's folder)."""
    return ShardEntry(path=Path(path).relative_to(folder).as_posix(), sha256=_sha256(path), records=records,
                      size_bytes=Path(path).stat().st_size)


def write_manifest(path: Path, fmt: FileFormat, shards: list[ShardEntry]) -> ShardManifest:
    """Write the manifest atomically (temp file, rename): readers never see a half-written one."""
    manifest = ShardManifest(format=fmt, records=sum(s.records for s in shards), shards=shards)
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=Path(path).parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest.model_dump(mode="json"), fh, indent=1)
        fh.write("\n")
    os.replace(tmp, path)
    return manifest


def iter_sharded(path: Path, batch_size: int = 1000, max_record_bytes: int | None = None
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every record of every shard, in manifest order, each shard checked against its digest and count."""
    from govern.data.io import iter_records

    manifest = read_manifest(path)
    folder = Path(path).parent
    offset = 0
    for entry in manifest.shards:
        shard = (folder / entry.path).resolve()
        if folder.resolve() not in shard.parents:
            raise DataError(path, f"shard '{entry.path}' is outside the manifest's folder", field="shards")
        if not shard.is_file():
            raise DataError(shard, "shard listed in the manifest is missing")
        if _sha256(shard) != entry.sha256:
            raise DataError(shard, "shard does not match the sha256 in its manifest (changed since written)")
        count = 0
        last = 0
        for location, record in iter_records(shard, manifest.format, batch_size=batch_size,
                                             max_record_bytes=max_record_bytes):
            count += 1
            last = location
            yield offset + location, record
        if count != entry.records:
            raise DataError(shard, f"holds {count} records but its manifest says {entry.records}")
        # Parquet rows are 0-based: the next shard starts one past the last row
        offset += (last + 1 if manifest.format == "parquet" else last) if count else 0
