"""Streaming, batched, multi-process PII scanning of record files.

How it is fast without changing results:

* **constant memory**: records stream from :func:`govern.data.io.iter_records` in chunks; at most
  ``2 × workers`` chunks are in flight;
* **processes**: chunks go to a process pool whose workers inherit an analyzer built once in the
  parent (``fork`` on Linux: no re-import of Presidio/spaCy per worker, no per-chunk set-up); small
  inputs (< ``IN_PROCESS_BYTES``) are scanned in-process, where starting a pool costs more than it saves;
* **cheap exact pre-filter**: each text is analysed only for the entities that can occur in it (no
  digit → no card, SSN, IBAN or phone; no ``@`` → no e-mail), see
  :meth:`~govern.pii.analyzer.ConfiguredAnalyzer.candidate_entities`;
* **batched NLP** for the spacy engine (``nlp.pipe`` over a chunk's texts).

What leaves a worker is a location, a field path, a span, a score, a recognizer name and
``HMAC(key, value)`` — never the matched text.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, Field

from govern.config import DEFAULT_MAX_RECORD_BYTES
from govern.data.io import (
    SUFFIX_FORMATS,
    Format,
    check_data_file,
    detect_format,
    iter_records,
    location_kwargs,
    safe_resolve,
)
from govern.errors import DataError, GovernError
from govern.evidence import PIICount, PIIEvidence
from govern.pii.analyzer import (
    DEFAULT_SPACY_MODEL,
    LANGUAGE,
    ConfiguredAnalyzer,
    build_analyzer,
    resolve_overlaps,
)
from govern.pii.keys import PIIKey, value_hmac
from govern.policy.schema import PIIAction, PIIPolicy, Policy, SampleSpec
from govern.stage import NullProgress, PIIFindingRow, PIIMatch, Progress, file_sha256

#: Records per chunk sent to a worker (large enough to amortise IPC, small enough for smooth progress).
CHUNK_RECORDS = 256
#: Inputs smaller than this (all files together) are scanned in the calling process: starting a pool
#: costs more than it saves. spaCy is ~20× slower per record, so it pays off much sooner.
IN_PROCESS_BYTES = 2 << 20
IN_PROCESS_BYTES_NER = 128 << 10
#: Texts longer than this are analysed in overlapping windows (spaCy refuses > 1M characters, and
#: regex work stays bounded); a match up to ``WINDOW_OVERLAP`` characters long is never cut.
WINDOW_CHARS = 100_000
WINDOW_OVERLAP = 2_000
#: spaCy batch size for nlp.pipe
NLP_BATCH = 64


# ------------------------------------------------------------------------------------------ models
class FileScan(BaseModel):
    """One scanned file."""

    dataset: str
    path: str
    display_path: str = Field(description="Relative to the working directory when inside it (SARIF uri).")
    format: Format
    sha256: str
    records_total: int
    records_scanned: int


class ScanReport(BaseModel):
    """Everything a scan found, without values: evidence, finding rows and where they are."""

    evidence: PIIEvidence
    findings: list[PIIFindingRow] = Field(default_factory=list)
    #: parallel to ``findings``: 1-based line (JSONL/CSV) or 0-based row index (Parquet)
    record_locations: list[int] = Field(default_factory=list)
    files: list[FileScan] = Field(default_factory=list)
    key_id: str
    #: parallel to ``findings`` when scanned with a fingerprint key: each value's HMAC under that key.
    #: Only the SARIF rendering reads it (hashed again with the location); never dumped, never stored.
    value_fingerprints: list[str | None] = Field(default_factory=list, exclude=True)
    fingerprint_key_id: str | None = None
    #: parallel to ``findings`` (filled by :func:`scan_paths`): 1-based start and end column (code points,
    #: end exclusive) of the match in its JSONL/CSV line where it is located exactly, else None
    columns: list[tuple[int, int] | None] = Field(default_factory=list)

    @property
    def blocked(self) -> bool:
        """True when a finding's policy action is block (``govern scan`` exits 1)."""
        return any(self.evidence.blocked.values())


class ScanSettings(BaseModel):
    """What the scanner needs to know, besides the key (kept out of any model that could be dumped)."""

    policy: PIIPolicy
    engine: str
    spacy_model: str = DEFAULT_SPACY_MODEL
    #: scan exactly these columns; None = every column except ``exclude_columns``
    columns: list[str] | None = None
    exclude_columns: list[str] = Field(default_factory=list)
    id_column: str | None = None
    policy_file: str = "<policy>"
    #: a larger record is an error naming its line (see :func:`govern.data.io.iter_records`)
    max_record_bytes: int = Field(default=DEFAULT_MAX_RECORD_BYTES, ge=1)
    #: labeled sample to score the scan on (``govern scan --quality``); None: the policy's pii.quality.sample
    quality_sample: str | None = None


