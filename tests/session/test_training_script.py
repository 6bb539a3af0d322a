"""``training.script``: `govern run` executes the user's own training script as the run's training stage
and the script's ``govern.session`` joins that run — one command for CI, the same gates and record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from govern import api
from govern.errors import StageError
from govern.lineage import LineageStore
from govern.training import accounting
from tests.conftest import PROJECT_ROOT
from tests.session.conftest import Project

SCRIPT = Path(__file__).with_name("hf_user_script.py")


def _with_script(project: Project, script: Path, args: list[str]) -> None:
    data = yaml.safe_load(project.config.read_text())
    data["training"].update({"script": str(script), "script_args": args})
    project.config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_govern_run_executes_the_training_script_and_governs_it(project: Project, workdir: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               govern_cli: Any) -> None:
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))  # the script imports tests.session.* like a user's module
    _with_script(project, SCRIPT, [str(project.config), str(workdir / "out"), "--max-steps", "8"])
    outcome = api.run(project.config)
    assert outcome.status == "completed", outcome.error
    stages = {s.name: s.status for s in outcome.stages}
    assert stages["data"] == stages["pii"] == stages["training"] == stages["evaluation"] == "completed"
    with LineageStore.open() as store:
        runs = store.list_runs()
        evidence = store.evidence(outcome.run_id)
        artifacts = store.artifacts(outcome.run_id)
    assert len(runs) == 1  # the script's session joined the run; it opened none of its own
    t = evidence["training"]
    q = accounting.poisson_sample_rate(254, 32)
    assert t["loop"] == "session" and t["steps"] == 8 and t["sample_rate"] == q
    assert t["integrity"]["violations"] == 0
    model = next(a for a in artifacts if a.kind == "adapter" and a.role == "output")
    assert model.sha256 == t["model_digest"]  # re-computed by `govern run` from the saved files
    assert evidence["membership"]["attacks"]
    code, out, err = govern_cli("lineage", "verify")
    assert code == 0, out + err


def test_a_training_script_that_raises_fails_the_training_stage(project: Project, workdir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    script = workdir / "crash.py"
    script.write_text("import govern, sys\n"
                      "with govern.session(sys.argv[1]) as run:\n"
                      "    run.training_data()\n"
                      "    raise ValueError('loss is NaN')\n")
    monkeypatch.setenv("PYTHONPATH", str(PROJECT_ROOT))
    _with_script(project, script, [str(project.config)])
    with pytest.raises(StageError, match="ValueError at crash.py:4"):
        api.run(project.config)
    with LineageStore.open() as store:
        (record,) = store.list_runs()
    assert record.status == "failed" and "loss is NaN" in (record.error or "")
    assert "training" in (record.error or "")


ENTRY_SCRIPT = '''
import sys
from pathlib import Path
import govern

def main(config):
    with govern.session(config) as run:
        Path(sys.argv[0]).with_name("ran").write_text(run.run_id)  # user code: must not run on a block

govern.script_main(main, __file__)
'''


def _entry(project: Project, *args: str) -> Any:
    import os
    import subprocess
    import sys

    script = project.root / "entry.py"
    script.write_text(ENTRY_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(script), *args], cwd=project.root, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_script_main_gives_a_script_govern_runs_exit_codes(workdir: Path, session_bert: Path) -> None:
    """``govern.script_main``: 1 with the rule on stderr when a gate blocks (user code never ran), 2 with the
    file named on bad input, no traceback either way; the config defaults to govern.yaml beside the script."""
    from tests.session.conftest import make_project, planted

    blocked = make_project(workdir / "blocked", session_bert, [planted("731-15-6065", 1)])  # an SSN: blocked
    (blocked.root / "govern.yaml").write_text(blocked.config.read_text())
    done = _entry(blocked)  # no argument: govern.yaml beside the script
    assert done.returncode == 1, done.stderr[-2000:]
    assert "pii" in done.stderr.lower() and "Traceback" not in done.stderr
    assert not (blocked.root / "ran").exists() and "731-15-6065" not in done.stdout + done.stderr

    missing = _entry(blocked, str(blocked.root / "nowhere.yaml"))
    assert missing.returncode == 2 and "nowhere.yaml" in missing.stderr and "Traceback" not in missing.stderr
