"""``govern scan --ray``: the same findings as the local scanner, from a real Ray cluster.

One local Ray instance (2 CPUs, loopback, no dashboard) is started for the module and stopped at
its end: Ray's start-up is the slow part, so every test here shares it.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from govern.errors import DataError
from govern.pii import scan_paths
from govern.pii.keys import PIIKey
from govern.pii.scanner import ScanReport
from tests.conftest import PROJECT_ROOT, skip_or_fail
from tests.pii.conftest import PLANTED, make_policy, planted_records, write_jsonl

#: enough records per file for several scanner chunks (256 records each)
COPIES = 70


@pytest.fixture(scope="module")
def ray_session() -> Iterator[Path]:
    """A real local Ray instance for this module; yields its session folder (where Ray's logs go)."""
    try:
        import ray
    except ImportError:
        skip_or_fail("needs the govern[ray] extra (pip install 'govern[ray]')")
    # A short folder: Ray's unix sockets live under it, and their paths are limited to 107 bytes.
    temp = Path(tempfile.mkdtemp(prefix="govray", dir="/tmp"))
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp), _node_ip_address="127.0.0.1",
             log_to_driver=False)
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


def _findings(report: ScanReport) -> list[tuple[Any, ...]]:
    return [(f.file, f.line, f.record_id, f.field, f.entity_type, f.start, f.end, f.score, f.value_hmac)
            for f in report.findings]


@pytest.fixture(scope="module")
def both(ray_session: Path, corpus: dict[str, Path]) -> tuple[ScanReport, ScanReport]:
    """One Ray scan of every input together (one Ray job: the tests stay fast), and the local scan."""
    paths = list(corpus.values())
    on_ray = scan_paths(paths, make_policy(), key=KEY, ray_address="local")
    local = scan_paths(paths, make_policy(), key=KEY, workers=1)
    return on_ray, local


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet", "shards"])
def test_ray_scan_finds_exactly_what_the_local_scanner_finds(both: tuple[ScanReport, ScanReport],
                                                            corpus: dict[str, Path], kind: str) -> None:
    on_ray, local = both
    shown = {f.display_path for f in local.files if Path(f.path).is_relative_to(corpus[kind])
             or Path(f.path) == corpus[kind]}
    assert shown
    ray_rows = [f for f in _findings(on_ray) if f[0] in shown]
    local_rows = [f for f in _findings(local) if f[0] in shown]
    # every planted value in every copy: found once, at the same line/row, field, span and keyed hash
    assert len(local_rows) >= len(PLANTED) * COPIES
    assert ray_rows == local_rows
    ray_files = [f.model_dump(exclude={"path"}) for f in on_ray.files if f.display_path in shown]
    assert ray_files == [f.model_dump(exclude={"path"}) for f in local.files if f.display_path in shown]


def test_ray_evidence_matches_local_evidence(both: tuple[ScanReport, ScanReport]) -> None:
    on_ray, local = both
    volatile = {"duration_s", "workers"}
    assert on_ray.evidence.model_dump(exclude=volatile) == local.evidence.model_dump(exclude=volatile)
    assert on_ray.evidence.workers == 2  # one scanner actor per CPU of the cluster


def test_cli_scan_on_ray_records_findings_but_no_value_or_key_anywhere(
        ray_session: Path, corpus: dict[str, Path], workdir: Path, govern_cli: Any) -> None:
    from govern.lineage import LineageStore
    from govern.lineage.store import default_db_url
    from govern.pii.keys import load_or_create_key

    code, out, err = govern_cli("scan", str(corpus["shards"]), "--ray", "--format", "json")
    assert code == 1, err  # the default policy blocks card numbers and SSNs
    document = json.loads(out)
    assert document["evidence"]["records_scanned"] == len(planted_records()) * COPIES
    assert "blocked" in err
    code, verified, _ = govern_cli("lineage", "verify")
    assert code == 0, verified

    key = load_or_create_key(default_db_url())
    with LineageStore.open(default_db_url(), read_only=True) as store:
        run = store.get_run("latest")
        assert run.kind == "scan" and run.decision == "block"
        rows = store.pii_findings(run.id)
        assert len(rows) == len(document["findings"])
        assert {r.entity_type for r in rows} >= {"EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN"}
        assert all(len(r.value_hmac) == 64 for r in rows)
    db_bytes = (workdir / ".govern" / "lineage.db").read_bytes()
    secrets = [v.encode() for v in PLANTED.values()] + [key.key.hex().encode(), key.key]
    for secret in secrets:
        assert secret not in db_bytes
        assert secret.decode("latin-1") not in out and secret.decode("latin-1") not in err
    # Ray's session folder: logs of the driver, raylet, GCS and every worker and actor
    for path in ray_session.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            leaked = [s for s in secrets if s in data]
            assert not leaked, f"{path} holds a planted value or the HMAC key"


def test_bad_line_in_a_shard_names_its_file_and_line_on_ray(ray_session: Path, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shards.mkdir()
    write_jsonl(shards / "part-0.jsonl", planted_records())
    (shards / "part-1.jsonl").write_text('{"text": "ok"}\n{"text": "jane.roe@example.org", oops}\n',
                                         encoding="utf-8")
    with pytest.raises(DataError) as info:
        scan_paths([shards], make_policy(), key=KEY, ray_address="local")
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
    import os

    return {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
