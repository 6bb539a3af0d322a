"""PII scanning on a Ray cluster (``govern scan --ray``, ``pii.backend: ray``): the same scan, spread out.

Why Ray Data and not a scheduler of our own: a team whose corpus takes hours on one box already runs a
cluster, and Ray Data gives streaming execution, back-pressure, actor pools and task retries for free.
The local process pool (:func:`govern.pii.scanner.scan_files`) stays the default; this module is only
imported where the Ray path is asked for, and Ray itself only inside its functions (the ``govern[ray]``
extra).

How results stay identical to the local scanner's:

* **reading** is a Ray Data :class:`~ray.data.Datasource` whose read tasks run govern's own reader
  (:func:`govern.data.io.iter_records` through the scanner's chunking and sampling): one read task per
  file, so a folder of shards is read in parallel, and every record keeps the location (line or row)
  the local scan gives it — Ray's own JSON/CSV readers infer types and drop line numbers;
* **scanning** is ``map_batches`` over an actor pool; each actor builds one
  :class:`~govern.pii.scanner.RecordScanner` (the analyzer and its recognizers, same offline set-up,
  same policy-driven entities) once, and scans one chunk per call;
* **results** come back in file and chunk order and are turned into the same :class:`PIIFindingRow`
  rows and :class:`ScanReport` as the local path (evidence built by the same function).

What leaves an actor is what leaves a local worker: location, field path, span, score, recognizer and
``HMAC(key, value)`` — never the text. The key goes to the actors as a constructor argument wrapped in
:class:`SealedKey`, whose ``repr`` hides it (Ray and Ray Data log operator and argument reprs), so it
travels only in Ray's in-memory task specs: no file, no environment variable, no log line.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from govern.data.io import Format, check_data_file, detect_format, location_kwargs
from govern.errors import DataError, GovernError
from govern.pii.keys import PIIKey
from govern.pii.scanner import (
    FileScan,
    Located,
    RecordScanner,
    ScanInput,
    ScanReport,
    ScanSettings,
    _chunks,
    build_evidence,
    display_path,
    finding_row,
)
from govern.policy.schema import SampleSpec
from govern.stage import NullProgress, PIIFindingRow, Progress, file_sha256

#: What ``--ray`` without an address means: start a Ray instance on this machine for the scan.
LOCAL_ADDRESS = "local"
EXTRA_HINT = "the Ray backend needs the govern[ray] extra: pip install 'govern[ray]'"
#: Ray's start-up waits, raised for a Ray started on this machine: on a busy small machine the raylet
#: and its agent take longer than Ray's defaults (the raylet then aborts and ``ray.init`` times out).
LOCAL_START_WAITS = {"RAY_raylet_start_wait_time_s": "180", "RAY_agent_register_timeout_ms": "180000"}


def import_ray() -> Any:
    """``ray`` (with Ray Data), or a :class:`GovernError` naming the extra that provides it."""
    try:
        import ray
        import ray.data  # noqa: F401  (ray[data]: pyarrow-backed datasets)
    except ImportError:
        raise GovernError(f"{EXTRA_HINT} (Ray is not installed)") from None
    return ray


class SealedKey:
    """Key bytes that do not show themselves: ``repr``/``str`` give only the key id, so a Ray log line
    that prints an actor's constructor arguments cannot leak the key. Pickles like any object (that is
    how it reaches the actors, inside Ray's in-memory task spec)."""

    __slots__ = ("key",)

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __repr__(self) -> str:
        return f"SealedKey(id={PIIKey(key=self.key).key_id})"

    __str__ = __repr__

    def __getstate__(self) -> bytes:
        return self.key

    def __setstate__(self, state: bytes) -> None:
        self.key = state


# ------------------------------------------------------------------------------------------ reading
def _read_file(index: int, path: str, fmt: Format, sample: SampleSpec | None,
               max_record_bytes: int) -> Iterator[Any]:
    """Blocks of one file: one row per scanner chunk (``file``, ``seq``, ``skipped``, pickled
    ``[(location, record), ...]``), or one row carrying the reader's error (no values in it)."""
    import pyarrow as pa

    seq = 0
    try:
        for chunk, skipped in _chunks(ScanInput("", Path(path), fmt), fmt, sample, max_record_bytes):
            yield pa.table({"file": [index], "seq": [seq], "skipped": [skipped],
                            "chunk": [pickle.dumps(chunk, protocol=5)], "error": [b""]})
            seq += 1
    except GovernError as exc:
        # Raised inside a Ray task it would be logged with its traceback and retried; as a row, the
        # driver reports it like the local scan does (file, line/record, field), in file order.
        problem = (exc.reason, exc.line, exc.record, exc.field) if isinstance(exc, DataError) else (
            str(exc), None, None, None)
        yield pa.table({"file": [index], "seq": [seq], "skipped": [0], "chunk": [b""],
                        "error": [pickle.dumps(problem)]})


