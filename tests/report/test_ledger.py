"""The privacy-budget ledger composes ε per data set over runs, and the policy cap blocks."""

from __future__ import annotations

import math
import os
from datetime import UTC, date, datetime
from pathlib import Path

import dp_accounting
import pytest
from dp_accounting import pld, rdp
from typer.testing import CliRunner

from govern.cli import app
from govern.evidence import Evidence, LedgerEntry
from govern.lineage import LineageStore, PolicyRef
from govern.lineage.records import LedgerRow
from govern.policy.engine import evaluate
from govern.policy.loader import policy_from_document
from govern.report import build_ledger, composed_epsilon
from govern.stage import ArtifactOut
from tests.report.populate import rdp_epsilon

#: (q, σ, steps) of the three runs already on the data set, then the fourth.
RUNS = [(0.05, 1.1, 100), (0.04, 1.3, 150), (0.06, 1.0, 80)]
FOURTH = (0.05, 0.9, 200)
DELTA = 1e-5
FINGERPRINT = "sha256:" + "f1" * 32


def _direct(spends: list[tuple[float, float, int]], accountant: object, delta: float) -> float:
    for q, sigma, steps in spends:
        accountant.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)  # type: ignore[attr-defined]
    return float(accountant.get_epsilon(delta))  # type: ignore[attr-defined]


def _record_training_run(store: LineageStore, q: float, sigma: float, steps: int, *, delta: float = DELTA,
                         dp: bool = True) -> str:
    run_id = store.create_run(name="ledger", policy=PolicyRef(name="default", version="1", digest="sha256:00"))
    execution = store.start_stage(run_id, "data", "sha256:01")
    store.add_artifacts(run_id, execution, [ArtifactOut(name="train.jsonl", kind="dataset", path="/data/train.jsonl",
                                                        sha256="sha256:" + "aa" * 32, size_bytes=10, role="input",
                                                        dataset_fingerprint=FINGERPRINT, rows=2000)])
    store.finish_stage(execution, "completed")
    execution = store.start_stage(run_id, "training", "sha256:02")
    eps = rdp_epsilon(q, sigma, steps, delta) if dp else None
    store.finish_stage(execution, "completed", evidence={
        "dp_enabled": dp, "non_private": not dp, "accountant": "rdp" if dp else None,
        "epsilon": {"rdp": eps} if dp else {}, "delta": delta if dp else None,
        "noise_multiplier": sigma if dp else None, "sample_rate": q if dp else None, "steps": steps, "epochs": 1.0,
        "n_train": 2000, "batch_size": 100, "method": "lora", "trainable_params": 1, "total_params": 2,
        "device": "cpu", "duration_s": 1.0, "seed": 0})
    store.set_run_status(run_id, "completed", decision="pass")
    return run_id


def test_ledger_composes_three_runs_and_the_cap_blocks_the_fourth(workdir: Path) -> None:
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        for q, sigma, steps in RUNS:
            _record_training_run(store, q, sigma, steps)
        report = build_ledger(store, date(2000, 1, 1), accountant="rdp")
        [budget] = report.datasets
        expected = _direct(RUNS, rdp.RdpAccountant(), DELTA)
        assert len(budget.runs) == 3 and budget.delta == DELTA
        assert budget.total_epsilon == pytest.approx(expected, rel=1e-9)
        # Composition beats adding the per-run ε, and exceeds the largest single run.
        assert max(r.epsilon for r in budget.runs if r.epsilon) < budget.total_epsilon < budget.sum_of_epsilons

        # The prospective fourth run, as the pipeline puts it into evidence before training.
        rows = store.privacy_ledger(FINGERPRINT)
        fourth = LedgerRow(run_id="run-next", dataset_fingerprint=FINGERPRINT, dp_enabled=True, delta=DELTA,
                           noise_multiplier=FOURTH[1], sample_rate=FOURTH[0], steps=FOURTH[2],
                           started_at=datetime.now(UTC), run_status="running")
        after_four = composed_epsilon([*rows, fourth], "rdp", DELTA)
        assert after_four == pytest.approx(_direct([*RUNS, FOURTH], rdp.RdpAccountant(), DELTA), rel=1e-9)
        cap = (budget.total_epsilon + after_four) / 2  # room for three runs, not for four
        loaded = policy_from_document({"apiVersion": "govern.dev/v1", "kind": "Policy",
                                       "metadata": {"name": "capped", "version": "1"},
                                       "privacy": {"max_total_epsilon_per_dataset": cap}}, "sha256:cap")
        for total, expected_decision in ((budget.total_epsilon, "pass"), (after_four, "block")):
            doc = Evidence(ledger=[LedgerEntry(dataset_fingerprint=FINGERPRINT, runs=4, total_epsilon=total,
                                               accountant="rdp")]).document()
            decision = evaluate(loaded.policy, {k: v for k, v in doc.items() if v is not None})
            assert decision.decision == expected_decision
            [rule] = [r for r in decision.results if r.rule_id.startswith("privacy.max_total_epsilon_per_dataset")]
            assert rule.status == ("pass" if expected_decision == "pass" else "fail")

        # Once the fourth run is recorded, the ledger report flags the data set as over its cap.
        _record_training_run(store, *FOURTH)
        capped = build_ledger(store, date(2000, 1, 1), accountant="rdp", cap=cap)
        assert capped.datasets[0].over_cap and capped.datasets[0].total_epsilon == pytest.approx(after_four)
        assert len(capped.runs) == 4


