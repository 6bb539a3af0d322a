"""Inputs that cannot crash govern or leak through it (issue 12, item 6).

Each story goes through the real CLI entry point (or the real pipeline and stages) and checks what a
user relies on: a clear error naming the file, line and field, exit code 2, no traceback, and the
failed run recorded in the lineage DB; and that personal data used as a JSON *key* is found, redacted,
and never written anywhere in its raw form.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from govern.data.io import iter_records
from govern.data.stage import DataStage
from govern.errors import DataError, StageError
from govern.lineage import LineageStore
from govern.pipeline import Pipeline
from govern.signing.keys import generate_key_pair
from govern.signing.stage import SigningStage
from tests.conftest import peak_memory
from tests.spine.helpers import make_records, policy_doc, write_jsonl, write_project
from tests.spine.stages import EvidenceStage, assert_blocked_by_pii, run_through_pii, training_evidence

KEY_EMAIL = "someone.private@example.org"
KEY_EMAIL_2 = "another.person@example.net"


def _runs(store_url: str) -> list[Any]:
    with LineageStore.open(store_url) as store:
        return store.list_runs(limit=50)


def _assert_clean_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


# ================================================================================ PII in JSON keys
def _plant_key_pii(workdir: Path) -> list[dict[str, Any]]:
    records = make_records(200, 1, "train")
    for r in records:
        r["meta"] = {"source": "web"}
    # Two e-mail keys in one object redact alike; a key that already reads "<EMAIL_ADDRESS>" must not
    # be overwritten either: three distinct values must survive.
    records[7]["meta"] = {KEY_EMAIL: {"note": "vip"}, KEY_EMAIL_2: "second", "<EMAIL_ADDRESS>": "literal"}
    write_jsonl(workdir / "train.jsonl", records)
    return records


def test_pii_in_a_json_key_is_found_redacted_and_never_written_raw(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    _plant_key_pii(workdir)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome, training = run_through_pii(store, cfg)
        assert outcome.decision == "pass", outcome.results
        findings = store.pii_findings(outcome.run_id)
    key_findings = sorted(f.field for f in findings if f.field.endswith("#key"))
    assert key_findings == ["meta.<EMAIL_ADDRESS> (2)#key", "meta.<EMAIL_ADDRESS> (3)#key"]
    assert all(f.line == 8 and f.entity_type == "EMAIL_ADDRESS" and f.action == "redact"
               for f in findings if f.field.endswith("#key"))

    # The redacted copy training reads: keys renamed (to what the field paths show), no value lost.
    assert "redacted" in training.read_path.name
    copy = [json.loads(line) for line in training.read_path.read_text().splitlines()]
    assert len(copy) == 200
    assert copy[7]["meta"] == {"<EMAIL_ADDRESS> (2)": {"note": "vip"}, "<EMAIL_ADDRESS> (3)": "second",
                               "<EMAIL_ADDRESS>": "literal"}
    assert copy[0]["meta"] == {"source": "web"}

    # Every output a user or auditor sees, every file written, the DB's bytes: never the raw key.
    report_dir = workdir / "reports"
    outputs = [govern_cli("runs", "show", "latest", "--format", "json"),
               govern_cli("check", "latest", "--format", "json"),
               govern_cli("report", "latest", "--format", "md", "--out", str(report_dir)),
               govern_cli("report", "latest", "--format", "json", "--out", str(report_dir)),
               govern_cli("scan", str(workdir / "train.jsonl"), "--format", "json"),
               govern_cli("scan", str(workdir / "train.jsonl"), "--format", "sarif"),
               govern_cli("scan", str(workdir / "train.jsonl"), "--format", "table")]
    scan_json = json.loads(outputs[4][1])
    assert {f["field"] for f in scan_json["findings"]} >= {"meta.<EMAIL_ADDRESS> (2)#key"}
    sarif = json.loads(outputs[5][1])
    assert any("meta.<EMAIL_ADDRESS> (2)#key" in r["message"]["text"] for r in sarif["runs"][0]["results"])
    assert any(report_dir.iterdir())
    for code, out, err in outputs:
        assert code == 0, err
        for raw in (KEY_EMAIL, KEY_EMAIL_2):
            assert raw not in out and raw not in err
    written = [p for p in workdir.rglob("*") if p.is_file() and p.name != "train.jsonl"]
    assert any(p.suffix == ".db" for p in written) and any("redacted" in p.name for p in written)
    for path in written:
        data = path.read_bytes()
        for raw in (KEY_EMAIL, KEY_EMAIL_2):
            assert raw.encode() not in data, f"raw key found in {path}"


def test_a_block_action_on_a_key_blocks_the_run_before_training(workdir: Path) -> None:
    cfg = write_project(workdir, policy=policy_doc(pii={"entities": {"EMAIL_ADDRESS": "block"}}))
    _plant_key_pii(workdir)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome, training = run_through_pii(store, cfg)
        assert_blocked_by_pii(store, outcome, training, {"EMAIL_ADDRESS": 2})


def test_standalone_scan_names_values_under_a_pii_key_by_the_redacted_path(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    path = write_jsonl(workdir / "nested.jsonl", [
        {"id": "a", "meta": {KEY_EMAIL: {"reach": "mail me at x.y@example.com"}}},
    ])
    code, out, err = govern_cli("scan", str(path), "--format", "json")
    assert code == 0, err
    fields = sorted(f["field"] for f in json.loads(out)["findings"])
    assert fields == ["meta.<EMAIL_ADDRESS>#key", "meta.<EMAIL_ADDRESS>.reach"]
    assert KEY_EMAIL not in out + err


# ================================================================================ non-finite config
@pytest.mark.parametrize(("section", "field", "value", "message"), [
    ("dp", "target_epsilon", float("inf"), "Input should be a finite number"),
    (None, "epochs", float("inf"), "Input should be a finite number"),
    ("dp", "max_grad_norm", float("inf"), "Input should be a finite number"),
    ("dp", "target_epsilon", float("nan"), "Input should be a finite number"),
    (None, "epochs", True, "expected a number, found a boolean"),
])
def test_non_finite_or_boolean_numbers_in_the_config_fail_the_run_with_file_line_and_field(
        workdir: Path, govern_cli, section: str | None, field: str, value: Any, message: str) -> None:  # type: ignore[no-untyped-def]
    training: dict[str, Any] = {"dp": {field: value}} if section else {field: value}
    db = workdir / "named.db"
    cfg = write_project(workdir, extra={"training": training, "lineage_db": f"sqlite:///{db}"})
    text = cfg.read_text()
    assert ".inf" in text or ".nan" in text or "true" in text
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if t.strip().startswith(f"{field}:"))
    dotted = f"training.{section}.{field}" if section else f"training.{field}"
    code, _, err = govern_cli("run", str(cfg))
    _assert_clean_error(code, err, str(cfg), f"line {line}, {dotted}: ", message)
    # The config names its DB: the failed run is recorded there, with the reason.
    (run,) = _runs(f"sqlite:///{db}")
    assert run.status == "failed" and dotted in (run.error or "")
    code, _, err = govern_cli("config", "validate", str(cfg))
    _assert_clean_error(code, err, f"line {line}, {dotted}: ")


# ============================================================================== unreadable paths
def _loop(workdir: Path, name: str) -> Path:
    a, b = workdir / name, workdir / f"other-{name}"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def test_a_symlink_loop_as_config_is_a_clear_error_and_a_failed_run(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    loop = _loop(workdir, "govern.yaml")
    code, _, err = govern_cli("run", str(loop))
    _assert_clean_error(code, err, str(loop), "symbolic link loop")
    (run,) = _runs(os.environ["GOVERN_DB_URL"])
    assert run.status == "failed" and "symbolic link loop" in (run.error or "")
    code, _, err = govern_cli("config", "validate", str(loop))
    _assert_clean_error(code, err, str(loop), "symbolic link loop")


def test_a_symlink_loop_as_data_is_a_clear_error_for_scan_and_run(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    loop = _loop(workdir, "loop.jsonl")
    code, _, err = govern_cli("scan", str(loop))
    _assert_clean_error(code, err, str(loop), "symbolic link loop")
    (scan,) = _runs(os.environ["GOVERN_DB_URL"])
    assert scan.kind == "scan" and scan.status == "failed"

    cfg = write_project(workdir / "proj")
    config = yaml.safe_load(cfg.read_text())
    config["data"]["train"] = str(loop)
    cfg.write_text(yaml.safe_dump(config))
    code, _, err = govern_cli("run", str(cfg))
    _assert_clean_error(code, err, str(loop), "symbolic link loop")
    assert _runs(os.environ["GOVERN_DB_URL"])[0].status == "failed"


def test_a_directory_or_unreadable_file_is_named_not_a_traceback(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    folder = workdir / "data.jsonl"
    folder.mkdir()
    code, _, err = govern_cli("scan", str(folder))
    _assert_clean_error(code, err, str(folder), "is a directory")
    if os.geteuid() != 0:  # root reads anything
        locked = write_jsonl(workdir / "locked.jsonl", [{"text": "x"}])
        locked.chmod(0)
        code, _, err = govern_cli("scan", str(locked))
        _assert_clean_error(code, err, str(locked), "permission denied")


# ============================================================================== empty data files
@pytest.mark.parametrize("content", ["", "   \n\n \t\n"], ids=["empty", "whitespace-only"])
def test_an_empty_or_blank_data_file_is_an_error_not_zero_of_zero(workdir: Path, govern_cli, content: str) -> None:  # type: ignore[no-untyped-def]
    empty = workdir / "empty.jsonl"
    empty.write_text(content)
    code, out, err = govern_cli("scan", str(empty))
    _assert_clean_error(code, err, str(empty), "no records")
    assert "0 of 0" not in out
    assert _runs(os.environ["GOVERN_DB_URL"])[0].status == "failed"

    cfg = write_project(workdir / "proj")
    (workdir / "proj" / "train.jsonl").write_text(content)
    code, _, err = govern_cli("run", str(cfg))
    _assert_clean_error(code, err, "train.jsonl", "train data file")
    run = _runs(os.environ["GOVERN_DB_URL"])[0]
    assert run.kind == "run" and run.status == "failed"


# ============================================================================== record size bound
def test_an_oversized_record_is_rejected_naming_file_and_line(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    records = [{"id": "a", "text": "small"}, {"id": "b", "text": "y " * 1_100_000}, {"id": "c", "text": "z"}]
    path = write_jsonl(workdir / "big.jsonl", records)
    code, _, err = govern_cli("scan", str(path))  # default bound: 1 MiB
    _assert_clean_error(code, err, str(path), "line 2", "maximum record size of 1,048,576 bytes")
    assert _runs(os.environ["GOVERN_DB_URL"])[0].status == "failed"
    code, _, err = govern_cli("scan", str(path), "--max-record-bytes", "3000000")
    assert code == 0, err
    code, _, err = govern_cli("scan", str(path), "--max-record-bytes", "10")
    _assert_clean_error(code, err, "line 1", "maximum record size of 10 bytes")


def test_the_run_config_sets_the_record_bound_and_a_failed_run_is_recorded(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    cfg = write_project(workdir)
    config = yaml.safe_load(cfg.read_text())
    config["data"]["max_record_bytes"] = 150
    cfg.write_text(yaml.safe_dump(config))
    records = make_records(200, 1, "train")
    records[3]["text"] += " padding" * 30
    write_jsonl(workdir / "train.jsonl", records)
    code, _, err = govern_cli("run", str(cfg))
    _assert_clean_error(code, err, "train.jsonl, line 4", "maximum record size of 150 bytes")
    assert _runs(os.environ["GOVERN_DB_URL"])[0].status == "failed"


def test_csv_and_parquet_records_are_bounded_too(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "t.csv"
    csv_path.write_text('id,text\n1,short\n2,"multi\nline ' + "w" * 300 + '"\n3,ok\n')
    assert len(list(iter_records(csv_path, max_record_bytes=400))) == 3
    with pytest.raises(DataError, match=r"line 3: record is larger than the maximum record size of 200 bytes"):
        list(iter_records(csv_path, max_record_bytes=200))
    pq_path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b", "c"], "text": ["x", "y" * 5000, "z"]}), pq_path)
    assert len(list(iter_records(pq_path, max_record_bytes=10_000))) == 3
    with pytest.raises(DataError, match=r"record 1: record is larger than the maximum record size"):
        list(iter_records(pq_path, max_record_bytes=1000))


def test_a_21_megabyte_line_is_rejected_without_being_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "w") as fh:
        fh.write('{"text": "ok"}\n{"text": "')
        fh.write("order 4821 to jane@example.org " * 700_000)  # ~21.7 MB
        fh.write('"}\n')
    assert path.stat().st_size > 21_000_000

    def read() -> None:
        with pytest.raises(DataError, match=r"line 2: record is larger than the maximum record size"):
            list(iter_records(path, max_record_bytes=1 << 20))

    _, peak = peak_memory(read)
    assert peak < 4 << 20, f"peak {peak:,} bytes: the oversized line was held"


# ============================================================================== signing key mode
def test_a_world_readable_signing_key_warns_and_strict_refuses(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    pair = generate_key_pair(workdir / "keys")
    pair.private_key.chmod(0o644)
    secret = "".join(pair.private_key.read_text().splitlines()[1:-1])
    model = workdir / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 64)
    code, out, err = govern_cli("sign", str(model), "--key", str(pair.private_key), "--out", str(workdir / "a.json"))
    assert code == 0, err
    assert "warning:" in err and "accessible to group and others (mode 0644)" in err and "chmod 600" in err
    assert (workdir / "a.json").is_file()
    code, out2, err2 = govern_cli("sign", str(model), "--key", str(pair.private_key), "--strict",
                                  "--out", str(workdir / "b.json"))
    _assert_clean_error(code, err2, str(pair.private_key), "mode 0644", "refused")
    assert not (workdir / "b.json").exists()
    assert _runs(os.environ["GOVERN_DB_URL"])[0].status == "failed"
    for text in (out, err, out2, err2):
        assert secret[:40] not in text and "PRIVATE KEY" not in text
    pair.private_key.chmod(0o600)  # a key only its owner can read: no warning, strict signs
    code, _, err = govern_cli("sign", str(model), "--key", str(pair.private_key), "--strict",
                              "--out", str(workdir / "c.json"))
    assert code == 0 and "warning" not in err


def test_a_policy_that_refuses_readable_keys_fails_the_run_at_signing(workdir: Path) -> None:
    pair = generate_key_pair(workdir / "keys")
    pair.private_key.chmod(0o640)
    cfg = write_project(workdir, policy=policy_doc(signing={"private_key_permissions": "refuse"}),
                        extra={"signing": {"method": "key", "private_key": str(pair.private_key),
                                           "provenance": False}})
    training = EvidenceStage("training", training_evidence())
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        with pytest.raises(StageError, match=r"accessible to group \(mode 0640\).*refused"):
            Pipeline(store, stages=[DataStage(), training, SigningStage()]).start(cfg)
        run = store.list_runs(limit=1)[0]
        assert run.status == "failed" and "refused" in (run.error or "")
        assert [s.status for s in store.stage_executions(run.id)][-1] == "failed"


def test_pii_as_a_top_level_column_name_never_reaches_the_db_or_the_run_folder(workdir: Path) -> None:
    """The data stage records column names before the PII scan: only the names the config declares."""
    cfg = write_project(workdir)
    records = make_records(200, 1, "train")
    top = "top.level.person@example.com"
    records[4][top] = "a value under a personal key"
    write_jsonl(workdir / "train.jsonl", records)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        outcome, training = run_through_pii(store, cfg)
        assert outcome.decision == "pass", outcome.results
        columns = store.evidence(outcome.run_id)["data"]["files"][0]["columns"]
        assert "text" in columns and "<undeclared column 1>" in columns
        assert any(f.field.endswith("#key") for f in store.pii_findings(outcome.run_id))
    written = [p for p in workdir.rglob("*") if p.is_file() and p.name != "train.jsonl"]
    written += [Path(os.environ["GOVERN_DB_URL"].removeprefix("sqlite:///"))]
    for path in written:
        assert top.encode() not in path.read_bytes(), f"raw column name found in {path}"