class Located(NamedTuple):
    """A match as a scan worker produces it: where it sits (``location`` is the line, or the Parquet row) and
    what matched, before :func:`finding_row` names the data set and file and the policy's action.

    A NamedTuple on purpose: one is made per match in the workers' hot loop and every chunk's findings cross
    a process (or Ray) boundary, so the wrapper stays cheap to build and to pickle.
    """

    location: int
    record_id: str | None
    field: str
    match: PIIMatch
    #: HMAC of the value under the SARIF fingerprint key (``govern scan --fingerprint-key-file``): kept in
    #: memory for the SARIF rendering only, never stored (the DB has ``match.value_hmac``)
    fingerprint_hmac: str | None = None


@dataclass
class ChunkResult:
    findings: list[Located]
    records: int
    #: (location, field, message) of the first record that could not be scanned
    error: tuple[int, str | None, str] | None = None


# ------------------------------------------------------------------------------------ field access
#: Ends the field path of a finding in an object *key*: ``meta.<EMAIL_ADDRESS>#key`` is the key, and
#: ``meta.<EMAIL_ADDRESS>`` the value stored under it.
KEY_MARKER = "#key"


class KeyHit(Protocol):
    """What the walk needs of a finding in a key: its entity and span (scanner hits and stored
    :class:`PIIFindingRow` rows both qualify)."""

    @property
    def entity_type(self) -> str: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


#: ``(path of the object, raw key) -> findings in that key``
KeyHits = Callable[[str, str], Sequence[KeyHit]]


class FieldText(NamedTuple):
    """One scannable leaf. For a value, ``container[key]`` holds ``text`` (where the redactor writes).
    For a key (``is_key``), ``key`` is the raw key of ``container``, ``text`` its redacted name (what
    ``path`` shows and the redacted copy uses), ``hits`` the findings in it."""

    path: str
    container: Any
    key: Any
    text: str
    is_key: bool = False
    hits: Sequence[KeyHit] = ()


def redact_key_text(key: str, hits: Sequence[KeyHit]) -> str:
    """``key`` with every finding's span replaced by ``<ENTITY_TYPE>`` (overlaps: the first wins)."""
    parts: list[str] = []
    pos = 0
    for h in sorted(hits, key=lambda h: (h.start, -h.end)):
        if h.start < pos:
            continue
        parts += [key[pos:h.start], f"<{h.entity_type}>"]
        pos = h.end
    parts.append(key[pos:])
    return "".join(parts)


def key_names(path: str, keys: Sequence[Any], key_hits: KeyHits | None) -> dict[Any, tuple[str, Sequence[KeyHit]]]:
    """Redacted name and findings of every key of one object that holds personal data.

    Two keys that redact alike (``a@x.org`` and ``b@y.org`` both become ``<EMAIL_ADDRESS>``), or a
    redacted name that equals a key kept as it is, would merge two values into one — in field paths
    and in the redacted copy. So names are made unique in key order: ``<EMAIL_ADDRESS>``,
    ``<EMAIL_ADDRESS> (2)``, ... The scanner and the redactor both call this, so a field path is
    exactly the value's path in the redacted copy.
    """
    if key_hits is None:
        return {}
    found = {k: key_hits(path, k) for k in keys if isinstance(k, str)}
    verbatim = {str(k) for k in keys if not found.get(k)}
    used: set[str] = set()
    names: dict[Any, tuple[str, Sequence[KeyHit]]] = {}
    for k in keys:
        hits = found.get(k)
        if not hits:
            continue
        base = redact_key_text(k, hits)
        name, n = base, 2
        while name in verbatim or name in used:
            name, n = f"{base} ({n})", n + 1
        used.add(name)
        names[k] = (name, hits)
    return names


def iter_field_texts(record: dict[str, Any], columns: list[str] | None, exclude: list[str],
                     key_hits: KeyHits | None = None) -> Iterator[FieldText]:
    """Yield a :class:`FieldText` for every scannable leaf, values and (with ``key_hits``) keys.

    Strings are scanned as they are; numbers as their decimal text (a phone or card number stored as
    an integer is still personal data); nested objects and lists are walked (``meta.email``,
    ``tags[2]``); null and booleans cannot hold PII and are skipped.

    Object keys can hold personal data too (``{"meta": {"someone@example.org": 1}}``). ``key_hits``
    says which do; such a key appears in every path by its redacted name (``meta.<EMAIL_ADDRESS>``),
    never as itself, and is yielded as a leaf of its own (``meta.<EMAIL_ADDRESS>#key``).
    """
    keys = columns if columns is not None else [k for k in record if k not in exclude]
    yield from _walk_object("", record, [k for k in keys if k in record], key_hits)


