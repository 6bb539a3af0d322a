"""The governed run: stages in order, a policy gate after each, every step recorded in the lineage DB.

This is the only module that knows the order of stages. A stage is registered by one line in
:data:`STAGES` ("module:Class"); it is imported when a run starts, so a stage whose heavy dependencies
(torch, presidio) are slow to import costs nothing to commands that don't run it.

Failure semantics (what a compliance officer relies on):
- any error after the run is created leaves it recorded as ``failed`` with the reason, and the stage
  that failed recorded as ``failed``;
- a ``block`` from the policy gate stops the run before the next stage and records it ``blocked``;
- a process killed mid-run leaves the run ``running``; ``govern run --resume RUN_ID`` continues it,
  reusing every completed stage whose input digest is unchanged.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import subprocess
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from govern.config import RunConfig, load_run_config, run_config_from_dict
from govern.errors import ConfigError, GovernError, RecordIntegrityError
from govern.evidence import EVIDENCE_MODELS, Evidence, RunEvidence
from govern.gate import decide, ledger_evidence, policy_ref, record, settle
from govern.lineage import LineageStore
from govern.policy import LoadedPolicy, PolicyDecision, load_policy, policy_from_document
from govern.runlock import RunLock, hold
from govern.stage import GateSoFar, NullProgress, Progress, Stage, StageContext, StageOutputs, StageResult
from govern.versions import package_versions

log = logging.getLogger("govern.pipeline")

#: The stages of a governed run, in order. Adding a stage: write its module, add one line here.
STAGES: list[str] = [
    "govern.data.stage:DataStage",
    "govern.pii.stage:PIIStage",
    "govern.audits.canaries:CanaryStage",
    "govern.training.stage:TrainingStage",
    "govern.audits.stages:EvaluationStage",
    "govern.audits.membership:MembershipStage",
    "govern.audits.stages:FairnessStage",
    "govern.report.model_card:ModelCardStage",
    "govern.signing.stage:SigningStage",
]

def load_stage(spec: str) -> Stage:
    module_name, _, class_name = spec.partition(":")
    stage: Stage = getattr(importlib.import_module(module_name), class_name)()  # a plug-in: checked by use
    return stage


def iter_stages(specs: list[str] | None = None) -> Iterator[Stage]:
    """Import each stage only when the run reaches it: a run blocked at the PII gate never imports torch."""
    for spec in specs if specs is not None else STAGES:
        yield load_stage(spec)


def training_split(specs: list[str] | None = None) -> tuple[list[str], str, list[str]]:
    """``STAGES`` split around the stage that trains the model (its class sets ``trains_model = True``):
    (stages before it, its spec, stages after it). ``govern.session`` runs the first part on entry, the
    user's own loop in place of the training stage, and the rest at ``finish``. Importing the stage classes
    to find it costs nothing here: a session trains, so torch is loaded anyway."""
    specs = specs if specs is not None else STAGES
    for index, spec in enumerate(specs):
        module_name, _, class_name = spec.partition(":")
        if getattr(getattr(importlib.import_module(module_name), class_name), "trains_model", False):
            return specs[:index], spec, specs[index + 1:]
    raise GovernError("no stage in STAGES trains the model (a stage class with trains_model = True)")


class PipelineListener(Protocol):
    """What the CLI hears about a run (for display). All methods optional in spirit; see NullListener."""

    def run_started(self, run_id: str, resumed: bool) -> None: ...
    def stage_started(self, name: str) -> None: ...
    def stage_finished(self, name: str, status: str, seconds: float, note: str = "") -> None: ...
    def gate(self, name: str, decision: PolicyDecision) -> None: ...


class NullListener:
    def run_started(self, run_id: str, resumed: bool) -> None:
        return None

    def stage_started(self, name: str) -> None:
        return None

    def stage_finished(self, name: str, status: str, seconds: float, note: str = "") -> None:
        return None

    def gate(self, name: str, decision: PolicyDecision) -> None:
        return None


@dataclass
class StageOutcome:
    name: str
    status: str  # completed | reused | skipped | failed | blocked
    seconds: float = 0.0


@dataclass
class RunOutcome:
    run_id: str
    status: str  # completed | blocked | failed
    decision: str | None
    results: list[dict[str, Any]] = field(default_factory=list)
    stages: list[StageOutcome] = field(default_factory=list)
    error: str | None = None
    run_dir: str | None = None
    db_url: str = ""


@dataclass
class ActiveRun:
    """A run between :meth:`Pipeline.begin` and its end: what the stages share and where it stands."""

    ctx: StageContext
    policy: LoadedPolicy
    outcome: RunOutcome
    resumed: bool = False
    #: The stage (or phase) running now: what a failure is attributed to.
    current: str = "setup"
    #: The decision of the gate that blocked the run, if one did.
    blocked: PolicyDecision | None = None



def code_revision() -> str | None:
    """The git commit of govern's own source tree, when it is a checkout (recorded for reproducibility)."""
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    rev = out.stdout.strip()
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return rev + ("+dirty" if dirty else "")


