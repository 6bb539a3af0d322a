"""``govern scan --ray``: the same findings as the local scanner, from a real Ray cluster.

One local Ray instance (2 CPUs, loopback, no dashboard) is started for the module and stopped at
its end: Ray's start-up is the slow part, so every test here shares it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from govern.errors import DataError
from govern.pii import scan_paths
from govern.pii.keys import PIIKey
from govern.pii.ray_backend import LOCAL_START_WAITS
from govern.pii.scanner import ScanReport
from govern.policy import load_policy
from tests.conftest import PROJECT_ROOT, skip_or_fail
from tests.pii.conftest import PLANTED, make_policy, planted_records, write_jsonl

#: enough records per file for several scanner chunks (256 records each)
COPIES = 30


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Path]:
    """A real local Ray instance for this module; yields its session folder (where Ray's logs go)."""
    try:
        import ray
    except ImportError:
        skip_or_fail("needs the govern[ray] extra (pip install 'govern[ray]')")
    # A short folder: Ray's unix sockets live under it, and their paths are limited to 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="govray", dir="/tmp"))
    # On a busy 2-core machine the raylet (and the agent it waits for) can take longer to come up than
    # Ray's defaults allow; the raylet then aborts and ray.init times out.
    for name, value in LOCAL_START_WAITS.items():
        os.environ.setdefault(name, value)
    # Under load Ray's raylet sometimes aborts while its agent starts (ray.init then times out): that is
    # Ray's start-up, not govern, so a test gets three tries at a fresh local instance before it errors.
    for attempt in range(3):
        try:
            ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), _node_ip_address="127.0.0.1",
                     log_to_driver=False)
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
    try:
        yield temp
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _records() -> list[dict[str, Any]]:
    out = []
    for copy in range(COPIES):
        for r in planted_records():
            out.append({**r, "id": f"{r['id']}-{copy}"})
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same records as JSONL, CSV, Parquet and a folder of three JSONL shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("corpus")
    records = _records()
    write_jsonl(root / "all.jsonl", records)
    with open(root / "all.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows(records)
    pq.write_table(pa.Table.from_pylist(records), root / "all.parquet", row_group_size=100)
    shards = root / "shards"
    shards.mkdir()
    for i in range(3):
        write_jsonl(shards / f"part-{i:05d}.jsonl", records[i::3])
    return {"jsonl": root / "all.jsonl", "csv": root / "all.csv", "parquet": root / "all.parquet",
            "shards": shards}


KEY = PIIKey(key=bytes(range(32)))


class CliScan(NamedTuple):
    code: int
    out: str
    err: str
    db: Path
    document: dict[str, Any]


@pytest.fixture(scope="module")
def cli_scan(ray_session: Path, corpus: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> CliScan:
    """``govern scan <every input> --ray --format json``, in-process, on the module's cluster (one Ray
    job for all four inputs: the tests stay fast), recorded in a lineage DB of its own."""
    import contextlib
    import io

    from govern.cli import main

    db = tmp_path_factory.mktemp("scan-db") / "lineage.db"
    out, err = io.StringIO(), io.StringIO()
    old = sys.argv
    sys.argv = ["govern", "scan", *map(str, corpus.values()), "--ray", "--format", "json", "--db", f"sqlite:///{db}"]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.argv = old
    return CliScan(code, out.getvalue(), err.getvalue(), db, json.loads(out.getvalue()))


@pytest.fixture(scope="module")
def local_scan(cli_scan: CliScan, corpus: dict[str, Path]) -> ScanReport:
    """The local process-pool scan of the same inputs with the same key (that of the scan's DB)."""
    from govern.pii.keys import load_or_create_key

    return scan_paths(list(corpus.values()), load_policy("default").policy,
                      key=load_or_create_key(f"sqlite:///{cli_scan.db}"), workers=2)


_FIELDS = ("file", "line", "record_id", "field", "entity_type", "start", "end", "score", "value_hmac", "action")


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "shards"])
def test_ray_scan_finds_exactly_what_the_local_scanner_finds(cli_scan: CliScan, local_scan: ScanReport,
                                                            corpus: dict[str, Path], kind: str) -> None:
    shown = {f.display_path for f in local_scan.files
             if Path(f.path) == corpus[kind] or Path(f.path).is_relative_to(corpus[kind])}
    assert shown
    on_ray = [tuple(f[k] for k in _FIELDS) for f in cli_scan.document["findings"] if f["file"] in shown]
    local = [tuple(getattr(f, k) for k in _FIELDS) for f in local_scan.findings if f.file in shown]
    # every planted value in every copy: found once, at the same line/row, field, span and keyed hash
    assert len(local) >= len(PLANTED) * COPIES
    assert on_ray == local


