"""`govern runs show` states one decision and one policy: the latest, as its findings table does."""

from __future__ import annotations

import re
from pathlib import Path

from govern.lineage import LineageStore
from tests.report.populate import record_governed_run


def test_runs_show_after_a_stricter_check_states_the_check_decision_and_its_policy(
        workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{workdir / 'lineage.db'}"
    with LineageStore.open(url) as store:
        run = record_governed_run(store, workdir)  # under the default policy: warn (a waived fairness finding)
    assert run.decision == "warn"

    code, out, err = govern_cli("check", run.run_id, "--policy", "strict", "--db", url)
    assert code == 1, out + err  # the strict policy blocks what the default policy let through

    code, out, err = govern_cli("runs", "show", run.run_id, "--db", url)
    assert code == 0, out + err
    text = " ".join(out.split())
    header = re.search(r"decision=(\w+) \((\w+),", text)
    assert header is not None, text
    assert header.groups() == ("block", "check") and "check decision: block" in text
    [policy_line] = [line for line in out.splitlines() if line.startswith("policy ")]
    assert policy_line.split()[1] == "strict"
    # the run-time decision is still shown, labelled as such, with the policy it was made under
    assert "at run time: decision=warn, run policy default" in text

    # before any check, the header is the run's own final decision under its own policy, stated once
    with LineageStore.open(url) as store:
        second = record_governed_run(store, workdir, name="second")
    code, out, _ = govern_cli("runs", "show", second.run_id, "--db", url)
    text = " ".join(out.split())
    assert "decision=warn (final," in text and "at run time" not in text
    assert [line.split()[1] for line in out.splitlines() if line.startswith("policy ")] == ["default"]
