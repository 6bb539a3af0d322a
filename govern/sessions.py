"""Govern the user's own training loop: ``with govern.session("govern.yaml") as run: ...``.

The session is a governed run whose training stage is the user's code. On entry it records the run and
runs the stages before training (data, PII, canaries) with their gates through the pipeline — the same
:class:`~govern.pipeline.Pipeline` phases and the one gate path (:mod:`govern.gate`) as ``govern run`` — so
a block raises :class:`~govern.errors.RunBlocked` before any line of the block runs. Inside the block:

- :meth:`GovernedRun.training_data` — the records training may see (the PII stage's redacted copy when the
  policy redacts; audit canaries appended when the membership audit inserts them);
- :meth:`GovernedRun.make_private` — Opacus on the user's (model, optimizer, loader) with σ solved by
  govern's accountant for the configured ε over the planned steps (:mod:`govern.training.private`, the
  same path the built-in recipe uses), and the training-integrity tracker attached;
- :meth:`GovernedRun.finish` — saves the model, records the training stage's evidence (ε from the
  accountant's history, never from the user) and outputs, and runs the stages after training (evaluation,
  membership, fairness, model card, signing) and the final decision.

An exception in the block records the run ``failed`` (its type and where it was raised; its message only
when it quotes no training data); leaving the block without ``finish`` is a failed run too.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same script runs on every rank; rank 0 governs and records, every
rank trains. Rank 0 alone runs the stages before training and their gates and writes the lineage DB; the
other ranks wait for its outcome (:func:`govern.training.distributed.share`): a block raises the same
:class:`~govern.errors.RunBlocked` on every rank before any line of the block runs, and a pass hands them
rank 0's run context, so ``training_data()``, σ, q and the planned steps are the same everywhere (the data
files are read from the paths rank 0 wrote: one node, or a filesystem the nodes share). ``make_private``
wraps the model in Opacus' DPDDP on every rank (see :meth:`GovernedRun.attach_private` for the privacy
accounting). ``finish`` on rank 0 records the run; on the others it waits for rank 0's outcome and returns
it (or raises its block) without recording anything.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from govern.errors import GovernError, RunBlocked, SessionError
from govern.pipeline import ActiveRun, Pipeline, RunOutcome, iter_stages, load_stage, training_split
from govern.stage import (
    AlwaysEnabled,
    ArtifactOut,
    BaseModelOut,
    CanaryFiles,
    NullProgress,
    StageContext,
    StageOutputs,
    StageResult,
    artifact_for,
    digest_of,
)

if TYPE_CHECKING:
    from govern.config import RunConfig
    from govern.decisions import PolicyDecision
    from govern.lineage import LineageStore
    from govern.policy.schema import Policy
    from govern.training.private import IntegrityTracker, PlannedPrivacy

#: Longest exception message recorded for a failed session (the rest is cut, never stored).
MAX_REASON = 300


@dataclass(frozen=True)
class RankZeroNews:
    """What rank 0 tells the other ranks under ``torchrun``: how the session's entry (``ready`` with the run
    context, ``blocked``, ``failed``) or its ``finish`` (``completed`` with the outcome, ``blocked``,
    ``failed``) went. A dataclass, not a pydantic model: it carries the pipeline's own dataclasses, pickled
    to processes of the same script and version, and is never stored or read from outside."""

    status: Literal["ready", "blocked", "failed", "completed"]
    run_id: str | None = None
    gate: str | None = None
    decision: PolicyDecision | None = None
    error: str | None = None
    #: ``ready``: rank 0's run context (its evidence so far and the earlier stages' outputs).
    active: ActiveRun | None = None
    #: ``completed``: the run's outcome, as rank 0's ``finish`` returns it.
    outcome: RunOutcome | None = None

    def raise_for_status(self, where: str) -> None:
        if self.status == "blocked":
            assert self.run_id is not None and self.gate is not None and self.decision is not None
            raise RunBlocked(self.run_id, self.gate, self.decision)
        if self.status == "failed":
            raise SessionError(f"rank 0 failed {where} ({self.error}); its run records why")


def _tell_ranks(news: RankZeroNews) -> None:
    """Rank 0 under torchrun: hand ``news`` to the waiting ranks (nothing in one process)."""
    from govern.training.distributed import is_distributed, share

    if is_distributed():
        share(news)


def _hear_rank_zero() -> RankZeroNews:
    from govern.training.distributed import share

    news = share()
    assert isinstance(news, RankZeroNews)
    return news


def session(config_path: str | Path, resume: str | None = None, *, db_url: str | None = None) -> Session:
    """A governed run around the user's own training loop (use as a context manager).

    ``resume``: an unfinished run's id (or ``GOVERN_RESUME``): its completed pre-training stages are reused
    when their inputs are unchanged; the training itself starts again. ``db_url``: the lineage DB (default:
    the config's ``lineage_db``, else ``GOVERN_DB_URL`` / ``.govern/lineage.db``)."""
    return Session(Path(config_path), resume or os.environ.get("GOVERN_RESUME") or None, db_url)


class _PreparedStage(AlwaysEnabled):
    """The training stage as the pipeline records it: the result of the user's loop, already made."""

    def __init__(self, name: str, outputs_model: type[StageOutputs], result: StageResult, digest: str) -> None:
        self.name = name
        self.outputs_model = outputs_model
        self._result = result
        self._digest = digest

    def input_digest(self, ctx: StageContext) -> str:
        return self._digest

    def run(self, ctx: StageContext) -> StageResult:
        return self._result


class Session:
    """The context manager :func:`session` returns; ``__enter__`` gives the :class:`GovernedRun`."""

    def __init__(self, config_path: Path, resume: str | None, db_url: str | None) -> None:
        self.config_path = config_path
        self.resume = resume
        self.db_url = db_url
        self.run: GovernedRun | None = None
        self._store: LineageStore | None = None
        self._pipeline: Pipeline | None = None
        self._own_group = False

    def __enter__(self) -> GovernedRun:
        from govern.config import load_run_config
        from govern.errors import ConfigError
        from govern.lineage import LineageStore
        from govern.training.distributed import is_distributed, is_worker
        from govern.training.script import JOIN_RESULT_ENV, JOIN_RUN_ENV

        joined = os.environ.get(JOIN_RUN_ENV)
        if joined:  # started by `govern run` for training.script: join its run, record nothing ourselves
            if is_distributed():
                raise SessionError("a training.script that `govern run` starts runs in one process: run the "
                                   "script itself under torchrun (its govern.session records the run)")
            return self._join(joined, Path(os.environ.get(JOIN_RESULT_ENV) or "session-result.json"))
        self._own_group = is_distributed() and not _group_initialized()
        if is_worker():  # torchrun rank > 0: rank 0 governs; wait for its gates, record nothing
            return self._follow()
        url = self.db_url
        if url is None and self.resume is None:
            try:
                url = load_run_config(self.config_path).lineage_db
            except ConfigError:
                url = None  # Pipeline.create records the failed run and raises the ConfigError
        store = self._store = LineageStore.open(url)
        pipeline = self._pipeline = Pipeline(store)
        told = False  # whether the other ranks (torchrun) already heard how the entry ended
        try:
            before, training_spec, after = training_split()
            if self.resume is not None:
                run_id, config, policy, run_dir = pipeline.reopen(self.resume)
            else:
                run_id, config, policy, run_dir = pipeline.create(self.config_path)
            active = pipeline.begin(run_id, config, policy, run_dir, resumed=self.resume is not None)
            with pipeline.guard(active):
                passed = pipeline.advance(active, iter_stages(before))
            if not passed:  # recorded blocked; raised outside the guard, which would record it failed
                assert active.blocked is not None
                told = True
                _tell_ranks(RankZeroNews(status="blocked", run_id=run_id, gate=active.current,
                                         decision=active.blocked))
                raise RunBlocked(run_id, active.current, active.blocked)
            active.current = load_stage(training_spec).name
        except BaseException as exc:
            try:
                if not told:
                    _tell_ranks(RankZeroNews(status="failed", error=_short(exc)))
            finally:
                self._close()
            raise
        # The other ranks get the context without this process's progress display and digest cache.
        _tell_ranks(RankZeroNews(status="ready", run_id=run_id, active=replace(
            active, ctx=replace(active.ctx, progress=NullProgress(), digest_cache={}))))
        self.run = GovernedRun(pipeline, active, training_spec, after)
        return self.run

    def _follow(self) -> GovernedRun:
        from govern.training.distributed import world

        try:
            news = _hear_rank_zero()
            news.raise_for_status("before training")
        except BaseException:
            self._close()
            raise
        assert news.active is not None
        _, training_spec, after = training_split()
        self.run = GovernedRun(None, news.active, training_spec, after, rank=world()[1])
        return self.run

    def _join(self, run_id: str, result_path: Path) -> GovernedRun:
        from govern.lineage import LineageStore

        store = self._store = LineageStore.open(self.db_url)
        pipeline = self._pipeline = Pipeline(store)
        try:
            before, training_spec, after = training_split()
            active = pipeline.join(run_id, iter_stages(before))
            active.current = load_stage(training_spec).name
        except BaseException:
            self._close()
            raise
        self.run = GovernedRun(pipeline, active, training_spec, after, joined=result_path)
        return self.run

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        run = self.run
        try:
            if run is None or run.closed:
                return False  # finished, or already recorded (blocked or failed inside finish)
            if run.rank:  # torchrun rank > 0: rank 0 records the run; its own exit says what happened
                run.closed = True
                if exc is not None:
                    return False
                raise SessionError(f"rank {run.rank}: the `with govern.session(...)` block ended without "
                                   "run.finish(model, tokenizer=...)")
            if exc is not None:
                reason = f"{run.active.current} (user code): {_describe(exc, tb, run)}"
                run.fail(reason)
                return False
            run.fail(f"{run.active.current}: the session block ended without run.finish(model, ...): nothing was "
                     "recorded as trained, so nothing passes")
            raise SessionError(f"run {run.run_id} failed: the `with govern.session(...)` block ended without "
                               "run.finish(model, tokenizer=...)")
        finally:
            self._close()

    def _close(self) -> None:
        if self._own_group and _group_initialized():  # govern started the process group: govern ends it
            import torch.distributed as dist

            dist.destroy_process_group()
        store, pipeline = self._store, self._pipeline
        if pipeline is not None:
            pipeline.release()
        if store is None:
            return
        try:
            joined = self.run is not None and self.run.joined is not None
            if pipeline is not None and pipeline.run_id is not None and not joined:  # a witness after every run, as govern run
                from govern.lineage.witness import emit_witness, witness_key

                signing = pipeline.config.signing if pipeline.config is not None else None
                key = signing.private_key if signing is not None and signing.method == "key" else None
                emit_witness(store, "run", run_id=pipeline.run_id, sign_key=key or witness_key())
        finally:
            store.close()
            self._store = None


class GovernedRun:
    """One governed run around the user's training (see the module docstring)."""

    def __init__(self, pipeline: Pipeline | None, active: ActiveRun, training_spec: str, after: list[str], *,
                 joined: Path | None = None, rank: int = 0) -> None:
        #: None on torchrun ranks > 0, which never touch the lineage DB.
        self._maybe_pipeline = pipeline
        #: This process's torchrun rank (0 in one process): only rank 0 records.
        self.rank = rank
        #: Set when `govern run` started this script (training.script): where ``finish`` hands the training
        #: result back; the `govern run` process records the stage, the audits and the decision.
        self.joined = joined
        self.active = active
        self._training_stage = load_stage(training_spec)
        self._after = after
        self.closed = False
        self._started = time.perf_counter()
        self._records: list[dict[str, Any]] | None = None
        self._canaries = 0
        self._engine: Any = None
        self._dp_optimizer: Any = None
        self._tracker: IntegrityTracker | None = None
        self._planned: PlannedPrivacy | None = None
        self._batch_size: int | None = None
        self._noise_generator: Any = None
        self._completed = 0
        self._tokens = [0, 0]
        self._token_hook: Any = None
        self._losses: list[float] = []

    # ------------------------------------------------------------------------------------ facts
    @property
    def _pipeline(self) -> Pipeline:
        if self._maybe_pipeline is None:
            raise SessionError(f"rank {self.rank} does not record the run: rank 0 does")
        return self._maybe_pipeline

    @property
    def world_size(self) -> int:
        """Processes training together (torchrun's ``WORLD_SIZE``; 1 in one process)."""
        from govern.training.distributed import world

        return world()[0]

    @property
    def run_id(self) -> str:
        """The recorded run's id (``GOVERN_RESUME=<run id>`` continues it after a crash)."""
        return self.active.ctx.run_id

    @property
    def config(self) -> RunConfig:
        """The run config as recorded (validated; its digest is in the lineage DB): read your batch size,
        learning rate and plan from it so the record describes what trained."""
        return self.active.ctx.config

    @property
    def policy(self) -> Policy:
        """The policy the run's gates apply (its digest is recorded with every decision)."""
        return self.active.ctx.policy

    @property
    def run_dir(self) -> Path:
        """The run's own folder (stage outputs, checkpoints): a place for the Trainer's output_dir."""
        return self.active.ctx.run_dir

    @property
    def label_names(self) -> list[str]:
        """Classification: the data stage's sorted train labels (class index i is ``label_names[i]``)."""
        return list(self.active.ctx.data_paths().label_names)

    @property
    def planned_steps(self) -> int | None:
        """Optimizer steps σ was solved for (after :meth:`make_private`): more steps spend more ε."""
        return self._planned.total_steps if self._planned is not None else None

    @property
    def noise_multiplier(self) -> float | None:
        """σ govern's accountant solved for the target ε over :attr:`planned_steps` (after make_private)."""
        return self._planned.noise_multiplier if self._planned is not None else None

    # ------------------------------------------------------------------------------------- data
    def training_data(self) -> list[dict[str, Any]]:
        """The records training may see: the PII stage's redacted copy when the policy redacts (else the
        validated train file), plus the audit canaries the membership audit wants inserted."""
        if self._records is None:
            from govern.data.io import read_records

            paths = self.active.ctx.data_paths()
            records = read_records(Path(paths.train_path), paths.format or self.config.data.format)
            canaries = self.active.ctx.find(CanaryFiles)
            if canaries is not None:
                inserted = read_records(Path(canaries.inserted_path), "jsonl")
                self._canaries = len(inserted)
                records.extend(inserted)
            self._records = records
        return [dict(r) for r in self._records]

    def load_base_model(self) -> tuple[Any, Any]:
        """(model, tokenizer) of the config's base model, loaded as govern's recipe loads it (local files,
        a classification head sized and named for :attr:`label_names`)."""
        from govern.training.models import load_base_model

        folder, gguf = self._base_model()
        labels = self.label_names if self.config.task == "classification" else None
        return load_base_model(folder, gguf, task=self.config.task, label_names=labels)

    def prepare_model(self) -> tuple[Any, Any]:
        """(model, tokenizer) ready to train as the run config says — the built-in recipe's own first step
        (:func:`govern.training.trainer.prepare_model`): the base model with LoRA applied for
        ``training.method: lora`` (the config's r, alpha, dropout and target modules; the recipe's defaults
        for the architecture when none are named) or every weight trainable for ``full``, on the training
        device, in train mode. The adapter is then the one the recorded config describes; use
        :meth:`load_base_model` to adapt the model yourself."""
        from govern.training.models import pick_device
        from govern.training.trainer import prepare_model

        folder, gguf = self._base_model()
        spec = self._training_stage.spec(self.active.ctx)  # type: ignore[attr-defined]  # the TrainingStage builds the recipe
        prepared = prepare_model(spec, folder, gguf, pick_device(self.config.training.device))
        return prepared.model, prepared.tokenizer

    def _base_model(self) -> tuple[Path, str | None]:
        from govern.training.models import packaged_model, resolve_base_model

        base = self.config.base_model
        path, gguf = (Path(base.path) if base.path else None), base.gguf_file
        if base.package:
            folder, gguf = packaged_model(base.package, gguf)
            path = folder
        return resolve_base_model(path, gguf)

    # -------------------------------------------------------------------------------------- DP
    def make_private(self, model: Any, optimizer: Any, data_loader: Any, *, criterion: Any = None
                     ) -> tuple[Any, ...]:
        """Opacus on the user's objects, σ from govern's accountant: ``(model, optimizer, loader)`` — in
        Opacus' ghost mode ``(model, optimizer, criterion, loader)``. The loader must hold exactly the
        :meth:`training_data` records (n and the batch size fix q, δ and the planned steps)."""
        cfg = self.config.training
        n = len(data_loader.dataset)
        batch_size = data_loader.batch_size
        if not batch_size:
            raise SessionError("the data loader has no batch_size (a custom batch_sampler?): give "
                               "DataLoader(dataset, batch_size=B) — Opacus replaces it with Poisson sampling")
        model, optimizer, criterion, loader = self.attach_private(
            model, optimizer, data_loader, n=n, batch_size=int(batch_size), max_steps=cfg.max_steps,
            epochs=cfg.epochs, criterion=criterion)
        self._checkpoint_loop(model, optimizer, loader)
        if cfg.dp.grad_sample_mode == "ghost":
            return model, optimizer, criterion, loader
        return model, optimizer, loader

    def attach_private(self, model: Any, optimizer: Any, data_loader: Any, *, n: int, batch_size: int,
                       max_steps: int | None, epochs: float, criterion: Any = None, wrap_model: bool = True,
                       initial: dict[str, Any] | None = None) -> tuple[Any, Any, Any, Any]:
        """The one DP attachment under :meth:`make_private` and the framework integrations: σ planned for
        ``n`` records in logical batches of ``batch_size`` over ``max_steps`` (or ``epochs``), Opacus on
        (model, optimizer, data_loader), the integrity tracker on the optimizer. (model, optimizer,
        criterion, loader); ``initial``: the trainable weights before any checkpoint was loaded.

        Under torchrun the model is wrapped in Opacus' ``DifferentiallyPrivateDistributedDataParallel`` on
        every rank, and Opacus then takes its distributed path (``distributed=True``): each rank
        Poisson-samples its own shard of the data with the *global* rate q = batch_size / n (the loader's
        batch_size is the logical batch over all ranks), clips its per-sample gradients and sums them;
        only rank 0 adds the Gaussian noise, with the full std σ·C (``DistributedDPOptimizer.add_noise``);
        the sums are then all-reduced and divided by the expected global batch. Each logical step therefore
        releases Σ(all ranks' clipped per-sample gradients) + N(0, σ²C²) — exactly the single-process
        subsampled Gaussian mechanism with the same q and σ — and the ε rank 0's accountant reports (one
        entry per optimizer step, with q global and σ) is the single-process ε for those q, σ and steps.
        It is not optimistic: no rank's noise is counted that was not added (the others add none), and q is
        every record's real probability of joining a step, since each record lives in exactly one shard."""
        import torch

        from govern.training.private import (
            IntegrityTracker,
            attach_opacus,
            keep_ranks_in_lockstep,
            plan_privacy,
        )

        if self._engine is not None or self._tracker is not None:
            raise SessionError("make_private was already called in this session (one DP training per run)")
        cfg = self.config.training
        if not cfg.dp.enabled:
            raise SessionError("training.dp.enabled is false in the run config: make_private needs DP settings")
        expected = len(self._records) if self._records is not None else len(self.training_data())
        if n != expected:
            raise SessionError(f"the training data holds {n} records but run.training_data() returned {expected}: "
                               "train on exactly the records the session hands out")
        planned = plan_privacy(n, batch_size, cfg.dp, max_steps=max_steps, epochs=epochs,
                               max_delta=self.policy.privacy.max_delta)
        assert planned.noise_multiplier is not None
        generator = torch.Generator().manual_seed(cfg.seed + 7919)
        on_cpu = next(iter(model.parameters())).device.type == "cpu"
        users = model
        if self.world_size > 1:
            from opacus.distributed import DifferentiallyPrivateDistributedDataParallel as DPDDP

            # Broadcasts rank 0's weights (every rank starts from the same model) and makes Opacus take its
            # distributed path. With wrap_model=False (the Trainer, which wraps the model in its own DDP)
            # the hooks still go on the user's layers inside it.
            model = DPDDP(model)
        engine, model, optimizer, criterion, loader = attach_opacus(
            model, optimizer, data_loader, cfg.dp, planned.noise_multiplier, criterion=criterion,
            noise_generator=generator if on_cpu else None, wrap_model=wrap_model)
        if not wrap_model:
            model = users  # the Trainer keeps, moves and saves the module it was given
        rate = getattr(loader, "sample_rate", None)
        if rate is not None and abs(rate - planned.sample_rate) > 1e-12:
            raise SessionError(f"Opacus' sample rate {rate} differs from the planned {planned.sample_rate}")
        sampler = getattr(loader, "batch_sampler", None)
        if self.world_size > 1 and sampler is not None and hasattr(sampler, "generator"):
            # Every rank runs the same script, so the user's loader generator (or the global RNG) is seeded
            # alike everywhere: the ranks would draw the same Bernoulli masks over their shards, tying one
            # record's inclusion to another's. The accountant assumes independent draws; one stream per rank.
            sampler.generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7 * self.rank + 1)
            keep_ranks_in_lockstep(loader)
        self._engine, self._dp_optimizer, self._planned, self._batch_size = engine, optimizer, planned, batch_size
        self._noise_generator = generator if on_cpu else None
        self._tracker = IntegrityTracker(model, optimizer.original_optimizer, engine=engine, dp_optimizer=optimizer,
                                         planned=planned, initial=initial)
        self._count_tokens(model)
        return model, optimizer, criterion, loader

    # ------------------------------------------------------------------------- plain-loop checkpoints
    @property
    def completed_steps(self) -> int:
        """DP steps already taken (a resumed run continues from its newest recorded checkpoint): start your
        loop here, ``for step in range(run.completed_steps, run.planned_steps)``."""
        return self._completed

    def _generators(self, loader: Any) -> dict[str, Any]:
        generators: dict[str, Any] = {}
        if self._noise_generator is not None:
            generators["noise"] = self._noise_generator
        sampler_generator = getattr(getattr(loader, "batch_sampler", None), "generator", None)
        if sampler_generator is not None:
            generators["sampler"] = sampler_generator
        return generators

    def _checkpoint_loop(self, model: Any, optimizer: Any, loader: Any) -> None:
        """A plain loop's checkpoints: every ``training.checkpoint_every`` private steps, govern writes the
        trainable weights, optimizer state, accountant history and RNG states (the built-in recipe's format,
        recorded in the run's audit chain); a resumed session loads the newest recorded one here, so the
        accountant continues and the loop starts at :attr:`completed_steps`."""
        from govern.training import checkpoints as ckpt
        from govern.training.private import accounted_steps, resumed_stream_seed, unwrap

        cfg = self.config.training
        stage_dir = self.active.ctx.stage_dir(self._training_stage.name)
        plain, original = unwrap(model), optimizer.original_optimizer
        generators = self._generators(loader)
        engine, planned = self._engine, self._planned
        assert engine is not None and planned is not None
        if self.resumed:
            # Under torchrun rank 0 finds the checkpoint its audit chain vouches for and every rank loads it.
            found = ckpt.resume_on_every_rank(lambda: ckpt.resumable_checkpoint(stage_dir, self.checkpoint_chain()),
                                              self.rank, self.world_size)
            if found is not None:
                ckpt.load_weights(found, plain)
                ckpt.load_optimizer(found, original)
                engine.accountant.history = list(ckpt.check_history(found, planned.sample_rate))
                if not self.rank:
                    ckpt.load_rng(found, generators)
                elif "sampler" in generators:  # rank 0's saved states are its own; a fresh stream per step
                    generators["sampler"].manual_seed(resumed_stream_seed(cfg.seed * 1_000_003, self.rank,
                                                                          found.step))
                self.rebase_tracker()
                self._completed = found.step
        every = cfg.checkpoint_every
        if not every or self.rank:  # rank 0 alone writes (and records) checkpoints
            return
        chain = self.checkpoint_chain()

        def after_step(opt: Any, args: Any, kwargs: Any) -> None:
            steps = accounted_steps(engine)
            if steps % every:
                return
            history = [[float(s), float(q), int(k)] for s, q, k in engine.accountant.history]
            ckpt.save_checkpoint(stage_dir, model=plain, optimizer=original, generators=generators,
                                 keep=cfg.keep_checkpoints, chain=chain,
                                 state={"step": steps, "accountant_history": history,
                                        "noise_multiplier": planned.noise_multiplier,
                                        "sample_rate": planned.sample_rate})

        original.register_step_post_hook(after_step)

    def track(self, model: Any, optimizer: Any, *, batch_size: int, initial: dict[str, Any] | None = None) -> None:
        """Non-private training (``training.dp.enabled: false``): only the integrity tracker, so the run still
        records whether it trained; a policy that requires DP blocks it at the training gate."""
        from govern.training.private import IntegrityTracker

        if self._engine is not None or self._tracker is not None:
            raise SessionError("the training was already attached to this session")
        self._batch_size = batch_size
        self._tracker = IntegrityTracker(model, optimizer, initial=initial)
        self._count_tokens(model)

    def _count_tokens(self, model: Any) -> None:
        """Tokens the training forward passes read (real, and with padding): the compute estimate's D for
        the significant-modification check. Counted in train mode only; a forward the user runs for their own
        evaluation in train mode counts too, so the estimate errs high, as documented for the recipe's."""
        import torch

        from govern.training.private import unwrap

        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if not module.training:
                return
            ids = kwargs.get("input_ids")
            if ids is None and args and isinstance(args[0], torch.Tensor):
                ids = args[0]
            if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
                return
            mask = kwargs.get("attention_mask")
            if mask is None and len(args) > 1 and isinstance(args[1], torch.Tensor):
                mask = args[1]
            self._tokens[1] += int(ids.numel())
            self._tokens[0] += int(mask.sum().item()) if isinstance(mask, torch.Tensor) else int(ids.numel())

        self._token_hook = unwrap(model).register_forward_pre_hook(hook, with_kwargs=True)

    @property
    def privacy_engine(self) -> Any:
        """Opacus' PrivacyEngine of this run (None before :meth:`attach_private`): its accountant is the record."""
        return self._engine

    @property
    def sample_rate(self) -> float | None:
        """q the run was planned with (after :meth:`attach_private`)."""
        return self._planned.sample_rate if self._planned is not None else None

    def rebase_tracker(self) -> None:
        """Accept the current weights as the state after the last private step: govern itself just loaded
        them from a checkpoint the audit chain vouched for (the accountant's history is restored with them)."""
        if self._tracker is not None:
            self._tracker.rebase()

    @property
    def delta(self) -> float | None:
        return self._planned.delta if self._planned is not None else None

    @property
    def noise_generator(self) -> Any:
        """The DP noise generator (CPU runs; None on CUDA, where Opacus draws from the device's RNG)."""
        return self._noise_generator

    @property
    def resumed(self) -> bool:
        """True when this session reopened an unfinished run (``resume=`` / ``GOVERN_RESUME``) — or, for a
        script `govern run` started (training.script), when the run's audit chain already records training
        checkpoints: `govern run --resume` after a kill then continues the script's training from them."""
        if self.active.resumed:
            return True
        return self.joined is not None and bool(self.checkpoint_chain().records())

    def checkpoint_chain(self) -> Any:
        """Where this run records the checkpoints it writes and checks the one it resumes from."""
        from govern.training.stage import LineageCheckpointChain

        return LineageCheckpointChain(self._pipeline.store, self.run_id)

    def log(self, loss: float) -> None:
        """Record one logical step's training loss (the evidence's loss curve; optional)."""
        self._losses.append(float(loss))

    # ---------------------------------------------------------------------------------- finish
    def finish(self, model: Any, tokenizer: Any = None) -> RunOutcome:
        """Save the model, record the training stage, run the audits, signing and the final decision.

        Returns the run's outcome; raises :class:`RunBlocked` when a gate blocks (the run is recorded
        ``blocked``)."""
        if self.closed:
            raise SessionError(f"run {self.run_id} is already closed")
        self.closed = True  # whatever happens now is recorded by the pipeline's guard
        if self.world_size > 1:
            from govern.training.distributed import sum_over_ranks

            self._tokens = sum_over_ranks(self._tokens)  # each rank read its share of every step
        if self.rank:  # rank 0 saves, audits and records; wait for its outcome and return it
            news = _hear_rank_zero()
            news.raise_for_status("in run.finish")
            assert news.outcome is not None
            return news.outcome
        news = RankZeroNews(status="failed", run_id=self.run_id, error="run.finish raised on rank 0")
        try:
            outcome = self._finish(model, tokenizer)
            news = RankZeroNews(status="completed", run_id=self.run_id, outcome=outcome)
            return outcome
        except RunBlocked as blocked:
            news = RankZeroNews(status="blocked", run_id=self.run_id, gate=blocked.gate, decision=blocked.decision)
            raise
        finally:
            _tell_ranks(news)

    def _finish(self, model: Any, tokenizer: Any) -> RunOutcome:
        pipeline, active = self._pipeline, self.active
        if self.joined is not None:
            from govern.training.script import write_result

            write_result(self.joined, self._training_result(model, tokenizer))
            return RunOutcome(run_id=self.run_id, status="trained", decision=None, run_dir=str(self.run_dir),
                              db_url=pipeline.store.display_url)
        with pipeline.guard(active):
            result = self._training_result(model, tokenizer)
            stage = _PreparedStage(self._training_stage.name, self._training_stage.outputs_model, result,
                                   digest_of("session", result.outputs))
            passed = pipeline.advance(active, [stage]) and pipeline.advance(active, iter_stages(self._after))
            if passed:
                return pipeline.conclude(active)
        assert active.blocked is not None  # recorded blocked; raised outside the guard (it would record failed)
        raise RunBlocked(self.run_id, active.current, active.blocked)

    def fail(self, reason: str) -> None:
        """Record the run failed (the session's ``__exit__`` calls this for an exception in user code)."""
        self.closed = True
        if self.rank:  # rank 0 records the run
            return
        if self.joined is not None:  # `govern run` records it, failing its training stage with the reason
            from govern.training.script import write_result

            write_result(self.joined, None, error=reason)
            return
        self._pipeline._fail(self.active.outcome, reason)

    def _training_result(self, model: Any, tokenizer: Any) -> StageResult:
        from govern.evidence import TrainingEvidence, TrainingPoint
        from govern.training.models import base_model_digest, base_model_facts, count_parameters
        from govern.training.private import accounted_privacy, unwrap
        from govern.training.stage import TrainingOutputs
        from govern.training.trainer import _export
        from govern.versions import package_versions

        ctx, cfg = self.active.ctx, self.config.training
        name = self._training_stage.name
        plain = unwrap(model)
        if self._token_hook is not None:
            self._token_hook.remove()
        if tokenizer is None:
            raise SessionError("run.finish needs the tokenizer (the audits encode records with it)")
        integrity = self._tracker.evidence() if self._tracker is not None else None
        method = "lora" if hasattr(plain, "peft_config") else "full"
        folder, gguf = self._base_model()
        digest = base_model_digest(folder, gguf)
        spec = self._training_stage.spec(ctx)  # type: ignore[attr-defined]  # the TrainingStage builds the recipe
        spec = spec.model_copy(update={"training": cfg.model_copy(update={"method": method, "merge_adapter": False})})
        labels = self.label_names if self.config.task == "classification" else []
        model_dir = _export(ctx.stage_dir(name), plain, tokenizer, spec, labels, digest, folder, gguf)

        engine, planned = self._engine, self._planned
        delta = planned.delta if planned is not None else None
        history, epsilons = accounted_privacy(engine, delta, cfg.dp.accountant)
        steps = sum(k for _, _, k in history) if history else (integrity.optimizer_steps if integrity else 0)
        n = len(self._records) if self._records is not None else 0
        trainable, total = count_parameters(plain)
        device = str(next(iter(plain.parameters())).device)
        dp_opt = self._dp_optimizer
        model_artifact = artifact_for(model_dir, f"{self.config.name}-{method}", "adapter" if method == "lora"
                                      else "model")
        evidence = TrainingEvidence(
            dp_enabled=engine is not None, non_private=engine is None,
            accountant=cfg.dp.accountant if engine is not None else None, epsilon=epsilons,
            delta=delta if engine is not None else None,
            noise_multiplier=float(dp_opt.noise_multiplier) if dp_opt is not None else None,
            sample_rate=planned.sample_rate if planned is not None else None, steps=steps,
            epochs=steps / planned.steps_per_epoch if planned is not None else 0.0,
            max_grad_norm=float(dp_opt.max_grad_norm) if dp_opt is not None else None, n_train=n,
            batch_size=int(self._batch_size or 0), method=method, trainable_params=trainable, total_params=total,
            base_model={"name": self.config.base_model.name or (gguf or folder.name), "path": str(folder),
                        "gguf_file": gguf, "digest": digest, **base_model_facts(folder)},
            curve=[TrainingPoint(step=i + 1, loss=v) for i, v in enumerate(self._losses[-500:])],
            device=device, duration_s=round(time.perf_counter() - self._started, 3), seed=cfg.seed,
            versions=package_versions(), task=self.config.task,
            target_epsilon=cfg.dp.target_epsilon if engine is not None and cfg.dp.noise_multiplier is None else None,
            accountant_history=history, steps_per_epoch=planned.steps_per_epoch if planned is not None else None,
            grad_sample_mode=cfg.dp.grad_sample_mode if engine is not None else None,
            poisson_sampling=cfg.dp.poisson_sampling if engine is not None else None,
            learning_rate=float(dp_opt.param_groups[0]["lr"]) if dp_opt is not None else None,
            max_length=cfg.max_length, label_names=labels, canaries_inserted=self._canaries,
            model_digest=model_artifact.sha256, integrity=integrity, loop="session", world_size=self.world_size,
            # tokens of the training forwards, all ranks (a resumed run's earlier attempts are not in them)
            tokens_processed=self._tokens[0] if self._tracker is not None else None,
            padded_tokens_processed=self._tokens[1] if self._tracker is not None else None,
        )
        from govern.documents.compute import estimate_compute

        evidence.compute = estimate_compute(evidence, self.config.base_model.training_flops)
        outputs = TrainingOutputs(model_dir=str(model_dir), model_digest=model_artifact.sha256,
                                  base_model_path=str(folder), gguf_file=gguf, label_names=labels or None,
                                  task=self.config.task, device=device, method=method, max_length=cfg.max_length,
                                  dp=engine is not None)
        artifacts: list[ArtifactOut] = [model_artifact]
        tokenizer_file = next((model_dir / f for f in ("tokenizer.json", "tokenizer_config.json")
                               if (model_dir / f).is_file()), None)
        if tokenizer_file is not None:
            artifacts.append(artifact_for(tokenizer_file, "tokenizer", "tokenizer"))
        base = folder / gguf if gguf else folder
        artifacts.append(artifact_for(base, str(evidence.base_model.get("name") or base.name), "model", role="input"))
        return StageResult(evidence=evidence, artifacts=artifacts, outputs=outputs,
                           base_model=BaseModelOut(name=str(evidence.base_model.get("name")), path=str(base),
                                                   digest=digest))


