"""EU AI Act documents drafted from the lineage DB alone: the GPAI Model Documentation Form, the public
summary of training content and the Annex IV draft, after the run folder and the data are gone."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from govern.config import load_run_config
from govern.errors import ConfigError
from govern.lineage import LineageStore
from tests.report.conftest import RecordedDB

KINDS = ("gpai-form", "training-summary", "annex-iv")


def _docs(govern_cli, recorded: RecordedDB, kind: str, fmt: str, out: Path) -> Path:  # type: ignore[no-untyped-def]
    code, stdout, stderr = govern_cli("docs", recorded.run.run_id, "--kind", kind, "--format", fmt, "--out",
                                      str(out), "--db", recorded.url)
    assert code == 0, stderr
    path = out / f"{recorded.run.run_id}.{kind}.{fmt}"
    assert path.is_file() and f"wrote {path}" in stdout
    return path


def test_gpai_form_from_a_db_alone_holds_the_dbs_values_and_lists_what_is_missing(
        recorded: RecordedDB, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert not recorded.run.run_dir.exists() and not recorded.run.data_dir.exists()
    form = json.loads(_docs(govern_cli, recorded, "gpai-form", "json", tmp_path).read_text())
    fields = {f["key"]: f for s in form["sections"] for f in s["fields"]}
    with LineageStore.open(recorded.url, read_only=True) as store:
        artifacts = store.artifacts(recorded.run.run_id)
        training = store.evidence(recorded.run.run_id)["training"]
        data = store.evidence(recorded.run.run_id)["data"]
    adapter = next(a for a in artifacts if a.kind == "adapter")
    assert fields["model.digest"] == {"key": "model.digest", "label": fields["model.digest"]["label"],
                                      "value": adapter.sha256, "source": "lineage DB"}
    assert fields["model.total_parameters"]["value"] == f"{training['total_params']:,}"
    assert fields["model.trainable_parameters"]["value"] == f"{training['trainable_params']:,}"
    assert fields["base_model.name"]["value"] == "all-MiniLM-L6-v2"
    assert fields["data.tokens"]["value"] == f"{training['tokens_processed']:,}"
    flops = training["compute"]["flops"]
    assert fields["compute.flops"]["value"].startswith(f"{flops:.3e}")
    assert f"{training['compute']['base_compute_ratio']:.3g}" in fields["compute.base_ratio"]["value"]
    table = next(t for s in form["sections"] for t in s["tables"] if t["key"] == "data.files")
    assert [(r[0], r[4], r[5]) for r in table["rows"]] == [(f["role"], f["sha256"], f["fingerprint"])
                                                           for f in data["files"]]
    # What only the provider can state is not invented: absent from the config, listed to be completed.
    for key in ("provider.name", "distribution.licence", "use.intended", "energy.kwh", "distribution.channels"):
        assert fields[key]["value"] is None and fields[key]["source"] is None
    assert "1. General information: Legal name of the provider" in form["to_be_completed"]
    assert "not legal advice" in form["disclaimer"]
    # Recorded as an artifact of the run, with the digest of the file written.
    path = tmp_path / f"{recorded.run.run_id}.gpai-form.json"
    with LineageStore.open(recorded.url, read_only=True) as store:
        recorded_doc = [a for a in store.artifacts(recorded.run.run_id) if a.name == "gpai-form.json"]
    assert recorded_doc and recorded_doc[-1].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert recorded_doc[-1].kind == "report" and recorded_doc[-1].path == str(path.resolve())


@pytest.mark.parametrize("fmt", ["md", "html", "json"])
def test_every_document_says_it_is_an_aid_and_holds_no_pii_value(
        recorded: RecordedDB, govern_cli, tmp_path: Path, fmt: str) -> None:  # type: ignore[no-untyped-def]
    for kind in KINDS:
        text = _docs(govern_cli, recorded, kind, fmt, tmp_path).read_text()
        assert "not legal advice" in text, (kind, fmt)
        assert "to be completed" in text.lower() or "\"to_be_completed\": [" in text
        for value in recorded.run.planted:
            assert value not in text, (kind, fmt, value)
    summary = (tmp_path / f"{recorded.run.run_id}.training-summary.{fmt}").read_text()
    assert "EMAIL_ADDRESS" in summary and "CREDIT_CARD" in summary  # counts by entity type, not values
    assert str(recorded.run.data_dir) not in summary                 # a public document names no build paths


def test_documentation_section_fills_the_provider_fields(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    from tests.report.populate import record_governed_run

    documentation = {"provider": "Example Bank NV", "provider_contact": "ai-office@example.org",
                     "licence": "proprietary", "distribution_channels": ["internal API"],
                     "intended_use": "route support messages", "energy_kwh": 0.4, "energy_method": "RAPL",
                     "datasets": {"train": {"source_type": "synthetic", "description": "generated tickets",
                                            "collected_from": "2025-01-01", "collected_to": "2025-06-30"}}}
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        run = record_governed_run(store, workdir, documentation=documentation)
    code, out, err = govern_cli("docs", run.run_id, "--kind", "gpai-form", "--format", "json", "--out", "-")
    assert code == 0, err
    form = json.loads(out)
    fields = {f["key"]: f for s in form["sections"] for f in s["fields"]}
    assert fields["provider.name"] == {"key": "provider.name", "label": "Legal name of the provider",
                                       "value": "Example Bank NV", "source": "run config (documentation)"}
    assert fields["distribution.channels"]["value"] == "internal API"
    assert fields["energy.kwh"]["value"] == "0.4 (RAPL)"
    assert not any(x.startswith("1. General information: Legal name") for x in form["to_be_completed"])
    code, out, _ = govern_cli("docs", run.run_id, "--kind", "training-summary", "--out", "-")
    assert code == 0
    assert "| train | train.jsonl | synthetic data | generated tickets |" in out and "2025-01-01 to 2025-06-30" in out
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:  # --out - writes no file, so records none
        assert not any(a.kind == "report" for a in store.artifacts(run.run_id))


def test_a_bad_documentation_section_is_an_error_naming_the_line(tmp_path: Path) -> None:
    config = tmp_path / "govern.yaml"
    config.write_text("data:\n  train: t.jsonl\n  eval: e.jsonl\ndocumentation:\n  datasets:\n    test:\n"
                      "      source_type: public\n")
    with pytest.raises(ConfigError) as exc:
        load_run_config(config)
    assert "documentation.datasets" in str(exc.value) and "use train or eval" in str(exc.value)
    config.write_text("data:\n  train: t.jsonl\n  eval: e.jsonl\ndocumentation:\n  datasets:\n    train:\n"
                      "      source_type: bought\n")
    with pytest.raises(ConfigError) as exc:
        load_run_config(config)
    assert "line 7" in str(exc.value) and "source_type" in str(exc.value)


def test_annex_iv_draft_points_at_the_report_and_marks_what_govern_cannot_fill(
        recorded: RecordedDB, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    draft = json.loads(_docs(govern_cli, recorded, "annex-iv", "json", tmp_path).read_text())
    fields = {f["key"]: f for s in draft["sections"] for f in s["fields"]}
    assert "Data provenance" in fields["annex_iv.2(d)"]["value"] and recorded.run.run_id in fields["annex_iv.2(d)"]["value"]
    for point in ("2(e)", "7", "8", "9"):
        assert fields[f"annex_iv.{point}"]["value"] is None
    assert any(x.startswith("Annex IV points: 8 ") for x in draft["to_be_completed"])


def test_signed_document_verifies_and_a_tampered_one_fails(recorded: RecordedDB, govern_cli, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    from govern.signing.keys import generate_key_pair

    pair = generate_key_pair(workdir / "keys")
    code, out, err = govern_cli("docs", recorded.run.run_id, "--kind", "training-summary", "--db", recorded.url,
                                "--sign-key", str(pair.private_key))
    assert code == 0, err
    path = workdir / "reports" / f"{recorded.run.run_id}.training-summary.md"
    bundle = path.with_name(path.name + ".sigstore.json")
    assert bundle.is_file() and f"signed: reports/{bundle.name}" in out
    with LineageStore.open(recorded.url, read_only=True) as store:
        assert any(s.kind == "report" and s.bundle_path == str(bundle.resolve())
                   for s in store.signatures(recorded.run.run_id))
    verify = ("verify", str(path), "--signature", str(bundle), "--key", str(pair.public_key))
    assert govern_cli(*verify)[0] == 0
    path.write_text(path.read_text().replace("| no |", "| yes |"))
    assert govern_cli(*verify)[0] == 1


def test_no_document_is_drafted_from_a_tampered_record(recorded: RecordedDB, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    db = tmp_path / "copy.db"
    shutil.copy(recorded.url.removeprefix("sqlite:///"), db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE artifacts SET sha256 = 'ab' || substr(sha256, 3) WHERE kind = 'adapter'")
    code, _, err = govern_cli("docs", recorded.run.run_id, "--out", str(tmp_path / "docs"), "--db", f"sqlite:///{db}")
    assert code == 2 and "is broken" in err and "govern lineage verify" in err
    assert not (tmp_path / "docs").exists() or not any((tmp_path / "docs").iterdir())


def test_unknown_kind_or_format_is_a_clear_error(recorded: RecordedDB, govern_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = govern_cli("docs", recorded.run.run_id, "--kind", "dpia", "--db", recorded.url)
    assert code == 2 and "gpai-form" in err


def test_compliance_map_names_nist_ai_600_1_and_iso_42001_controls(recorded: RecordedDB, govern_cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = govern_cli("report", recorded.run.run_id, "--format", "json", "--out", "-", "--db", recorded.url)
    assert code == 0, err
    rows = {r["section"]: r for r in json.loads(out)["compliance"]}
    assert any("Data privacy" in x for x in rows["Privacy guarantee"]["nist_ai_600_1"])
    assert any(x.startswith("A.7.5") for x in rows["Data provenance"]["iso_42001"])
    assert any("Harmful bias" in x for x in rows["Fairness"]["nist_ai_600_1"])
    assert all(r["nist_ai_600_1"] and r["iso_42001"] for r in rows.values())  # every section is mapped
    code, html, _ = govern_cli("report", recorded.run.run_id, "--format", "html", "--out", "-", "--db", recorded.url)
    assert code == 0 and "NIST AI 600-1 (GenAI profile)" in html and "ISO/IEC 42001 Annex A" in html


def test_documents_render_as_pdf(recorded: RecordedDB, govern_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import require_tool

    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        from tests.conftest import skip_or_fail

        skip_or_fail("needs WeasyPrint and Pango (pip install 'govern[pdf]')")
    require_tool("pdftotext", "Debian poppler-utils; extracts the PDF's text")
    import subprocess

    path = _docs(govern_cli, recorded, "gpai-form", "pdf", tmp_path)
    assert path.read_bytes().startswith(b"%PDF")
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "not legal advice" in " ".join(text.split()) and "Model Documentation Form" in text