def _walk_object(path: str, container: dict[str, Any], keys: Sequence[Any],
                 key_hits: KeyHits | None) -> Iterator[FieldText]:
    names = key_names(path, keys, key_hits)
    for k in keys:
        renamed = names.get(k)
        segment = renamed[0] if renamed else str(k)
        child = f"{path}.{segment}" if path else segment
        if renamed:
            yield FieldText(child + KEY_MARKER, container, k, segment, True, renamed[1])
        yield from _walk(child, container, k, key_hits)


def _walk(path: str, container: Any, key: Any, key_hits: KeyHits | None) -> Iterator[FieldText]:
    value = container[key]
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        yield FieldText(path, container, key, value)
    elif isinstance(value, dict):
        yield from _walk_object(path, value, list(value), key_hits)
    elif isinstance(value, list):
        for i in range(len(value)):
            yield from _walk(f"{path}[{i}]", value, i, key_hits)
    elif isinstance(value, (bytes, bytearray)):
        try:
            yield FieldText(path, container, key, bytes(value).decode("utf-8"))
        except UnicodeDecodeError:
            raise _FieldProblem(path, "binary value that is not UTF-8 text cannot be scanned") from None
    else:  # int, float, Decimal, dates from Parquet...
        yield FieldText(path, container, key, str(value))


def finding_row(f: Located, dataset: str, shown: str, fmt: Format, actions: Mapping[str, PIIAction]) -> PIIFindingRow:
    """A scanner finding as stored (one place for both the local pool and the Ray backend): a Parquet row has
    no line, so it is named by its row in ``record_id`` when the data has no id column."""
    record_id = f.record_id
    if record_id is None and fmt == "parquet":
        record_id = f"row {f.location}"
    # model_construct: every value comes from a PIIMatch this module built, and this runs once per finding
    return PIIFindingRow.model_construct(dataset=dataset, file=shown, record_id=record_id,
                                         line=f.location if fmt != "parquet" else None, field=f.field,
                                         action=actions[f.match.entity_type], **f.match.__dict__)


class _KeyFailure(Exception):
    def __init__(self, location: int, error: str) -> None:
        super().__init__(error)
        self.location = location
        self.error = error


class _FieldProblem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _windows(text: str) -> Iterator[tuple[int, str]]:
    if len(text) <= WINDOW_CHARS:
        yield 0, text
        return
    step = WINDOW_CHARS - WINDOW_OVERLAP
    for offset in range(0, len(text), step):
        yield offset, text[offset:offset + WINDOW_CHARS]
        if offset + WINDOW_CHARS >= len(text):
            break


