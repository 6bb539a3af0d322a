"""The whole governed run through the real CLI, every real stage: the quickstart data (with its planted
PII), DP-LoRA on the packaged MiniLM (few steps, to fit CI), membership and fairness audits, signing with
a generated key, then the compliance officer's side: report from the DB alone, `govern verify`,
`govern check`, `govern lineage verify` — and no planted value anywhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

QUICKSTART = PROJECT_ROOT / "examples" / "quickstart"


def _planted() -> list[str]:
    return [p["value"] for p in json.loads((QUICKSTART / "planted_pii.json").read_text())]


@pytest.fixture
def quick_project(workdir: Path) -> Path:
    proj = workdir / "proj"
    proj.mkdir()
    for name in ("train.jsonl", "eval.jsonl"):
        shutil.copy(QUICKSTART / name, proj / name)
    config = yaml.safe_load((QUICKSTART / "govern.yaml").read_text())
    # Same stages and policy sections as the quickstart, sized for a CI test: a few DP steps.
    config["training"].update({"max_steps": 6, "max_length": 32, "batch_size": 32, "max_physical_batch_size": 32,
                               "checkpoint_every": 3})
    config["training"]["dp"]["delta"] = 1e-5
    config["audits"] = {"membership": {"max_records": 120, "bootstrap": 50},
                        "fairness": {"bootstrap": 100, "intersections": False}}
    policy = yaml.safe_load((PROJECT_ROOT / "policies" / "default.yaml").read_text())
    # six steps cannot learn the task: the test is about governance, so accuracy is not gated here
    policy["evaluation"]["min_accuracy"] = None
    policy["fairness"]["max_difference"] = {}
    policy["fairness"]["min_ratio"] = {}
    policy["signing"]["required"] = True
    (proj / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    config["policy"] = "policy.yaml"
    config["signing"] = {"method": "key", "private_key": "keys/signing-key.pem"}
    (proj / "govern.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return proj


@pytest.mark.slow
def test_governed_run_end_to_end_then_audit_from_the_db(quick_project: Path, workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    code, _, err = govern_cli("keys", "generate", str(quick_project / "keys"))
    assert code == 0, err
    code, out, err = govern_cli("run", str(quick_project / "govern.yaml"), "--format", "json")
    assert code == 0, err + out
    outcome = json.loads(out)
    assert outcome["status"] == "completed" and outcome["decision"] in ("pass", "warn")
    stages = {s["name"]: s["status"] for s in outcome["stages"]}
    assert stages == {"data": "completed", "pii": "completed", "canaries": "skipped", "training": "completed",
                      "evaluation": "completed", "membership": "completed", "fairness": "completed",
                      "model_card": "completed", "signing": "completed"}
    run_id = outcome["run_id"]

    code, out, _ = govern_cli("runs", "show", run_id, "--format", "json")
    details = json.loads(out)
    kinds = {a["kind"] for a in details["artifacts"]}
    assert {"dataset", "model", "predictions", "bundle"} <= kinds

    from govern.lineage import LineageStore

    with LineageStore.open() as store:
        evidence = store.evidence(run_id)
        training = evidence["training"]
        assert training["dp_enabled"] and training["steps"] == 6
        assert 0 < training["epsilon"]["rdp"] <= 8.0
        assert evidence["pii"]["redacted"] and evidence["pii"]["by_entity"]["EMAIL_ADDRESS"] > 0
        assert evidence["membership"]["attacks"] and evidence["fairness"]["groups"]
        sigs = store.signatures(run_id)
        assert {s.kind for s in sigs} >= {"model", "provenance", "audit", "bom"}  # CI installs the bom extra
        verify_cmd = store.completed_stage(run_id, "signing").outputs["verify_command"]  # type: ignore[union-attr]
        run_dir = Path(store.get_run(run_id).run_dir or "")

    # the compliance officer's side: the exact verify command the run printed
    import shlex

    args = shlex.split(verify_cmd.replace('"$GOVERN_DB_URL"', "ENV_DB"))
    assert args[:2] == ["govern", "verify"]
    import os

    args = [os.environ["GOVERN_DB_URL"] if a == "ENV_DB" else a for a in args[2:]]
    code, out, err = govern_cli("verify", *args)
    assert code == 0, out + err
    code, out, _ = govern_cli("check", run_id, "--junit", str(workdir / "junit.xml"))
    assert code == 0
    code, out, _ = govern_cli("lineage", "verify")
    assert code == 0

    # reports regenerate from the DB alone
    shutil.rmtree(run_dir)
    outputs = []
    for fmt in ("html", "md", "json"):
        code, out, err = govern_cli("report", run_id, "--format", fmt, "--out", str(workdir / "reports"))
        assert code == 0, err
        outputs.append((workdir / "reports" / f"{run_id}.{fmt}").read_text())
    assert "ε" in outputs[0] and run_id in outputs[1]

    # no planted PII anywhere govern wrote: DB file, reports, JUnit, the remaining run folders
    planted = _planted()
    written = [p for p in workdir.rglob("*") if p.is_file() and p.parent != quick_project]
    assert any(p.suffix == ".db" for p in written)
    for path in written:
        blob = path.read_bytes()
        for value in planted:
            assert value.encode() not in blob, f"planted value in {path}"
