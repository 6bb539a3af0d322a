"""``training.script``: `govern run` executes the user's own training script as the run's training stage.

CI keeps one command. The training stage starts the script in a child process with the run's id in
``GOVERN_JOIN_RUN``; the script's ``govern.session(...)`` sees it and *joins* this run instead of opening a
new one (:meth:`govern.pipeline.Pipeline.join`: the stored config, policy and the completed pre-training
stages' outputs, read from the DB, nothing written). ``run.finish(model, ...)`` in the child saves the model
and writes the training stage's result (evidence, outputs, artifacts) to the file named by
``GOVERN_JOIN_RESULT``; this process reads it back, re-computes the model's digest from the saved files
(the record never takes the child's word for which bytes were trained), and the pipeline records the
stage, gates it and runs evaluation, membership, fairness and signing as for the built-in recipe.

An exception in the script is written to the result file the same way a session records it (type,
location, message withheld when it quotes a record) and fails the stage; a script that exits without a
result fails it too, with its exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from govern.errors import StageError
from govern.stage import ArtifactOut, BaseModelOut, StageContext, StageResult, artifact_for, file_sha256

#: The run a training script's session joins, and where its ``finish`` writes the training result.
JOIN_RUN_ENV = "GOVERN_JOIN_RUN"
JOIN_RESULT_ENV = "GOVERN_JOIN_RESULT"
RESULT_FILE = "session-result.json"


def script_digest(script: Path) -> str:
    """Part of the training stage's input digest: a changed script trains another model (resume re-runs it)."""
    return file_sha256(script) if script.is_file() else "missing"


def write_result(path: Path, result: StageResult | None, error: str | None = None) -> None:
    """The child's side: the training stage's result (or the failure's description) as JSON."""
    if result is None:
        data: dict[str, Any] = {"error": error or "the training script ended without run.finish(...)"}
    else:
        data = {"evidence": result.evidence.model_dump(mode="json"),
                "outputs": result.outputs.model_dump(mode="json"),
                "artifacts": [a.model_dump(mode="json") for a in result.artifacts],
                "base_model": result.base_model.model_dump(mode="json") if result.base_model else None}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def run_script(ctx: StageContext, stage: str) -> StageResult:
    """Run ``training.script`` joined to this run; the training stage's result it wrote, checked."""
    from govern.evidence import TrainingEvidence
    from govern.training.stage import TrainingOutputs

    cfg = ctx.config.training
    script = cfg.script
    assert script is not None
    if not script.is_file():
        raise StageError(stage, f"training.script: {script} is not a file")
    result_path = ctx.stage_dir(stage) / RESULT_FILE
    result_path.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "GOVERN_RESUME"}  # the child joins, it never resumes
    env.update({JOIN_RUN_ENV: ctx.run_id, JOIN_RESULT_ENV: str(result_path)})
    if ctx.db_url:
        env["GOVERN_DB_URL"] = ctx.db_url
    command = [sys.executable, str(script), *cfg.script_args]
    try:
        done = subprocess.run(command, cwd=script.parent, env=env, check=False)
    except OSError as exc:
        raise StageError(stage, f"training.script {script} could not be started ({type(exc).__name__})") from None
    if not result_path.is_file():
        raise StageError(stage, f"training.script {script} exited with code {done.returncode} without a training "
                                "result (did it call govern.session(...) and run.finish(model, tokenizer=...)?)")
    data = json.loads(result_path.read_text(encoding="utf-8"))
    if "error" in data:
        raise StageError(stage, f"training.script {script}: {data['error']}")
    if done.returncode != 0:
        raise StageError(stage, f"training.script {script} exited with code {done.returncode} after run.finish")
    evidence = TrainingEvidence.model_validate(data["evidence"])
    outputs = TrainingOutputs.model_validate(data["outputs"])
    artifacts = [ArtifactOut.model_validate(a) for a in data["artifacts"]]
    if outputs.model_dir is None:
        raise StageError(stage, f"training.script {script} recorded no model folder")
    model = artifact_for(Path(outputs.model_dir), artifacts[0].name if artifacts else "model",
                         artifacts[0].kind if artifacts else "model")
    if model.sha256 != evidence.model_digest or model.sha256 != outputs.model_digest:
        raise StageError(stage, f"training.script {script}: the saved model's files ({model.sha256[:19]}…) are not "
                                "the ones its session recorded: changed after run.finish?")
    base = BaseModelOut.model_validate(data["base_model"]) if data.get("base_model") else None
    return StageResult(evidence=evidence, artifacts=artifacts, outputs=outputs, base_model=base)


def script_main(main: Callable[[Path], object], script: str | Path) -> NoReturn:
    """The entry point of a governed training script (``govern.script_main(main, __file__)``): calls
    ``main(config)`` with the config named on the command line, else ``govern.yaml`` beside the script, and
    exits the way ``govern run`` does — 0 when the run passes, 1 when a policy gate blocks it, 2 on bad
    input — with govern's message (which rule, which file and line) on standard error instead of a
    traceback, so a CI step that runs the script gets the same exit codes as one that runs ``govern run``."""
    from govern.errors import GovernError

    config = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(script).with_name("govern.yaml")
    try:
        main(config)
    except GovernError as exc:
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_code)
    sys.exit(0)