# ----------------------------------------------------------------------------------------- scanner
class RecordScanner:
    """Scans chunks of records with one analyzer. Built once per process."""

    def __init__(self, settings: ScanSettings, key: bytes, fingerprint_key: bytes | None = None) -> None:
        self.settings = settings
        self._key = key
        self._fingerprint_key = fingerprint_key
        self.analyzer: ConfiguredAnalyzer = build_analyzer(
            settings.policy, settings.engine, settings.spacy_model, policy_file=settings.policy_file
        )
        self._recognizers: dict[tuple[str, ...], list[Any]] = {}

    def scan_chunk(self, chunk: list[tuple[int, dict[str, Any]]]) -> ChunkResult:
        findings: list[Located] = []
        # (location, record_id, field, window offset, window text) of every text to analyse
        jobs: list[tuple[int, str | None, str, int, str]] = []
        s = self.settings
        try:
            key_hits = self._key_hits(chunk)
        except _KeyFailure as exc:
            return ChunkResult([], 0, (exc.location, None, "PII analyzer failed on an object key "
                                                           f"({exc.error})"))
        for location, record in chunk:
            record_id = None
            if s.id_column is not None and record.get(s.id_column) is not None:
                record_id = str(record[s.id_column])
            try:
                for leaf in iter_field_texts(record, s.columns, s.exclude_columns, key_hits):
                    if leaf.is_key:  # already analysed (once per distinct key of the chunk)
                        findings.extend(Located(location, record_id, leaf.path, h,
                                                self._fingerprint(h.entity_type, leaf.key[h.start:h.end]))
                                        for h in leaf.hits if isinstance(h, PIIMatch))
                        continue
                    for offset, window in _windows(leaf.text):
                        jobs.append((location, record_id, leaf.path, offset, window))
            except _FieldProblem as exc:
                return ChunkResult([], 0, (location, exc.field, exc.message))
        try:
            results = self._analyze([j[4] for j in jobs])
        except Exception as exc:  # a recognizer crashed: report where, never the text
            location, field = self._locate_failure(jobs)
            return ChunkResult([], 0, (location, field, f"PII analyzer failed ({type(exc).__name__})"))
        seen: set[tuple[int, str, str, int, int]] = set()
        id_hits: set[int] = set()
        for (location, record_id, path, offset, window), found in zip(jobs, results, strict=True):
            for r in found:
                start, end = r.start + offset, r.end + offset
                dedupe = (location, path, r.entity_type, start, end)
                if dedupe in seen:  # the same match seen in two overlapping windows
                    continue
                seen.add(dedupe)
                if path == s.id_column:
                    id_hits.add(location)
                value = window[r.start:r.end]
                findings.append(Located(location, record_id, path, self._match(r, start, end, value),
                                        self._fingerprint(r.entity_type, value)))
        if id_hits:  # an id that is itself personal data must not be stored as the record id
            findings = [f._replace(record_id=None) if f.location in id_hits else f for f in findings]
        return ChunkResult(findings, len(chunk))

    def _key_hits(self, chunk: list[tuple[int, dict[str, Any]]]) -> KeyHits:
        """Analyse every distinct object key of the chunk once (keys repeat across records: ``text``,
        ``label``...) and answer, for the walk, which of them hold personal data."""
        s = self.settings
        distinct: dict[str, int] = {}  # key -> location of the first record that has it
        for location, record in chunk:
            top = s.columns if s.columns is not None else [k for k in record if k not in s.exclude_columns]
            stack: list[Any] = []
            for k in top:
                if k in record:
                    distinct.setdefault(k, location)
                    stack.append(record[k])
            while stack:  # the keys of every nested object (what the walk will ask about)
                value = stack.pop()
                if isinstance(value, dict):
                    for k, v in value.items():
                        if isinstance(k, str):
                            distinct.setdefault(k, location)
                        stack.append(v)
                elif isinstance(value, list):
                    stack.extend(value)
        keys = list(distinct)
        try:
            analysed = self._analyze_texts(keys)
        except Exception as exc:
            failing = next((k for k in keys if not self._analyzes(k)), keys[0] if keys else "")
            raise _KeyFailure(distinct.get(failing, chunk[0][0] if chunk else 0), type(exc).__name__) from None
        found = {k: hits for k, hits in zip(keys, analysed, strict=True) if hits}
        return lambda _path, key: found.get(key, ())

    def _analyzes(self, text: str) -> bool:
        try:
            self._analyze_texts([text])
        except Exception:
            return False
        return True

    def _analyze_texts(self, texts: list[str]) -> list[list[PIIMatch]]:
        """Matches per text (long texts in overlapping windows, spans in the whole text); where the text is
        (location, record id, field) is the caller's to add."""
        jobs = [(i, offset, window) for i, text in enumerate(texts) for offset, window in _windows(text)]
        results = self._analyze([w for _, _, w in jobs]) if jobs else []
        out: list[list[PIIMatch]] = [[] for _ in texts]
        seen: set[tuple[int, str, int, int]] = set()
        for (i, offset, window), found in zip(jobs, results, strict=True):
            for r in found:
                start, end = r.start + offset, r.end + offset
                if (i, r.entity_type, start, end) in seen:
                    continue
                seen.add((i, r.entity_type, start, end))
                out[i].append(self._match(r, start, end, window[r.start:r.end]))
        return out

    def _match(self, r: Any, start: int, end: int, value: str) -> PIIMatch:
        """A Presidio ``RecognizerResult`` as a :class:`PIIMatch` (span in the whole text, value hashed)."""
        recognizer = (r.recognition_metadata or {}).get("recognizer_name") or "unknown"
        # model_construct: the values are typed here (one per match, in the workers' hot loop)
        return PIIMatch.model_construct(entity_type=str(r.entity_type), start=int(start), end=int(end),
                                        score=round(float(r.score), 4), recognizer=str(recognizer),
                                        value_hmac=value_hmac(self._key, r.entity_type, value))

    def _fingerprint(self, entity_type: str, value: str) -> str | None:
        """The value's HMAC under the fingerprint key, when one is set (SARIF only, never stored)."""
        return None if self._fingerprint_key is None else value_hmac(self._fingerprint_key, entity_type, value)

    def _analyze(self, texts: list[str]) -> list[list[Any]]:
        a = self.analyzer
        engine = a.engine
        out: list[list[Any]] = []
        if a.uses_ner:
            artifacts = engine.nlp_engine.process_batch(texts, LANGUAGE, batch_size=NLP_BATCH)
            for text, (_, nlp_artifacts) in zip(texts, artifacts, strict=True):
                out.append(resolve_overlaps(engine.analyze(
                    text, language=LANGUAGE, entities=a.candidate_entities(text), score_threshold=a.min_score,
                    nlp_artifacts=nlp_artifacts)))
            return out
        for text in texts:
            entities = a.candidate_entities(text)
            if not entities or not self._any_candidate(text, entities):
                out.append([])
                continue
            out.append(resolve_overlaps(engine.analyze(text, language=LANGUAGE, entities=entities,
                                                       score_threshold=a.min_score)))
        return out

    def _any_candidate(self, text: str, entities: list[str]) -> bool:
        """Exact second pre-filter: run the recognizers alone (no tokenization, no context step) and
        do the full ``analyze`` only when one of them matched. Context words only raise the score of
        an existing match, never create one, so an empty raw pass means an empty result. Most texts
        that contain digits contain no PII; this skips their tokenization (≈30% of analyze's time).
        Only for recognizers that need no NLP artifacts (the patterns engine)."""
        key = tuple(entities)
        recognizers = self._recognizers.get(key)
        if recognizers is None:
            recognizers = self.analyzer.engine.registry.get_recognizers(LANGUAGE, entities=entities)
            self._recognizers[key] = recognizers
        # pattern recognizers need no NLP artefacts; presidio types the argument as required all the same
        return any(r.analyze(text, entities, None) for r in recognizers)  # type: ignore[arg-type]  # see above

    def _locate_failure(self, jobs: list[tuple[int, str | None, str, int, str]]) -> tuple[int, str | None]:
        for location, _, path, _, text in jobs:
            try:
                self._analyze([text])
            except Exception:
                return location, path
        return (jobs[0][0], None) if jobs else (0, None)