def _group_initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _short(exc: BaseException) -> str:
    """An error for the other ranks: govern's own messages (which never quote records), else the type only."""
    return f"{type(exc).__name__}: {str(exc)[:MAX_REASON]}" if isinstance(exc, GovernError) else type(exc).__name__


def _describe(exc: BaseException, tb: TracebackType | None, run: GovernedRun) -> str:
    """What a failed session records about the user's exception: its type, where it was raised, and its
    message — withheld when it quotes a training record (a message may carry record text or PII)."""
    where = ""
    frames = traceback.extract_tb(tb) if tb is not None else []
    if frames:
        last = frames[-1]
        where = f" at {Path(last.filename).name}:{last.lineno} in {last.name}"
    message = str(exc)
    # govern's own messages never carry record text
    quoted = not isinstance(exc, GovernError) and _quotes_records(message, run._records or [])
    shown = "(message withheld: it quotes training data)" if quoted else message[:MAX_REASON]
    return f"{type(exc).__name__}{where}: {shown}"


def _quotes_records(message: str, records: list[dict[str, Any]]) -> bool:
    """True when ``message`` contains a training record's string value (≥ 6 characters) or three of a
    record's consecutive words."""
    if not message:
        return False
    lowered = message.lower()
    words = lowered.split()
    windows = {" ".join(words[i:i + 3]) for i in range(max(0, len(words) - 2))}
    for record in records:
        for value in record.values():
            if not isinstance(value, str):
                continue
            text = value.lower()
            if len(text) >= 6 and text in lowered:
                return True
            parts = text.split()
            if any(" ".join(parts[i:i + 3]) in windows for i in range(max(0, len(parts) - 2))):
                return True
    return False