class Pipeline:
    """One governed run. Use :func:`run_pipeline` unless you need to swap stages (tests do)."""

    def __init__(self, store: LineageStore, *, progress: Progress | None = None,
                 listener: PipelineListener | None = None, stages: list[Stage] | None = None,
                 on_stage_done: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.progress = progress or NullProgress()
        self.listener = listener or NullListener()
        self._stages = stages
        self._on_stage_done = on_stage_done
        #: The run this pipeline recorded and its config, once known (for the witness written after it).
        self.run_id: str | None = None
        self.config: RunConfig | None = None
        #: The run's lock while this process executes it (see :mod:`govern.runlock`).
        self._lock: RunLock | None = None

    # ------------------------------------------------------------------------------------------ start
    def start(self, config_path: str | Path) -> RunOutcome:
        run_id, config, policy, run_dir = self.create(config_path)
        return self._execute(run_id, config, policy, run_dir, resumed=False)

    def create(self, config_path: str | Path) -> tuple[str, RunConfig, LoadedPolicy, Path]:
        """Record a new run of ``config_path`` (an invalid config: a failed run, and the ConfigError)."""
        path = Path(config_path)
        try:
            config = load_run_config(path)
            policy = load_policy(config.policy)
        except ConfigError as exc:
            run_id = self.store.create_run(name=path.parent.name or path.stem, kind="run", config_path=str(path))
            self.run_id = run_id
            self.store.set_run_status(run_id, "failed", error=str(exc))
            exc.run_id = run_id  # type: ignore[attr-defined]  # attach the run to the error for the CLI
            raise
        run_id = self.store.create_run(
            name=config.name, kind="run", config=config.model_dump(mode="json"), config_digest=config.digest(),
            config_path=str(path.resolve()), policy=policy_ref(policy), code_revision=code_revision(),
            versions=package_versions(),
        )
        self.run_id, self.config = run_id, config
        run_dir = (config.output_dir or Path.cwd() / ".govern" / "runs") / run_id
        self.store.set_run_dir(run_id, str(run_dir))
        self._lock = hold(run_dir, run_id)  # a resume of it while this process runs it is refused
        return run_id, config, policy, run_dir

    def resume(self, run_id: str) -> RunOutcome:
        run_id, config, policy, run_dir = self.reopen(run_id)
        return self._execute(run_id, config, policy, run_dir, resumed=True)

    def reopen(self, run_id: str) -> tuple[str, RunConfig, LoadedPolicy, Path]:
        """An unfinished run, checked against its audit chain and marked running again."""
        record, config, policy, run_dir = self._load_unfinished(run_id)
        # A killed run is still "running" in the DB: only the lock tells it from one that is (nothing written yet)
        self._lock = hold(run_dir, record.id)
        self.store.set_run_status(record.id, "running")
        self.store.append_event("run.resumed", run_id=record.id, payload={"previous_status": record.status})
        return record.id, config, policy, run_dir

    def _load_unfinished(self, run_id: str) -> tuple[Any, RunConfig, LoadedPolicy, Path]:
        """An unfinished run's record, stored config and policy (checked against the audit chain); no writes."""
        record = self.store.get_run(run_id)
        if record.kind != "run":
            raise GovernError(f"{record.id} is a '{record.kind}' record, not a governed run: nothing to resume")
        if record.status == "completed":
            raise GovernError(f"run {record.id} already completed (decision: {record.decision}); nothing to resume")
        if record.config is None or record.policy_document is None:
            raise GovernError(f"run {record.id} failed before its config was valid; start a new run instead")
        # Resume reuses recorded evidence and outputs: only if the record is still what govern wrote.
        integrity = self.store.verify_run(record.id)
        if not integrity.ok:
            raise RecordIntegrityError(f"run {record.id}", integrity.problems)
        base = Path(record.config_path).parent if record.config_path else Path.cwd()
        config = run_config_from_dict(record.config, base, source=f"stored config of {record.id}")
        self.run_id, self.config = record.id, config
        policy = policy_from_document(record.policy_document, record.policy_digest or "",
                                      source=f"stored policy of {record.id}", text=record.policy_source)
        run_dir = Path(record.run_dir) if record.run_dir else Path.cwd() / ".govern" / "runs" / record.id
        return record, config, policy, run_dir

    def join(self, run_id: str, stages: Iterable[Stage]) -> ActiveRun:
        """The context of a run that ``govern run`` is executing, for the training script it started
        (``training.script``): the stored config and policy, and the completed ``stages``' outputs and
        evidence, read from the DB. Writes nothing: the ``govern run`` process records the run."""
        record, config, policy, run_dir = self._load_unfinished(run_id)
        if record.status != "running":
            raise GovernError(f"run {record.id} is {record.status}, not running: a training script joins only the "
                              "run `govern run` is executing")
        active = self.begin(record.id, config, policy, run_dir, resumed=False)
        for stage in stages:
            if not stage.enabled(active.ctx):
                continue
            previous = self.store.completed_stage(record.id, stage.name)
            stored = _stored_outputs(stage, previous.outputs) if previous is not None else None
            if previous is None or stored is None:
                raise GovernError(f"run {record.id} has not completed stage {stage.name}: nothing to train on")
            _restore(stage, active.ctx, previous, stored)
        return active

    # ---------------------------------------------------------------------------------------- execute
    def _execute(self, run_id: str, config: RunConfig, policy: LoadedPolicy, run_dir: Path, *, resumed: bool
                 ) -> RunOutcome:
        try:
            active = self.begin(run_id, config, policy, run_dir, resumed=resumed)
            with self.guard(active):
                stages: Iterable[Stage] = self._stages if self._stages is not None else iter_stages()
                if not self.advance(active, stages):
                    return active.outcome
                return self.conclude(active)
        finally:
            self.release()

    def release(self) -> None:
        """Let another process resume the run (this one is done with it); the process ending does it too."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # The three phases of a run, public so that ``govern.session`` can run the user's own training
    # between the pre-training and the post-training stages through the same machinery and gates.
    def begin(self, run_id: str, config: RunConfig, policy: LoadedPolicy, run_dir: Path, *, resumed: bool
              ) -> ActiveRun:
        """The run's context (evidence so far, typed outputs) before its first stage."""
        run_dir.mkdir(parents=True, exist_ok=True)
        outcome = RunOutcome(run_id=run_id, status="running", decision=None, run_dir=str(run_dir),
                             db_url=self.store.display_url)
        evidence = Evidence(run=RunEvidence(run_id=run_id, name=config.name, task=config.task,
                                            config_digest=config.digest()))
        ctx = StageContext(run_id=run_id, config=config, run_dir=run_dir, policy=policy.policy, evidence=evidence,
                           db_url=self.store.url, progress=self.progress,
                           started_at=self.store.get_run(run_id).started_at)
        self.listener.run_started(run_id, resumed)
        return ActiveRun(ctx=ctx, policy=policy, outcome=outcome, resumed=resumed)

    @contextmanager
    def guard(self, active: ActiveRun) -> Iterator[None]:
        """Any error inside records the run ``failed`` with the reason (and the stage it happened in)."""
        try:
            yield
        except GovernError as exc:
            self._fail(active.outcome, f"{active.current}: {exc}")
            raise
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                self._fail(active.outcome, f"{active.current}: interrupted by the user")
                raise
            run_dir = active.ctx.run_dir
            (run_dir / "error.log").write_text(traceback.format_exc())
            self._fail(active.outcome, f"{active.current}: internal error {type(exc).__name__} (details in "
                                       f"{run_dir / 'error.log'})")
            raise

    def advance(self, active: ActiveRun, stages: Iterable[Stage]) -> bool:
        """Run ``stages`` in order with a gate after each; False when a gate blocked (the run is then
        recorded ``blocked`` and ``active.blocked`` holds the decision)."""
        ctx, policy, outcome = active.ctx, active.policy, active.outcome
        for stage in stages:
            active.current = stage.name
            self._run_stage(stage, ctx, active.resumed, outcome)
            # The per-data-set privacy ledger, once a stage (training, run or reused) has spent budget.
            ctx.evidence.ledger = ledger_evidence(self.store, policy, ctx.run_id, ctx.evidence)
            decision = self._gate(stage.name, ctx, policy, final=False)
            # What the signing stage attests: the decision so far, waivers applied.
            ctx.gate = GateSoFar(decision=decision.decision, policy_digest=policy.digest)
            if decision.decision == "block":
                record(self.store, ctx.run_id, policy, decision, kind="gate")
                settle(self.store, ctx.run_id, "block")
                outcome.status, outcome.decision = "blocked", "block"
                outcome.results = [r.model_dump(mode="json") for r in decision.results]
                outcome.stages[-1].status = outcome.stages[-1].status + "/blocked"
                active.blocked = decision
                return False
            if self._on_stage_done is not None:
                self._on_stage_done(stage.name)
        return True

    def conclude(self, active: ActiveRun) -> RunOutcome:
        """The run's final decision, recorded; closes the run."""
        active.current = "final decision"
        final = self._gate("final", active.ctx, active.policy, final=True, kind="final")
        outcome = active.outcome
        status = settle(self.store, active.ctx.run_id, final.decision)
        if status == "completed":  # its model becomes a candidate version in the registry
            from govern.registry import register_after_run

            register_after_run(self.store, active.ctx.run_id)
        outcome.status, outcome.decision = status, final.decision
        outcome.results = [r.model_dump(mode="json") for r in final.results]
        return outcome

    def _fail(self, outcome: RunOutcome, reason: str) -> None:
        outcome.status, outcome.error = "failed", reason
        try:
            self.store.set_run_status(outcome.run_id, "failed", error=reason)
        except Exception:  # noqa: BLE001 - never mask the original error with a DB error
            log.exception("could not record the failure of %s", outcome.run_id)

    def _run_stage(self, stage: Stage, ctx: StageContext, resumed: bool, outcome: RunOutcome) -> str:
        name = stage.name
        if not stage.enabled(ctx):
            exec_id = self.store.start_stage(ctx.run_id, name, "")
            self.store.finish_stage(exec_id, "skipped")
            outcome.stages.append(StageOutcome(name, "skipped"))
            self.listener.stage_finished(name, "skipped", 0.0, "disabled by config")
            return "skipped"
        input_digest = stage.input_digest(ctx)
        if resumed:
            previous = self.store.completed_stage(ctx.run_id, name)
            stored = _stored_outputs(stage, previous.outputs) if previous is not None else None
            if previous is not None and previous.input_digest == input_digest and stored is not None:
                _restore(stage, ctx, previous, stored)
                outcome.stages.append(StageOutcome(name, "reused"))
                self.listener.stage_finished(name, "reused", 0.0, "unchanged inputs; result reused")
                return "reused"
        self.listener.stage_started(name)
        exec_id = self.store.start_stage(ctx.run_id, name, input_digest)
        started = time.perf_counter()
        try:
            result: StageResult = stage.run(ctx)
        except BaseException as exc:
            seconds = time.perf_counter() - started
            reason = str(exc) if isinstance(exc, GovernError) else f"{type(exc).__name__}"
            self.store.finish_stage(exec_id, "failed", error=reason)
            outcome.stages.append(StageOutcome(name, "failed", seconds))
            self.listener.stage_finished(name, "failed", seconds, reason)
            raise
        seconds = time.perf_counter() - started
        if result.artifacts:
            self.store.add_artifacts(ctx.run_id, exec_id, result.artifacts)
        if result.pii_findings:
            self.store.add_pii_findings(ctx.run_id, result.pii_findings)
        if result.base_model is not None:
            base = result.base_model
            self.store.link_base_model(ctx.run_id, self.store.upsert_base_model(name=base.name, path=base.path,
                                                                                digest=base.digest))
        for signature in result.signatures:
            self.store.add_signature(ctx.run_id, **signature.model_dump())
        evidence_json = result.evidence.model_dump(mode="json")
        self.store.finish_stage(exec_id, "completed", evidence=evidence_json,
                                outputs=result.outputs.model_dump(mode="json"))
        if name in EVIDENCE_MODELS:  # helper stages (canaries) produce files, not gated evidence
            setattr(ctx.evidence, name, result.evidence)
        ctx.outputs[name] = result.outputs
        outcome.stages.append(StageOutcome(name, "completed", seconds))
        self.listener.stage_finished(name, "completed", seconds)
        return "completed"

    def _gate(self, name: str, ctx: StageContext, policy: LoadedPolicy, *, final: bool,
              kind: Literal["final"] | None = None) -> PolicyDecision:
        decision = decide(self.store, ctx.run_id, policy, ctx.evidence.document(), final=final, kind=kind)
        self.listener.gate(name, decision)
        return decision


def _restore(stage: Stage, ctx: StageContext, previous: Any, stored: StageOutputs) -> None:
    """A completed execution's evidence and outputs back into the run's context (resume, joined scripts)."""
    if stage.name in EVIDENCE_MODELS and previous.evidence is not None:
        setattr(ctx.evidence, stage.name, EVIDENCE_MODELS[stage.name].model_validate(previous.evidence))
    ctx.outputs[stage.name] = stored


def _stored_outputs(stage: Stage, stored: dict[str, Any] | None) -> StageOutputs | None:
    """A completed execution's stored outputs as the stage's outputs type; None when they do not validate
    (recorded by a govern whose stage handed on less): the stage then runs again instead of being reused."""
    try:
        return stage.outputs_model.model_validate(stored or {})
    except ValidationError:
        log.info("stored outputs of stage %s do not fit %s: re-running it", stage.name,
                 stage.outputs_model.__name__)
        return None


def _lineage_db_hint(path: Path) -> str | None:
    """``lineage_db`` of a config that does not validate, when its YAML parses and the value is a string."""
    from govern.yamlio import read_yaml

    try:
        data, _ = read_yaml(path)
    except (ConfigError, RuntimeError, OSError):
        return None
    value = data.get("lineage_db") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def run_pipeline(config_path: str | Path, *, db_url: str | None = None, resume: str | None = None,
                 progress: Progress | None = None, listener: PipelineListener | None = None) -> RunOutcome:
    """Run (or resume) a governed fine-tune; see :class:`Pipeline`."""
    url = db_url
    if url is None and resume is None:
        try:
            url = load_run_config(config_path).lineage_db
        except ConfigError:
            # An invalid config is still recorded as a failed run, in the DB it names when that one
            # setting can be read; otherwise in the default DB (GOVERN_DB_URL or .govern/lineage.db).
            url = _lineage_db_hint(Path(config_path))
    store = LineageStore.open(url)
    pipeline = Pipeline(store, progress=progress, listener=listener)
    try:
        if resume is not None:
            return pipeline.resume(resume)
        return pipeline.start(config_path)
    finally:
        lineage_to = pipeline.config.openlineage if pipeline.config is not None else None
        if pipeline.run_id is not None and (lineage_to is not None or os.environ.get("OPENLINEAGE_URL")
                                            or os.environ.get("OPENLINEAGE_CONFIG")):
            # Before the witness, so the witnessed head covers the record of what was sent.
            from govern.export.openlineage import emit_after_run

            emit_after_run(store, pipeline.run_id, lineage_to)
        if pipeline.run_id is not None:  # a witness of the chain head after every run, failed ones too
            from govern.lineage.witness import emit_witness, witness_key

            signing = pipeline.config.signing if pipeline.config is not None else None
            key = signing.private_key if signing is not None and signing.method == "key" else None
            emit_witness(store, "run", run_id=pipeline.run_id, sign_key=key or witness_key())
        store.close()
        if os.environ.get("WORLD_SIZE", "1") != "1":  # under torchrun: never leave the other ranks waiting
            from govern.training.distributed import release_workers

            release_workers()