def test_pld_composition_matches_dp_accounting() -> None:
    spends = [(0.05, 1.1, 20), (0.04, 1.3, 30)]
    rows = [LedgerRow(run_id=f"r{i}", dataset_fingerprint=FINGERPRINT, dp_enabled=True, delta=DELTA,
                      noise_multiplier=s, sample_rate=q, steps=n, started_at=datetime.now(UTC), run_status="completed")
            for i, (q, s, n) in enumerate(spends)]
    expected = _direct(spends, pld.PLDAccountant(value_discretization_interval=1e-3), DELTA)
    assert composed_epsilon(rows, "dp_accounting_pld", DELTA) == pytest.approx(expected, rel=1e-9)
    assert composed_epsilon(rows, "prv", DELTA) == pytest.approx(expected, rel=1e-9)
    # PLD is tighter than RDP for the same mechanisms.
    assert composed_epsilon(rows, "dp_accounting_pld", DELTA) < composed_epsilon(rows, "rdp", DELTA)


def test_runs_without_dp_or_without_mechanism_parameters_are_never_optimistic() -> None:
    now = datetime.now(UTC)
    dp = LedgerRow(run_id="a", dataset_fingerprint=FINGERPRINT, dp_enabled=True, delta=DELTA, noise_multiplier=1.0,
                   sample_rate=0.05, steps=100, started_at=now, run_status="completed")
    no_dp = LedgerRow(run_id="b", dataset_fingerprint=FINGERPRINT, dp_enabled=False, started_at=now,
                      run_status="completed")
    opaque = LedgerRow(run_id="c", dataset_fingerprint=FINGERPRINT, dp_enabled=True, epsilon={"rdp": 2.0},
                       delta=1e-6, started_at=now, run_status="completed")
    assert composed_epsilon([dp, no_dp], "rdp", DELTA) == math.inf
    # Basic composition for the run whose (q, σ, steps) are unknown: ε_rdp(rest, δ − δ_c) + ε_c.
    expected = _direct([(0.05, 1.0, 100)], rdp.RdpAccountant(), DELTA - 1e-6) + 2.0
    assert composed_epsilon([dp, opaque], "rdp", DELTA) == pytest.approx(expected, rel=1e-9)
    assert composed_epsilon([dp, opaque], "rdp", 1e-6) == math.inf  # no δ left for the rest
    assert composed_epsilon([], "rdp", DELTA) == 0.0
    with pytest.raises(ValueError, match="unknown accountant"):
        composed_epsilon([dp], "moments", DELTA)


def test_ledger_cli_renders_every_format(workdir: Path) -> None:
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        _record_training_run(store, *RUNS[0])
        _record_training_run(store, 0.05, 1.0, 10, dp=False)
    runner = CliRunner()
    for fmt in ("md", "json", "html"):
        result = runner.invoke(app, ["report", "--since", "2000-01-01", "--format", fmt, "--policy", "default"])
        assert result.exit_code == 0, result.output
    md = (workdir / "reports" / "ledger-since-2000-01-01.md").read_text()
    assert "∞" in md and FINGERPRINT[:23] in md  # the non-DP run makes the data set's spend unbounded
    assert '"total_epsilon": "Infinity"' in (workdir / "reports" / "ledger-since-2000-01-01.json").read_text()