# Set in each worker by the pool initializer (inherited from the parent under fork).
_WORKER_SCANNER: RecordScanner | None = None


def _init_worker(scanner: RecordScanner | None, settings_json: str, key: bytes,
                 fingerprint_key: bytes | None = None) -> None:
    global _WORKER_SCANNER
    import warnings

    warnings.simplefilter("ignore")  # workers never write to the (shared) terminal
    _WORKER_SCANNER = scanner if scanner is not None else RecordScanner(
        ScanSettings.model_validate_json(settings_json), key, fingerprint_key)


def _scan_in_worker(chunk: list[tuple[int, dict[str, Any]]]) -> ChunkResult:
    assert _WORKER_SCANNER is not None
    return _WORKER_SCANNER.scan_chunk(chunk)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (macOS)
        return max(1, os.cpu_count() or 1)


def _make_pool(scanner: RecordScanner, settings: ScanSettings, key: bytes, workers: int,
               fingerprint_key: bytes | None = None) -> ProcessPoolExecutor:
    # fork (Linux): workers inherit the built analyzer — no re-import, no model reload. Elsewhere
    # spawn, and each worker builds its own analyzer once in the initializer.
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("fork")
        args: tuple[Any, ...] = (scanner, "", key)
    else:  # pragma: no cover
        ctx = multiprocessing.get_context("spawn")
        args = (None, settings.model_dump_json(), key, fingerprint_key)
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=args)