def _record_source(files: list[tuple[str, Format]], sample: SampleSpec | None, max_record_bytes: int) -> Any:
    """A Ray Data datasource over ``files`` read by govern's reader (defined lazily: needs Ray)."""
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class GovernRecordSource(Datasource):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]  # Datasource.__init__ is unannotated in ray 2.60

        def estimate_inmemory_data_size(self) -> int | None:
            return sum(Path(p).stat().st_size for p, _ in files)

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            tasks = []
            for index, (path, fmt) in enumerate(files):
                meta = BlockMetadata(num_rows=None, size_bytes=Path(path).stat().st_size, exec_stats=None,
                                     input_files=(path,))

                def read(index: int = index, path: str = path, fmt: Format = fmt) -> Iterable[Any]:
                    return _read_file(index, path, fmt, sample, max_record_bytes)

                tasks.append(ReadTask(read, meta))
            return tasks

        def get_name(self) -> str:
            return "GovernRecords"

    return GovernRecordSource()


# ----------------------------------------------------------------------------------------- scanning
class ChunkScanActor:
    """One per actor process: builds the scanner (analyzer, recognizers) once, scans one chunk per call."""

    def __init__(self, settings_json: str, key: SealedKey, fingerprint_key: SealedKey | None) -> None:
        import warnings

        warnings.simplefilter("ignore")  # nothing of ours in the worker logs
        self._scanner = RecordScanner(ScanSettings.model_validate_json(settings_json), key.key,
                                      fingerprint_key.key if fingerprint_key is not None else None)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        records: list[int] = []
        findings: list[bytes] = []
        errors: list[bytes] = []
        for chunk_bytes, error in zip(batch["chunk"], batch["error"], strict=True):
            if error:  # the reader's error: pass it on
                records.append(0)
                findings.append(b"")
                errors.append(bytes(error))
                continue
            result = self._scanner.scan_chunk(pickle.loads(chunk_bytes))  # safe: bytes this driver pickled for its own actor, in Ray's object store, never read from a file
            records.append(result.records)
            findings.append(pickle.dumps([tuple(f) for f in result.findings], protocol=5))
            if result.error is not None:
                location, field, message = result.error
                errors.append(pickle.dumps(("scan", location, field, message)))
            else:
                errors.append(b"")
        return {"file": batch["file"], "seq": batch["seq"], "skipped": batch["skipped"],
                "records": records, "findings": findings, "error": errors}


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (or start a local one); True when this call started Ray."""
    if ray.is_initialized():  # a caller (or a test) already connected: use that cluster
        return False
    logging.getLogger("ray").setLevel(logging.WARNING)
    common = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address in (None, "", LOCAL_ADDRESS):
            import os

            for name, value in LOCAL_START_WAITS.items():  # a user's own setting wins
                os.environ.setdefault(name, value)
            ray.init(include_dashboard=False, **common)
        else:
            ray.init(address=address, **common)
    except Exception as exc:  # ConnectionError, RuntimeError...: name the address, not a traceback
        raise GovernError(f"cannot connect to the Ray cluster at {address or LOCAL_ADDRESS}: "
                          f"{type(exc).__name__}: {exc}") from None
    return True


def scan_files_ray(inputs: list[ScanInput], settings: ScanSettings, key: PIIKey,
                   progress: Progress | None = None, address: str | None = None, actors: int | None = None,
                   fingerprint_key: PIIKey | None = None) -> ScanReport:
    """:func:`govern.pii.scanner.scan_files` on Ray: same inputs, same :class:`ScanReport`.

    ``address``: a Ray cluster (``ray://host:10001``, ``host:6379``, ``auto``) or None/``local`` to
    start one on this machine (stopped again afterwards). ``actors``: scanner actors (default: one
    per CPU of the cluster).
    """
    ray = import_ray()
    progress = progress or NullProgress()
    began = time.perf_counter()
    resolved: list[tuple[ScanInput, Format]] = []
    for item in inputs:
        check_data_file(item.path)
        resolved.append((item, detect_format(item.path, item.format)))
    # The analyzer is built here too: it validates policy and engine before any cluster work, and
    # gives the evidence its engine, version, entities and actions (exactly what the actors use).
    analyzer = RecordScanner(settings, key.key).analyzer
    started = _connect(ray, address)
    try:
        rows, pool = _run(ray, resolved, settings, key, fingerprint_key, actors, progress)
    finally:
        if started:
            ray.shutdown()
    findings: list[PIIFindingRow] = []
    locations: list[int] = []
    fingerprints: list[str | None] = []
    files: list[FileScan] = []
    for index, (item, fmt) in enumerate(resolved):
        shown = display_path(item.path)
        total = scanned = 0
        for _, skipped, records, raw, error in rows.get(index, []):
            if error is not None:
                _raise(item.path, fmt, error)
            for f in (Located(*t) for t in raw):
                findings.append(finding_row(f, item.dataset, shown, fmt, analyzer.actions))
                locations.append(f.location)
                fingerprints.append(f.fingerprint_hmac)
            scanned += records
            total += records + skipped
        if total == 0:
            raise DataError(item.path, "no records to scan: the file is empty or holds only blank lines")
        files.append(FileScan(dataset=item.dataset, path=str(item.path), display_path=shown, format=fmt,
                              sha256=file_sha256(item.path), records_total=total, records_scanned=scanned))
    evidence = build_evidence(analyzer, settings.policy, files, findings, locations, key,
                              time.perf_counter() - began, workers=pool)
    from govern.pii.quality import quality_for_settings

    # Scored here, on the driver's analyzer: the labeled sample is small and must never reach the cluster.
    evidence = evidence.model_copy(update={"quality": quality_for_settings(analyzer, settings)})
    return ScanReport(evidence=evidence, findings=findings, record_locations=locations, files=files,
                      key_id=key.key_id, value_fingerprints=fingerprints if fingerprint_key is not None else [],
                      fingerprint_key_id=fingerprint_key.key_id if fingerprint_key is not None else None)


#: per file: (seq, skipped, records, findings as tuples, error or None), in chunk order
_Rows = dict[int, list[tuple[int, int, int, list[tuple[Any, ...]], tuple[Any, ...] | None]]]


def _run(ray: Any, resolved: list[tuple[ScanInput, Format]], settings: ScanSettings, key: PIIKey,
         fingerprint_key: PIIKey | None, actors: int | None, progress: Progress) -> tuple[_Rows, int]:
    """Run the read → scan pipeline; the rows per file, and the number of scanner actors."""
    from ray.data import DataContext

    # Ray Data logs each execution's start, end and settings at INFO/WARNING: noise on govern's stderr.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # ours has records/s; Ray's would interleave with it
    context.print_on_execution_start = False
    context.execution_options.preserve_order = True
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    pool = actors or cpus
    source = _record_source([(str(item.path), fmt) for item, fmt in resolved], settings.policy.sample,
                            settings.max_record_bytes)
    # Read tasks take no CPU slot: parsing is cheap next to analysis, and with every CPU held by a
    # scanner actor a read task needing one would never be scheduled.
    dataset = ray.data.read_datasource(source, num_cpus=0).map_batches(
        ChunkScanActor, batch_size=1, batch_format="numpy", num_cpus=1,
        # Ray Data's actor pools restart a lost actor and re-run its chunk (max_restarts=-1 by default)
        compute=ray.data.ActorPoolStrategy(size=pool),
        fn_constructor_args=(settings.model_dump_json(), SealedKey(key.key),
                             SealedKey(fingerprint_key.key) if fingerprint_key is not None else None),
    )
    rows: _Rows = {}
    task = progress.task("PII scan on Ray", total=None, unit="records")
    try:
        for row in dataset.iter_rows():
            error = pickle.loads(row["error"]) if row["error"] else None  # safe: our own actor's result, in memory
            raw = pickle.loads(row["findings"]) if row["findings"] else []  # safe: our own actor's result, in memory
            rows.setdefault(int(row["file"]), []).append(
                (int(row["seq"]), int(row["skipped"]), int(row["records"]), raw, error))
            task.advance(int(row["records"]))
    finally:
        task.close()
    for chunks in rows.values():
        chunks.sort(key=lambda c: c[0])  # chunk order, whatever order Ray delivered them in
    return rows, pool


def _raise(path: Path, fmt: Format, error: tuple[Any, ...]) -> None:
    if error[0] == "scan":  # the scanner's (location, field, message), as the local path raises it
        _, location, field, message = error
        raise DataError(path, message, field=field, **location_kwargs(fmt, location))
    message, line, record, field = error
    raise DataError(path, message, line=line, record=record, field=field)


def ray_address(configured: str | None) -> str:
    """The cluster to use: the configured address, else ``$RAY_ADDRESS`` (Ray's own convention, what
    ``ray start`` tells you to export), else ``local``."""
    import os

    return configured or os.environ.get("RAY_ADDRESS") or LOCAL_ADDRESS


# ---------------------------------------------------------------------------------------- redaction
def _read_groups(path: str, fmt: Format, per_shard: int) -> Iterator[Any]:
    """Blocks of one file for redaction: one row per output shard (``seq``, pickled records)."""
    import pyarrow as pa

    from govern.data.io import iter_records

    group: list[tuple[int, dict[str, Any]]] = []
    seq = 0
    for located in iter_records(Path(path), fmt):
        group.append(located)
        if len(group) >= per_shard:
            yield pa.table({"seq": [seq], "chunk": [pickle.dumps(group, protocol=5)]})
            group, seq = [], seq + 1
    if group or seq == 0:  # an empty file still gets one (empty) shard: the manifest lists it
        yield pa.table({"seq": [seq], "chunk": [pickle.dumps(group, protocol=5)]})


def _group_source(path: Path, fmt: Format, per_shard: int) -> Any:
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class GovernShardGroups(Datasource):
        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]  # Datasource.__init__ is unannotated in ray 2.60

        def estimate_inmemory_data_size(self) -> int | None:
            return path.stat().st_size

        def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                           data_context: Any = None) -> list[Any]:
            meta = BlockMetadata(num_rows=None, size_bytes=path.stat().st_size, exec_stats=None,
                                 input_files=(str(path),))
            return [ReadTask(lambda: _read_groups(str(path), fmt, per_shard), meta)]

        def get_name(self) -> str:
            return "GovernShardGroups"

    return GovernShardGroups()


def _redact_shard(batch: dict[str, Any], *, out_dir: str, name: str, suffix: str, fmt: Format,
                  redaction: dict[str, Any]) -> dict[str, Any]:
    """A Ray task: redact one group of records and write it as one shard; returns its manifest entry."""
    from govern.data.io import write_records
    from govern.data.shards import shard_entry
    from govern.pii.redact import redact_records

    entries: list[str] = []
    for seq, chunk in zip(batch["seq"], batch["chunk"], strict=True):
        target = Path(out_dir) / f"{name}-{int(seq):05d}{suffix}"
        count = write_records(target, redact_records(pickle.loads(chunk), **redaction), fmt)  # safe: chunk pickled by this driver
        entries.append(shard_entry(target, count, Path(out_dir)).model_dump_json())
    return {"seq": batch["seq"], "entry": entries}


def redact_on_ray(source: Path, fmt: Format, out_dir: Path, name: str,
                  findings: list[tuple[int, PIIFindingRow]], *, mode: str, key: PIIKey, table: Any,
                  columns: list[str] | None = None, exclude_columns: list[str] | None = None,
                  pseudonym_fields: set[str] | None = None,
                  key_findings: list[tuple[int, PIIFindingRow]] | None = None,
                  records: int, shards: int | None = None, address: str | None = None) -> tuple[Path, int]:
    """:func:`govern.pii.redact.redact_file` on Ray: ``source`` redacted into ``shards`` shards under
    ``out_dir`` (one Ray task each) plus the manifest ``<name>.shards.json`` that every later stage
    reads as one file (:mod:`govern.data.shards`). ``records``: the file's record count (from the
    scan), to size the shards. Returns the manifest's path and the number of records written.

    ``table`` is the data set's :class:`~govern.pii.redact.PseudonymTable`. Its numbers are fixed here,
    in the driver, in finding order, before any shard is redacted: shards run in parallel, and "the
    same value gets the same token everywhere" must not depend on which shard ran first.
    """
    from govern.data.shards import MANIFEST_SUFFIX, ShardEntry, write_manifest

    ray = import_ray()
    for _, row in findings:
        table.reserve(row.entity_type, row.value_hmac)
    started = _connect(ray, address)
    try:
        from ray.data import DataContext

        logging.getLogger("ray.data").setLevel(logging.ERROR)
        DataContext.get_current().enable_progress_bars = False
        n = shards or max(1, int(ray.cluster_resources().get("CPU", 1)))
        per_shard = max(1, -(-records // n))
        out_dir.mkdir(parents=True, exist_ok=True)
        redaction = {"findings": findings, "mode": mode, "key": key, "table": table, "columns": columns,
                     "exclude_columns": exclude_columns, "pseudonym_fields": pseudonym_fields,
                     "key_findings": key_findings}
        dataset = ray.data.read_datasource(_group_source(source, fmt, per_shard), num_cpus=0).map_batches(
            _redact_shard, batch_size=1, batch_format="numpy",
            fn_kwargs={"out_dir": str(out_dir), "name": name, "suffix": source.suffix or f".{fmt}", "fmt": fmt,
                       "redaction": redaction})
        entries = sorted(((int(r["seq"]), ShardEntry.model_validate_json(r["entry"]))
                          for r in dataset.iter_rows()), key=lambda e: e[0])
    finally:
        if started:
            ray.shutdown()
    manifest_path = out_dir / f"{name}{MANIFEST_SUFFIX}"
    manifest = write_manifest(manifest_path, fmt, [e for _, e in entries])
    return manifest_path, manifest.records


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connected to Ray for the duration (one start for a stage's scan and redactions, not three);
    stopped again at the end only when started here."""
    ray = import_ray()
    started = _connect(ray, address)
    try:
        yield
    finally:
        if started:
            ray.shutdown()