def test_ray_evidence_matches_local_evidence(cli_scan: CliScan, local_scan: ScanReport) -> None:
    volatile = {"duration_s", "workers"}
    evidence = {k: v for k, v in cli_scan.document["evidence"].items() if k not in volatile}
    assert evidence == local_scan.evidence.model_dump(mode="json", exclude=volatile)
    assert cli_scan.document["evidence"]["workers"] == 2  # one scanner actor per CPU of the cluster


def test_ray_scan_is_recorded_and_no_value_or_key_is_anywhere(cli_scan: CliScan, ray_session: Path,
                                                              govern_cli: Any) -> None:
    from govern.lineage import LineageStore
    from govern.pii.keys import load_or_create_key

    assert cli_scan.code == 1, cli_scan.err  # the default policy blocks card numbers and SSNs
    assert "blocked" in cli_scan.err and "Traceback" not in cli_scan.err
    url = f"sqlite:///{cli_scan.db}"
    code, verified, _ = govern_cli("lineage", "verify", "--db", url)
    assert code == 0, verified
    with LineageStore.open(url, read_only=True) as store:
        run = store.get_run("latest")
        assert run.kind == "scan" and run.decision == "block"
        rows = store.pii_findings(run.id)
    assert len(rows) == len(cli_scan.document["findings"])
    assert {r.entity_type for r in rows} >= {"EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN"}
    key = load_or_create_key(url)
    secrets = [v.encode() for v in PLANTED.values()] + [key.key.hex().encode(), key.key]
    db_bytes = cli_scan.db.read_bytes()
    for secret in secrets:
        assert secret not in db_bytes
        assert secret.decode("latin-1") not in cli_scan.out + cli_scan.err
    # Ray's session folder: logs of the driver, raylet, GCS and every worker and actor
    files = [p for p in ray_session.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix in (".out", ".err", ".log") for p in files)
    for path in files:
        data = path.read_bytes()
        assert not [s for s in secrets if s in data], f"{path} holds a planted value or the HMAC key"


def test_bad_line_in_a_shard_names_its_file_and_line_on_ray(ray_session: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_jsonl(shards / "part-0.jsonl", planted_records())
    (shards / "part-1.jsonl").write_text('{"text": "ok"}\n{"text": "jane.roe@example.org", oops}\n',
                                         encoding="utf-8")
    with pytest.raises(DataError) as info:
        scan_paths([shards], make_policy(), key=KEY, ray_address="local", workers=1)
    assert info.value.line == 2 and info.value.file.endswith("part-1.jsonl")
    assert "jane.roe" not in str(info.value)


def test_without_the_ray_extra_scan_ray_names_the_extra(tmp_path: Path) -> None:
    """A Python where ``import ray`` fails (None in sys.modules blocks it, as if not installed)."""
    data = write_jsonl(tmp_path / "t.jsonl", planted_records())
    program = ("import sys; sys.modules['ray'] = None; sys.argv = ['govern', 'scan', sys.argv[1], '--ray']\n"
               "from govern.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", program, str(data)], capture_output=True, text=True,
                          cwd=tmp_path, env={**_env(), "GOVERN_DB_URL": f"sqlite:///{tmp_path}/l.db"}, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "govern[ray]" in done.stderr and "Traceback" not in done.stderr


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}


@pytest.mark.parametrize("mode", ["entity_type", "pseudonym"])
def test_redaction_on_ray_writes_shards_and_a_manifest_that_reads_like_the_local_copy(
        ray_session: Path, corpus: dict[str, Path], tmp_path: Path, mode: str) -> None:
    from govern.data.io import read_records
    from govern.data.validate import fingerprint_file
    from govern.pii.ray_backend import redact_on_ray
    from govern.pii.redact import PseudonymTable, redact_file

    source = corpus["jsonl"]
    report = scan_paths([source], make_policy(redaction=mode), key=KEY, workers=1)
    located = list(zip(report.record_locations, report.findings, strict=True))
    local = tmp_path / "local.jsonl"
    redact_file(source, local, "jsonl", located, mode=mode, key=KEY, table=PseudonymTable(KEY),
                pseudonym_fields={"id"})
    manifest, written = redact_on_ray(source, "jsonl", tmp_path / "sharded", "train.redacted", located, mode=mode,
                                      key=KEY, table=PseudonymTable(KEY), pseudonym_fields={"id"},
                                      records=report.files[0].records_total, shards=8)
    document = json.loads(manifest.read_text())
    assert manifest.name == "train.redacted.shards.json" and len(document["shards"]) == 8
    assert written == document["records"] == sum(s["records"] for s in document["shards"]) == len(_records())
    # training reads the manifest like one file: the same records as the local redacted copy
    assert read_records(manifest, "jsonl") == read_records(local, "jsonl")
    assert fingerprint_file(manifest, "jsonl") == fingerprint_file(local, "jsonl")
    for shard in (tmp_path / "sharded").glob("*.jsonl"):
        text = shard.read_text(encoding="utf-8")
        assert not [v for v in PLANTED.values() if v in text], shard