def test_evaluation_data_is_listed_with_its_role_but_never_charged(workdir: Path) -> None:
    """A governed run records train, eval and their redacted copies; DP-SGD only trained on the train
    files, so only they carry the run's ε (the eval files are listed as eval, ε 0)."""
    fingerprints = {name: "sha256:" + f"{i:02x}" * 32 for i, name in
                    enumerate(["train", "eval", "train.redacted", "eval.redacted"], start=0x10)}
    q, sigma, steps = RUNS[0]
    eps = rdp_epsilon(q, sigma, steps, DELTA)
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        run_id = store.create_run(name="governed", policy=PolicyRef(name="default", version="1", digest="sha256:00"))
        for stage, names in (("data", ["train", "eval"]), ("pii", ["train.redacted", "eval.redacted"])):
            execution = store.start_stage(run_id, stage, "sha256:01")
            store.add_artifacts(run_id, execution, [
                ArtifactOut(name=n, kind="dataset", path=f"/data/{n}.jsonl", sha256=fingerprints[n], size_bytes=10,
                            role="input" if stage == "data" else "output", dataset_fingerprint=fingerprints[n],
                            rows=100) for n in names])
            store.finish_stage(execution, "completed")
        execution = store.start_stage(run_id, "training", "sha256:02")
        store.finish_stage(execution, "completed", evidence={
            "dp_enabled": True, "non_private": False, "accountant": "rdp", "epsilon": {"rdp": eps}, "delta": DELTA,
            "noise_multiplier": sigma, "sample_rate": q, "steps": steps, "epochs": 1.0, "n_train": 2000,
            "batch_size": 100, "method": "lora", "trainable_params": 1, "total_params": 2, "device": "cpu",
            "duration_s": 1.0, "seed": 0})
        store.set_run_status(run_id, "completed", decision="pass")
        report = build_ledger(store, date(2000, 1, 1), accountant="rdp", cap=8.0)
    budgets = {b.dataset_name: b for b in report.datasets}
    assert set(budgets) == set(fingerprints)
    for name in ("train", "train.redacted"):
        assert budgets[name].roles == ["train"] and budgets[name].charged_runs == 1
        assert budgets[name].total_epsilon == pytest.approx(eps, rel=1e-9) and budgets[name].runs[0].charged
    for name in ("eval", "eval.redacted"):
        b = budgets[name]
        assert b.roles == ["eval"] and b.charged_runs == 0 and b.total_epsilon == 0.0 and b.sum_of_epsilons == 0
        assert [(r.run_id, r.role, r.charged) for r in b.runs] == [(run_id, "eval", False)]
    # The cap is checked on the two training files only.
    assert sorted(b.dataset_name for b in report.datasets if b.charged_runs > 0) == ["train", "train.redacted"]

    result = CliRunner().invoke(app, ["report", "--since", "2000-01-01", "--format", "md"])
    assert result.exit_code == 0, result.output
    md = (workdir / "reports" / "ledger-since-2000-01-01.md").read_text()
    [eval_row] = [line for line in md.splitlines() if line.startswith("| eval |")]
    assert "| eval |" in eval_row and "0 (not trained on)" in eval_row and "0 of 1 runs" in eval_row
    [train_row] = [line for line in md.splitlines() if line.startswith("| train |")]
    assert "| train |" in train_row and "1 of 1 runs" in train_row


def test_the_per_dataset_cap_does_not_charge_a_file_for_runs_that_only_evaluated_on_it(workdir: Path) -> None:
    """Yesterday's eval file becomes today's train file: the cap composes today's run alone."""
    from govern.evidence import DataEvidence, FileRecord, LeakageEvidence, TrainingEvidence
    from govern.gate import ledger_evidence

    q, sigma, steps = RUNS[0]
    fields = {"dp_enabled": True, "non_private": False, "accountant": "rdp",
              "epsilon": {"rdp": rdp_epsilon(q, sigma, steps, DELTA)}, "delta": DELTA, "noise_multiplier": sigma,
              "sample_rate": q, "steps": steps, "epochs": 1.0, "n_train": 2000, "batch_size": 100, "method": "lora",
              "trainable_params": 1, "total_params": 2, "device": "cpu", "duration_s": 1.0, "seed": 0}
    with LineageStore.open(os.environ["GOVERN_DB_URL"]) as store:
        earlier = store.create_run(name="earlier", policy=PolicyRef(name="default", version="1", digest="sha256:00"))
        execution = store.start_stage(earlier, "data", "sha256:01")
        store.add_artifacts(earlier, execution, [ArtifactOut(
            name="eval", kind="dataset", path="/data/eval.jsonl", sha256="sha256:" + "ee" * 32, size_bytes=10,
            role="input", dataset_fingerprint=FINGERPRINT, rows=100)])
        store.finish_stage(execution, "completed")
        execution = store.start_stage(earlier, "training", "sha256:02")
        store.finish_stage(execution, "completed", evidence=fields)
        store.set_run_status(earlier, "completed", decision="pass")

        loaded = policy_from_document({"apiVersion": "govern.dev/v1", "kind": "Policy",
                                       "metadata": {"name": "capped", "version": "1"},
                                       "privacy": {"max_total_epsilon_per_dataset": 50.0}}, "sha256:cap")
        evidence = Evidence(
            data=DataEvidence(files=[FileRecord(role="train", path="/data/new-train.jsonl", format="jsonl",
                                                sha256="sha256:" + "ee" * 32, size_bytes=10, rows=100, columns=["text"],
                                                fingerprint=FINGERPRINT)],
                              train_rows=100, eval_rows=0, text_column="text",
                              leakage=LeakageEvidence(exact_duplicates=0, exact_fraction=0.0, near_duplicates=0,
                                                      near_fraction=0.0, threshold=0.9)),
            training=TrainingEvidence.model_validate(fields))
        [entry] = ledger_evidence(store, loaded, "run-now", evidence) or []
    assert entry.runs == 1 and entry.total_epsilon == pytest.approx(fields["epsilon"]["rdp"], rel=1e-9)
