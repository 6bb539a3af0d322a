"""`govern scan` in CI and in a pre-commit hook: SARIF alerts GitHub can track across fresh lineage DBs,
located by repository path; folders scanned recursively; a hook that writes nothing into the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from govern.cli import app
from tests.pii.conftest import PLANTED, planted_records, write_jsonl

SCHEMA = json.loads((Path(__file__).parent / "sarif_2_1_0_subset.schema.json").read_text(encoding="utf-8"))
CI_KEY = "ab" * 32
runner = CliRunner()


def _sarif(args: list[str], out: Path, **env: str) -> dict[str, Any]:
    result = runner.invoke(app, ["scan", *args, "--format", "sarif", "--out", str(out)], env=env)
    assert result.exit_code in (0, 1), result.output
    document: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator(SCHEMA).validate(document)
    return document


def _fingerprints(document: dict[str, Any]) -> list[str]:
    return [r["partialFingerprints"]["governPiiFinding/v2"] for r in document["runs"][0]["results"]]


@pytest.fixture
def repository(workdir: Path) -> Path:
    """A git work tree with a data file two folders down; the scans run from a sub-folder of it."""
    subprocess.run(["git", "init", "-q", str(workdir / "repo")], check=True)
    data = workdir / "repo" / "project" / "data"
    data.mkdir(parents=True)
    write_jsonl(data / "train.jsonl", planted_records())
    return workdir / "repo"


def test_fingerprints_survive_a_fresh_lineage_db_with_the_ci_key_and_never_carry_the_value_hash(
        repository: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repository / "project")
    first, second = (f"sqlite:///{workdir / name / 'lineage.db'}" for name in ("ci-run-1", "ci-run-2"))
    runs = [_sarif(["data/train.jsonl", "--db", db], workdir / f"{i}.sarif", GOVERN_SARIF_KEY=CI_KEY)
            for i, db in enumerate((first, second))]
    assert _fingerprints(runs[0]) == _fingerprints(runs[1])  # a fresh DB (new PII key) keeps every alert
    assert runs[0]["runs"][0]["properties"]["hmacKeyId"] != runs[1]["runs"][0]["properties"]["hmacKeyId"]
    assert len(set(_fingerprints(runs[0]))) == len(PLANTED)

    without_key = [_sarif(["data/train.jsonl", "--db", db], workdir / f"n{i}.sarif", GOVERN_SARIF_KEY="")
                   for i, db in enumerate((first, second))]
    assert _fingerprints(without_key[0]) != _fingerprints(without_key[1])  # why CI needs the key
    again = _sarif(["data/train.jsonl", "--db", first], workdir / "again.sarif", GOVERN_SARIF_KEY="")
    assert _fingerprints(again) == _fingerprints(without_key[0])  # one DB, one key: stable locally

    # Another value at the very same place is another alert (a dismissal must not carry over to it).
    records = planted_records()
    records[0]["text"] = records[0]["text"].replace(PLANTED["CREDIT_CARD"], "5555 5555 5555 4444")
    write_jsonl(repository / "project" / "data" / "train.jsonl", records)
    changed = _sarif(["data/train.jsonl", "--db", second], workdir / "c.sarif", GOVERN_SARIF_KEY=CI_KEY)
    assert _fingerprints(changed)[0] != _fingerprints(runs[0])[0]
    assert _fingerprints(changed)[1:] == _fingerprints(runs[0])[1:]

    text = json.dumps(runs[0])
    for value in PLANTED.values():
        assert value not in text
    from govern.lineage import LineageStore

    with LineageStore.open(first) as store:
        hmacs = {f.value_hmac for f in store.pii_findings(store.get_run("latest").id)}
    assert hmacs and not any(h in text or h[:32] in text for h in hmacs)  # not even the keyed value hash


def test_sarif_locates_findings_by_repository_path_with_severity_per_entity(repository: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repository / "project" / "data")
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    document = _sarif(["train.jsonl"], repository / "out.sarif")
    run = document["runs"][0]
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]} == \
        {"project/data/train.jsonl"}  # the repository's path, not the working directory's
    severity = {r["id"]: float(r["properties"]["security-severity"]) for r in run["tool"]["driver"]["rules"]}
    assert severity["pii/US_SSN"] >= 9.0 and severity["pii/CREDIT_CARD"] >= 9.0  # critical
    assert 4.0 <= severity["pii/EMAIL_ADDRESS"] < 7.0 and severity["pii/IP_ADDRESS"] < severity["pii/EMAIL_ADDRESS"]


def test_a_folder_is_scanned_recursively_and_an_empty_one_is_an_error(workdir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (workdir / "data" / "nested").mkdir(parents=True)
    (workdir / "data" / ".cache").mkdir()
    write_jsonl(workdir / "data" / "a.jsonl", [{"text": f"mail {PLANTED['EMAIL_ADDRESS']}"}])
    (workdir / "data" / "nested" / "b.csv").write_text(f"text\ncall {PLANTED['PHONE_NUMBER']}\n")
    pq.write_table(pa.Table.from_pylist([{"text": f"ip {PLANTED['IP_ADDRESS']}"}]), workdir / "data" / "nested" / "c.parquet")
    write_jsonl(workdir / "data" / ".cache" / "hidden.jsonl", [{"text": PLANTED["US_SSN"]}])
    (workdir / "data" / "notes.txt").write_text("not data")
    result = runner.invoke(app, ["scan", "data", "--format", "json"])
    assert result.exit_code == 0, result.output
    scanned = [f["display_path"] for f in json.loads(result.stdout)["files"]]
    assert scanned == ["data/a.jsonl", "data/nested/b.csv", "data/nested/c.parquet"]

    (workdir / "empty").mkdir()
    (workdir / "empty" / "readme.md").write_text("x")
    # The installed entry point, as a user runs it (the venv's bin need not be on PATH under `make test`).
    govern = shutil.which("govern", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert govern is not None
    done = subprocess.run([govern, "scan", "empty"], cwd=workdir, capture_output=True, text=True, timeout=120,
                          env={**os.environ})
    assert done.returncode == 2 and "empty: is a directory with no data files" in done.stderr


def test_the_pre_commit_scan_records_nothing_in_the_repository(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOVERN_DB_URL")
    repo = workdir / "checkout"
    repo.mkdir()
    monkeypatch.chdir(repo)
    write_jsonl(repo / "clean.jsonl", [{"text": "nothing personal here"}] * 3)
    write_jsonl(repo / "dirty.jsonl", [{"text": f"my SSN is {PLANTED['US_SSN']}"}])
    before = sorted(p.name for p in repo.iterdir())

    clean = runner.invoke(app, ["scan", "--no-record", "clean.jsonl", "--policy", "strict"])
    assert clean.exit_code == 0, clean.output
    assert "no personal data found" in clean.stdout and "recorded as" not in clean.output
    dirty = runner.invoke(app, ["scan", "--no-record", "dirty.jsonl", "--policy", "strict"])
    assert dirty.exit_code == 1 and "US_SSN" in dirty.output and PLANTED["US_SSN"] not in dirty.output
    assert sorted(p.name for p in repo.iterdir()) == before  # no .govern/lineage.db, no key file

    recorded = runner.invoke(app, ["scan", "clean.jsonl"])
    assert recorded.exit_code == 0 and (repo / ".govern" / "lineage.db").exists()  # the default still records


def test_sarif_columns_point_at_the_value_in_its_line_whatever_comes_before_it(workdir: Path) -> None:
    email, card = PLANTED["EMAIL_ADDRESS"], PLANTED["CREDIT_CARD"]
    jsonl = workdir / "t.jsonl"
    jsonl.write_text(json.dumps({"id": "r1", "note": "caf\u00e9 \"quoted\"", "text": f"mail {email} now"}) + "\n"
                     + json.dumps({"text": f"\u00e9\u00e9 pay {card}"}, ensure_ascii=False) + "\n", encoding="utf-8")
    csv_file = workdir / "t.csv"
    csv_file.write_text(f'id,text\nr1,"say ""hi"" to {email}"\n', encoding="utf-8")
    document = _sarif([str(jsonl), str(csv_file)], workdir / "cols.sarif")
    lines = {"t.jsonl": jsonl.read_text(encoding="utf-8").splitlines(),
             "t.csv": csv_file.read_text(encoding="utf-8").splitlines()}
    located = 0
    for result in document["runs"][0]["results"]:
        where = result["locations"][0]["physicalLocation"]
        region = where["region"]
        line = lines[where["artifactLocation"]["uri"]][region["startLine"] - 1]
        found = line[region["startColumn"] - 1:region["endColumn"] - 1]
        assert found in (email, card), (found, result["ruleId"])
        located += 1
    assert located == 3