# ------------------------------------------------------------------------------------------ sampling
def _sampled(spec: SampleSpec | None, location: int) -> bool:
    if spec is None or spec.fraction is None:
        return True
    digest = hashlib.blake2b(f"{spec.seed}:{location}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < spec.fraction


# ---------------------------------------------------------------------------------------- scanning
@dataclass
class ScanInput:
    dataset: str
    path: Path
    format: str = "auto"


def display_path(path: Path) -> str:
    """Path relative to the working directory when inside it (what SARIF and tables show)."""
    resolved = safe_resolve(path)
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_posix()


def scan_files(inputs: list[ScanInput], settings: ScanSettings, key: PIIKey,
               progress: Progress | None = None, workers: int | None = None,
               fingerprint_key: PIIKey | None = None) -> ScanReport:
    """Scan ``inputs`` with one analyzer (and one process pool); the engine of :func:`scan_paths`
    and the PII stage. ``fingerprint_key``: also hash each value under this key, for SARIF
    fingerprints that stay stable across lineage DBs (see :func:`govern.pii.report.to_sarif`)."""
    progress = progress or NullProgress()
    began = time.perf_counter()
    resolved: list[tuple[ScanInput, Format]] = []
    for item in inputs:
        check_data_file(item.path)  # first: "a symbolic link loop" says more than "no known suffix"
        fmt = detect_format(item.path, item.format)
        resolved.append((item, fmt))
    fp_key = fingerprint_key.key if fingerprint_key is not None else None
    scanner = RecordScanner(settings, key.key, fp_key)
    n_workers = workers or default_workers()
    total_bytes = sum(item.path.stat().st_size for item, _ in resolved)
    threshold = min(IN_PROCESS_BYTES, IN_PROCESS_BYTES_NER) if scanner.analyzer.uses_ner else IN_PROCESS_BYTES
    pool = _make_pool(scanner, settings, key.key, n_workers, fp_key) if n_workers > 1 and total_bytes >= threshold else None
    findings: list[PIIFindingRow] = []
    locations: list[int] = []
    fingerprints: list[str | None] = []
    files: list[FileScan] = []
    actions = scanner.analyzer.actions
    try:
        for item, fmt in resolved:
            shown = display_path(item.path)
            task = progress.task(f"PII scan {item.path.name}", total=None, unit="records")
            total = scanned = 0
            try:
                for result in _results(item, fmt, settings.policy.sample, scanner, pool, n_workers):
                    if result.error is not None:
                        location, field, message = result.error
                        raise DataError(item.path, message, field=field, **location_kwargs(fmt, location))
                    for f in result.findings:
                        findings.append(finding_row(f, item.dataset, shown, fmt, actions))
                        locations.append(f.location)
                        fingerprints.append(f.fingerprint_hmac)
                    scanned += result.records
                    total += result.records + result.skipped
                    task.advance(result.records)
            finally:
                task.close()
            if total == 0:
                # "0 of 0 records scanned" would read as a clean pass of a file that holds nothing.
                raise DataError(item.path, "no records to scan: the file is empty or holds only blank lines")
            files.append(FileScan(dataset=item.dataset, path=str(item.path), display_path=shown, format=fmt,
                                  sha256=file_sha256(item.path), records_total=total, records_scanned=scanned))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    evidence = build_evidence(scanner.analyzer, settings.policy, files, findings, locations, key,
                              time.perf_counter() - began, workers=n_workers if pool is not None else 1)
    from govern.pii.quality import quality_for_settings

    evidence = evidence.model_copy(update={"quality": quality_for_settings(scanner.analyzer, settings)})
    return ScanReport(evidence=evidence, findings=findings, record_locations=locations, files=files,
                      key_id=key.key_id, value_fingerprints=fingerprints if fp_key is not None else [],
                      fingerprint_key_id=fingerprint_key.key_id if fingerprint_key is not None else None)


@dataclass
class _CountedResult(ChunkResult):
    skipped: int = 0


def _chunks(item: ScanInput, fmt: Format, sample: SampleSpec | None, max_record_bytes: int | None = None
            ) -> Iterator[tuple[list[tuple[int, dict[str, Any]]], int]]:
    """Chunks of sampled records, each with the number of records skipped by sampling before it."""
    chunk: list[tuple[int, dict[str, Any]]] = []
    skipped = 0
    taken = 0
    cap = sample.max_records if sample is not None else None
    for location, record in iter_records(item.path, fmt, max_record_bytes=max_record_bytes):
        if (cap is not None and taken >= cap) or not _sampled(sample, location):
            skipped += 1
            continue
        chunk.append((location, record))
        taken += 1
        if len(chunk) >= CHUNK_RECORDS:
            yield chunk, skipped
            chunk, skipped = [], 0
    if chunk or skipped:
        yield chunk, skipped


def _results(item: ScanInput, fmt: Format, sample: SampleSpec | None, scanner: RecordScanner,
             pool: ProcessPoolExecutor | None, workers: int) -> Iterator[_CountedResult]:
    """Chunk results in file order; with a pool, at most ``2 × workers`` chunks in flight."""
    if pool is None:
        for chunk, skipped in _chunks(item, fmt, sample, scanner.settings.max_record_bytes):
            r = scanner.scan_chunk(chunk) if chunk else ChunkResult([], 0)
            yield _CountedResult(r.findings, r.records, r.error, skipped)
        return
    pending: deque[tuple[Future[ChunkResult], int]] = deque()
    try:
        for chunk, skipped in _chunks(item, fmt, sample, scanner.settings.max_record_bytes):
            pending.append((pool.submit(_scan_in_worker, chunk), skipped))
            while len(pending) >= 2 * workers:
                future, sk = pending.popleft()
                r = future.result()
                yield _CountedResult(r.findings, r.records, r.error, sk)
        while pending:
            future, sk = pending.popleft()
            r = future.result()
            yield _CountedResult(r.findings, r.records, r.error, sk)
    finally:
        for future, _ in pending:
            future.cancel()


def build_evidence(analyzer: ConfiguredAnalyzer, policy: PIIPolicy, files: list[FileScan],
                   findings: list[PIIFindingRow], locations: list[int], key: PIIKey,
                   duration_s: float, workers: int = 1) -> PIIEvidence:
    """Counts per (dataset, field, entity), records affected, blocked entities."""
    counts: Counter[tuple[str, str, str]] = Counter()
    records: dict[tuple[str, str, str], set[int]] = {}
    affected: set[tuple[str, int]] = set()
    by_entity: Counter[str] = Counter()
    blocked: Counter[str] = Counter()
    for row, location in zip(findings, locations, strict=True):
        k = (row.dataset, row.field, row.entity_type)
        counts[k] += 1
        records.setdefault(k, set()).add(location)
        affected.add((row.file, location))
        by_entity[row.entity_type] += 1
        if row.action == "block":
            blocked[row.entity_type] += 1
    total = sum(f.records_total for f in files)
    scanned = sum(f.records_scanned for f in files)
    return PIIEvidence(
        engine=analyzer.engine_name,
        engine_version=analyzer.engine_version,
        entities=analyzer.entities,
        min_score=policy.min_score,
        records_total=total,
        records_scanned=scanned,
        sampled=scanned < total,
        counts=[PIICount(dataset=d, field=f, entity_type=e, count=n, records=len(records[(d, f, e)]),
                         action=analyzer.actions[e])
                for (d, f, e), n in sorted(counts.items())],
        by_entity=dict(sorted(by_entity.items())),
        records_affected=len(affected),
        blocked=dict(sorted(blocked.items())),
        actions=dict(sorted(analyzer.actions.items())),
        hmac_key_id=key.key_id,
        workers=workers,
        duration_s=round(duration_s, 3),
    )


def scan_paths(paths: list[Path], policy: Policy, engine: str | None = None, progress: Progress | None = None,
               key: PIIKey | bytes | None = None, *, spacy_model: str = DEFAULT_SPACY_MODEL,
               workers: int | None = None, columns: list[str] | None = None,
               policy_file: str = "<policy>", max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
               fingerprint_key: PIIKey | None = None, ray_address: str | None = None,
               quality_sample: Path | None = None) -> ScanReport:
    """Scan data files with ``policy.pii`` (the standalone ``govern scan``).

    Every field of every record is scanned (``columns`` restricts it); each file is its own data set,
    named by its path as shown. A directory stands for every data file under it (see
    :func:`expand_data_paths`). ``key`` defaults to the key of the default lineage DB.
    ``ray_address``: scan on that Ray cluster instead (``local``: one started here), see
    :mod:`govern.pii.ray_backend`; ``workers`` is then the number of scanner actors.
    ``quality_sample``: a labeled sample to score the scan on (overrides the policy's pii.quality.sample).
    """
    if ray_address is not None:
        from govern.pii.ray_backend import import_ray

        import_ray()  # first: without the extra, say so before any key or file work
    if key is None:
        from govern.pii.keys import load_or_create_key

        key = load_or_create_key(_default_db_url())
    pii_key = key if isinstance(key, PIIKey) else PIIKey(key=key)
    files = expand_data_paths(paths)
    settings = ScanSettings(policy=policy.pii, engine=engine or policy.pii.engine, spacy_model=spacy_model,
                            columns=columns, policy_file=policy_file, max_record_bytes=max_record_bytes,
                            quality_sample=str(quality_sample) if quality_sample is not None else None)
    inputs = [ScanInput(dataset=display_path(Path(p)), path=Path(p)) for p in files]
    if ray_address is not None:
        from govern.pii.ray_backend import scan_files_ray

        report = scan_files_ray(inputs, settings, pii_key, progress, ray_address, workers, fingerprint_key)
    else:
        report = scan_files(inputs, settings, pii_key, progress, workers, fingerprint_key)
    report.columns = locate_columns(report, pii_key)
    return report


# ------------------------------------------------------------------------------- columns (SARIF)
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')
_JSON_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _json_token_spans(line: str) -> Iterator[tuple[str, list[int]]]:
    """Every string (decoded) and number of a JSON line, with the 0-based position in ``line`` of each
    decoded character (and one past the last): escapes make the two differ."""
    for match in _JSON_TOKEN.finditer(line):
        raw = match.group()
        if raw[0] != '"':
            yield raw, list(range(match.start(), match.end() + 1))
            continue
        text: list[str] = []
        where: list[int] = []
        i, end = 1, len(raw) - 1
        while i < end:
            where.append(match.start() + i)
            if raw[i] != "\\":
                text.append(raw[i])
                i += 1
            elif raw[i + 1] == "u" and i + 6 <= end:
                unit = int(raw[i + 2:i + 6], 16)
                if 0xD800 <= unit < 0xDC00 and raw[i + 6:i + 8] == "\\u":  # a surrogate pair: one character
                    low = int(raw[i + 8:i + 12], 16)
                    text.append(chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)))
                    i += 12
                else:
                    text.append(chr(unit))
                    i += 6
            else:
                text.append(_JSON_ESCAPES.get(raw[i + 1], raw[i + 1]))
                i += 2
        yield "".join(text), [*where, match.start() + end]