def test_pii_stage_with_backend_ray_gives_the_local_evidence_and_a_sharded_copy_training_reads(
        ray_session: Path, tmp_path: Path) -> None:
    from govern.data.io import read_records
    from govern.pii.stage import PIIStage
    from tests.pii.test_stage_redaction import _context

    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    local_ctx = _context(tmp_path / "local", make_policy())
    ray_ctx = _context(tmp_path / "ray", make_policy())
    ray_ctx.db_url = local_ctx.db_url  # one lineage DB, one HMAC key: comparable hashes
    ray_ctx.config = ray_ctx.config.model_copy(update={
        "pii": ray_ctx.config.pii.model_copy(update={"backend": "ray"}),
        "ray": ray_ctx.config.ray.model_copy(update={"shards": 3, "actors": 1})})
    local, on_ray = PIIStage().run(local_ctx), PIIStage().run(ray_ctx)
    volatile = {"duration_s", "workers", "redacted_files"}
    assert on_ray.evidence.model_dump(exclude=volatile) == local.evidence.model_dump(exclude=volatile)
    ray_out, local_out = on_ray.outputs.model_dump(), local.outputs.model_dump()
    for role in ("train", "eval"):
        manifest = Path(ray_out[f"{role}_path"])
        assert manifest.name == f"{role}.redacted.shards.json"
        # what the training stage does: read the path it is given, in the run's format
        assert read_records(manifest, ray_out["format"]) == \
            read_records(Path(local_out[f"{role}_path"]), local_out["format"])
        assert ray_out[f"{role}_fingerprint"] == local_out[f"{role}_fingerprint"]


def _scanner_actor_pids() -> list[int]:
    """Processes of the scanner actors (Ray names them ``ray::MapWorker(MapBatches(ChunkScanActor))``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ChunkScanActor" in cmdline and b"pytest" not in cmdline:
                pids.append(int(proc.name))
    return pids


def test_a_scanner_actor_killed_mid_scan_changes_nothing(ray_session: Path, tmp_path: Path) -> None:
    """Ray restarts the actor and re-runs its chunk: nothing lost, nothing doubled."""
    import signal
    import threading

    # ~47 chunks of 256 records: long enough that the kill lands mid-scan on an idle machine too (with 10
    # chunks an unloaded CI box finished before the first poll saw one chunk back).
    records = [{**r, "id": f"{r['id']}-{c}"} for c in range(1000) for r in planted_records()]
    path = write_jsonl(tmp_path / "big.jsonl", records)
    expected = scan_paths([path], make_policy(), key=KEY, workers=1)
    progress = _Progress()
    result: dict[str, Any] = {}

    def scan() -> None:
        try:
            result["report"] = scan_paths([path], make_policy(), key=KEY, ray_address="local", workers=2,
                                          progress=progress)
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    worker = threading.Thread(target=scan)
    worker.start()
    killed = None
    while worker.is_alive() and killed is None:
        pids = _scanner_actor_pids()
        if pids and progress.done >= 256:  # mid-scan: some chunks back, most still to come
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        else:
            worker.join(0.05)
    worker.join(300)
    assert killed is not None and progress.done < len(records) * 2
    if "error" in result:
        raise result["error"]
    report = result["report"]
    assert _findings(report) == _findings(expected)
    assert report.evidence.records_scanned == len(records)


def _findings(report: ScanReport) -> list[tuple[Any, ...]]:
    return [tuple(getattr(f, k) for k in _FIELDS) for f in report.findings]


class _Progress:
    """Counts the records the scan reports done (the CLI's bar reads the same calls)."""

    def __init__(self) -> None:
        self.done = 0

    def task(self, description: str, total: float | None = None, unit: str = "") -> _Progress:
        return self

    def advance(self, n: float = 1) -> None:
        self.done += int(n)

    def close(self) -> None:
        return None