def _csv_field_spans(line: str) -> Iterator[tuple[str, list[int]]]:
    """Every field of one physical CSV line (comma, double quotes as ``csv.reader`` reads them)."""
    i, n = 0, len(line)
    while i <= n:
        text: list[str] = []
        where: list[int] = []
        if i < n and line[i] == '"':
            i += 1
            while i < n:
                if line[i] == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        where.append(i)
                        text.append('"')
                        i += 2
                        continue
                    break
                where.append(i)
                text.append(line[i])
                i += 1
            stop = i
            i = line.find(",", i)
        else:
            comma = line.find(",", i)
            stop = n if comma < 0 else comma
            where = list(range(i, stop))
            text = list(line[i:stop])
            i = comma
        yield "".join(text), [*where, stop]
        if i < 0:
            return
        i += 1


def locate_columns(report: ScanReport, key: PIIKey) -> list[tuple[int, int] | None]:
    """Where each finding sits in its JSONL/CSV line, for SARIF's ``startColumn``/``endColumn``.

    The scanner sees parsed records, whose field offsets are not line columns (quotes, escapes, other
    fields before it). So the lines with findings are read again, and a token of the line counts only
    when its text at the finding's offsets has the finding's keyed hash: a column is given only where
    it is exact, never guessed (a match split over a multi-line CSV record gets none). Nothing read is
    kept. Parquet has no lines, and gets none.
    """
    columns: list[tuple[int, int] | None] = [None] * len(report.findings)
    wanted: dict[str, dict[int, list[int]]] = {}
    formats = {f.display_path: (f.path, f.format) for f in report.files}
    for i, finding in enumerate(report.findings):
        path_format = formats.get(finding.file)
        if finding.line is not None and path_format is not None and path_format[1] in ("jsonl", "csv"):
            wanted.setdefault(finding.file, {}).setdefault(finding.line, []).append(i)
    for shown, lines in wanted.items():
        path, fmt = formats[shown]
        spans = _json_token_spans if fmt == "jsonl" else _csv_field_spans
        last = max(lines)  # once: per line it made a large scan quadratic (1M lines × 100k finding lines)
        try:
            with open(path, "rb") as fh:  # lines end at b"\n" only, as the readers count them
                for number, raw in enumerate(fh, start=1):
                    found = lines.get(number)
                    if found is not None:
                        line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n").removeprefix("\ufeff")
                        for i in found:
                            columns[i] = _column(report.findings[i], spans(line), key)
                    if number >= last:
                        break
        except OSError:  # gone since the scan: no columns, the lines still locate the findings
            continue
    return columns


def _column(finding: PIIFindingRow, tokens: Iterator[tuple[str, list[int]]], key: PIIKey
            ) -> tuple[int, int] | None:
    for text, where in tokens:
        if finding.end <= len(text) and key.hmac(finding.entity_type, text[finding.start:finding.end]) == \
                finding.value_hmac:
            return where[finding.start] + 1, where[finding.end] + 1
    return None


def expand_data_paths(paths: list[Path]) -> list[Path]:
    """``paths`` with each directory replaced by the data files under it (by suffix: JSONL, CSV,
    Parquet), recursively, in sorted order — so CI can scan ``data/`` without a shell glob, which a
    shell passes on literally when nothing matches. Hidden folders (``.git``, ``.govern``, ``.venv``)
    are skipped, and symbolic links to folders are not followed (no loops). A directory without data
    files is an error: a gate that scanned nothing must not read as clean."""
    if not paths:
        raise GovernError("no files to scan")
    out: list[Path] = []
    for path in paths:
        if not Path(path).is_dir():
            out.append(Path(path))  # a missing or unreadable path is reported by the scan itself
            continue
        found = []
        for folder, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found += [Path(folder) / n for n in names
                      if Path(n).suffix.lower() in SUFFIX_FORMATS and not n.startswith(".")]
        if not found:
            raise DataError(Path(path), "is a directory with no data files in it "
                                        f"(looked for {', '.join(sorted(SUFFIX_FORMATS))})")
        out += sorted(found)
    return out


def _default_db_url() -> str:
    try:
        from govern.lineage.store import default_db_url
    except ImportError:  # pragma: no cover (lineage package not installed yet)
        return f"sqlite:///{Path.cwd() / '.govern' / 'lineage.db'}"
    return default_db_url()
