"""Membership-inference audit: how much does the fine-tuned model give away about its training records?

The audit attacks the model the way the privacy literature does and reports the standard numbers:

* **members** are training records, **non-members** held-out records of the same distribution, sampled
  to equal sizes with a fixed seed;
* every attack gives each record a score, *higher = "more likely a member"*:

  - ``loss`` (Yeom et al. 2018): minus the model's loss on the record;
  - ``reference`` (reference-calibrated, Watson et al. 2022 / Mireshghallah et al. 2022): the base
    (pre-fine-tune) model's loss minus the fine-tuned model's loss. It removes how hard a record is
    *in general*, leaving what the fine-tune learned about it — cheap and strong for fine-tunes;
  - causal LMs also get ``min_k`` (Min-K% probability, Shi et al. 2023: the mean log-probability of the
    k% least likely tokens) and ``zlib`` (Carlini et al. 2021: minus the ratio of the log-perplexity to
    the zlib-compressed length);

* metrics (:mod:`govern.audits.attack_metrics`): ROC AUC with a bootstrap CI, and the **TPR at low
  FPR** with a Clopper-Pearson interval, the same for every attack.

Where each piece lives: the metrics in :mod:`~govern.audits.attack_metrics`, the records, per-record
losses and attack scores in :mod:`~govern.audits.scoring` (over the one scorer and the one model
loader of :mod:`govern.training.inference`), the canary audit in :mod:`~govern.audits.canaries`, and
here the stage and the standalone audit, which share :func:`build_evidence`.

With ``membership.lira.enabled`` the stage adds **offline LiRA** (Carlini et al. 2022): reference models
trained with the run's own recipe on halves of the held-out set give each record an OUT distribution,
and the score is the target's confidence standardised against it (:mod:`govern.audits.lira`). LiRA
needs the training recipe, so it runs in ``govern run`` only; the standalone audit refuses it with a
clear error rather than silently skipping it. ``membership.rmia.enabled`` adds **offline RMIA**
(Zarifzadeh et al. 2024, :mod:`govern.audits.rmia`) on the same reference models — no extra training
when LiRA runs, one or two models of its own when it runs alone.

Causal LMs are also asked what they give away verbatim: **extraction** (:mod:`govern.audits.extraction`,
members against non-members; standalone too, it needs only the model) and, in canary runs, **PII
regurgitation** of the PII canaries the canary stage inserted (:mod:`govern.audits.regurgitation`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from govern.audits.attack_metrics import evaluate_attack, fprs_for, resolution_notes
from govern.audits.canaries import canary_audit, read_inserted_ids
from govern.audits.lira import MIN_MODELS
from govern.audits.scoring import (
    AuditRecords,
    LiraInput,
    RmiaInput,
    ScoredSets,
    attacks_for,
    balanced_sample,
    combine,
    read_with_locations,
    run_attacks,
    score_records,
    to_audit_records,
)
from govern.devices import pick_device
from govern.errors import DataError, StageError
from govern.evidence import (
    CanaryAudit,
    ExtractionAudit,
    LiraDetails,
    MembershipEvidence,
    PIIRegurgitation,
    RmiaDetails,
)
from govern.stage import (
    CanaryFiles,
    StageContext,
    StageOutputs,
    StageResult,
    digest_of,
    judged_model_digest,
    trained_model_digest,
)

if TYPE_CHECKING:
    from govern.config import ExtractionAuditConfig
    from govern.policy.schema import MembershipPolicy, RmiaPolicy

STAGE = "membership"


def build_evidence(scored: ScoredSets, *, n_members: int, n_nonmembers: int, seed: int, fprs: Sequence[float],
                   bootstrap: int, task: str, notes: list[str], canaries: CanaryAudit | None = None,
                   members_source: str | None = None, nonmembers_source: str | None = None,
                   duration_s: float = 0.0) -> MembershipEvidence:
    results = [evaluate_attack(name, scored.member[name], scored.nonmember[name], fprs=fprs, bootstrap=bootstrap,
                               seed=seed) for name in scored.member]
    return MembershipEvidence(
        n_members=n_members, n_nonmembers=n_nonmembers, seed=seed, attacks=results,
        max_auc=max((r.auc for r in results), default=0.5), canaries=canaries, task=task,
        members_source=members_source, nonmembers_source=nonmembers_source,
        notes=notes + resolution_notes(n_nonmembers, fprs), duration_s=duration_s,
    )


def audit_membership(model_dir: str | Path, base: str | Path | None, members_path: str | Path,
                     nonmembers_path: str | Path, policy: MembershipPolicy | None = None, *,
                     task: str = "classification", text_column: str = "text", label_column: str | None = "label",
                     prompt_column: str | None = None, completion_column: str | None = None,
                     id_column: str | None = "id", label_names: Sequence[str] | None = None,
                     gguf_file: str | None = None, max_records: int = 500, seed: int = 0, batch_size: int = 32,
                     max_length: int = 128, bootstrap: int = 200, min_k_fraction: float = 0.2,
                     device: str | None = None, data_format: str = "auto",
                     extraction: ExtractionAuditConfig | None = None) -> MembershipEvidence:
    """Audit a model trained elsewhere: ``members_path`` holds (some of) its training records,
    ``nonmembers_path`` held-out records of the same distribution. ``base`` is the pre-fine-tune model
    (needed for LoRA adapters and for the reference attack). Causal LMs are also audited for verbatim
    extraction (``extraction``; default settings when None). Returns the evidence; the caller applies
    the policy decision and records lineage (see ``govern.api``)."""
    from govern.config import ExtractionAuditConfig
    from govern.policy.schema import MembershipPolicy
    from govern.training.inference import load_model, model_label_names

    started = time.perf_counter()
    policy = policy or MembershipPolicy()
    model_dir = Path(model_dir)
    base_path = Path(base) if base is not None else None
    if task == "classification" and label_names is None:
        label_names = model_label_names(model_dir)
    member_raw, member_loc = read_with_locations(Path(members_path), data_format)
    nonmember_raw, nonmember_loc = read_with_locations(Path(nonmembers_path), data_format)
    for path, raw in ((members_path, member_raw), (nonmembers_path, nonmember_raw)):
        if not raw:
            raise DataError(path, "no records")
    if task == "classification" and label_names is None:
        values = ({str(r.get(label_column)) for r in member_raw + nonmember_raw if r.get(label_column) is not None}
                  if label_column is not None else set())
        label_names = sorted(values)
    m_idx, n_idx = balanced_sample(len(member_raw), len(nonmember_raw), max_records, seed)
    common: dict[str, Any] = dict(task=task, text_column=text_column, label_column=label_column, label_names=label_names,
                  prompt_column=prompt_column, completion_column=completion_column, id_column=id_column)
    members = to_audit_records([member_raw[i] for i in m_idx], source=str(members_path),
                               locations=[member_loc[i] for i in m_idx], **common)
    nonmembers = to_audit_records([nonmember_raw[i] for i in n_idx], source=str(nonmembers_path),
                                  locations=[nonmember_loc[i] for i in n_idx], **common)
    attacks, notes = attacks_for(policy, task, base_path is not None)
    model, tokenizer = load_model(model_dir, task=task, label_names=label_names, base_path=base_path,
                                  gguf_file=gguf_file, seed=seed)
    base_model = base_tokenizer = None
    if "reference" in attacks and base_path is not None:
        base_model, base_tokenizer = load_model(base_path, task=task, label_names=label_names,
                                                gguf_file=gguf_file, seed=seed, as_reference=True)
    scored = run_attacks(model, tokenizer, base_model, base_tokenizer, members, nonmembers, task=task,
                         attacks=attacks, batch_size=batch_size, max_length=max_length,
                         min_k_fraction=min_k_fraction, device=device)
    extraction_audit = _extraction(model, tokenizer, members, nonmembers, task=task,
                                   config=extraction or ExtractionAuditConfig(), max_length=max_length,
                                   batch_size=batch_size, device=device, seed=seed)
    evidence = build_evidence(scored, n_members=len(members), n_nonmembers=len(nonmembers), seed=seed,
                              fprs=fprs_for(policy), bootstrap=bootstrap, task=task, notes=notes,
                              members_source=str(members_path), nonmembers_source=str(nonmembers_path),
                              duration_s=time.perf_counter() - started)
    evidence.extraction = extraction_audit
    return evidence


def _extraction(model: Any, tokenizer: Any, members: AuditRecords, nonmembers: AuditRecords, *, task: str,
                config: ExtractionAuditConfig, max_length: int, batch_size: int, device: str | None,
                seed: int) -> ExtractionAudit | None:
    """The verbatim extraction audit where it applies: causal LMs, unless the run config switches it off."""
    if task != "causal-lm" or not config.enabled:
        return None
    from govern.audits.extraction import audit_extraction

    return audit_extraction(model, tokenizer, members, nonmembers, config=config, max_length=max_length,
                            batch_size=batch_size, device=device or pick_device("auto"), seed=seed)



# ============================================================================================ stage
class MembershipOutputs(StageOutputs):
    #: Per-record attack scores (ids only).
    scores_path: str


class MembershipStage:
    """Attacks the fine-tuned model of this run; reads the training stage's outputs (model folder, base
    model, labels, task, device, recipe), the data paths, and the canary files when the canary stage ran."""

    name = STAGE
    outputs_model = MembershipOutputs

    def enabled(self, ctx: StageContext) -> bool:
        return bool(ctx.config.audits.membership.enabled)

    def input_digest(self, ctx: StageContext) -> str:
        from govern.training.stage import TrainingOutputs

        trained, canary_files = ctx.find(TrainingOutputs), ctx.find(CanaryFiles)
        # The attacked model's bytes on disk (what training recorded may be stale after a replaced folder).
        return digest_of("membership/3", ctx.config.audits.membership, ctx.policy.membership,
                         trained.model_dir if trained else None, trained_model_digest(ctx), ctx.data_paths(),
                         canary_files.pool_path if canary_files else None,
                         canary_files.pii_pool_path if canary_files else None)

    def run(self, ctx: StageContext) -> StageResult:
        from govern.training.inference import load_model

        started = time.perf_counter()
        cfg = ctx.config.audits.membership
        policy = ctx.policy.membership
        data = ctx.config.data
        from govern.training.stage import TrainingOutputs

        trained = ctx.require(TrainingOutputs, STAGE)
        if not trained.model_dir:
            raise StageError(STAGE, "no trained model: the training stage did not run or produced no model_dir")
        training = trained.model_dump()
        model_digest = judged_model_digest(ctx, STAGE)
        task = training.get("task") or ctx.config.task
        model_dir = Path(training["model_dir"])
        base_path = training.get("base_model_path")
        base_path = Path(base_path) if base_path else None
        gguf_file = training.get("gguf_file")
        paths = ctx.data_paths()
        label_names = training.get("label_names") or paths.label_names or None
        device = pick_device(training.get("device"))  # a GPU-trained model is judged on the CPU if needed
        attacks, notes = attacks_for(policy, task, base_path is not None, lira_available=True)

        fmt = paths.format or "auto"
        train_raw, train_loc = read_with_locations(Path(paths.train_path), fmt)
        eval_raw, eval_loc = read_with_locations(Path(paths.eval_path), fmt)
        if not train_raw or not eval_raw:
            raise StageError(STAGE, "membership audit needs training and held-out records")
        m_idx, n_idx = balanced_sample(len(train_raw), len(eval_raw), cfg.max_records, cfg.seed)
        common: dict[str, Any] = dict(task=task, text_column=data.text_column, label_column=data.label_column,
                      label_names=label_names, prompt_column=data.prompt_column,
                      completion_column=data.completion_column, id_column=data.id_column)
        members = to_audit_records([train_raw[i] for i in m_idx], source=paths.train_path,
                                   locations=[train_loc[i] for i in m_idx], **common)
        nonmembers = to_audit_records([eval_raw[i] for i in n_idx], source=paths.eval_path,
                                      locations=[eval_loc[i] for i in n_idx], **common)
        progress = ctx.progress.task("membership audit", total=None, unit="step")
        max_length = ctx.config.training.max_length
        model, tokenizer = load_model(model_dir, task=task, label_names=label_names, base_path=base_path,
                                      gguf_file=gguf_file, seed=cfg.seed)
        base_model = base_tokenizer = None
        if base_path is not None and "reference" in attacks:
            base_model, base_tokenizer = load_model(base_path, task=task, label_names=label_names, gguf_file=gguf_file,
                                                    seed=cfg.seed, as_reference=True)
        canary_out = ctx.find(CanaryFiles) if policy.canaries.enabled else None
        pool: list[dict[str, Any]] = []
        if canary_out:
            from govern.data.io import read_records

            pool = read_records(Path(canary_out.pool_path), "jsonl")

        lira_audit = None
        lira_details: LiraDetails | None = None
        rmia_input: RmiaInput | None = None
        rmia_details: RmiaDetails | None = None
        if "lira" in attacks or "rmia" in attacks:
            # Every held-out record trains some reference model: validate them all first, so a bad one
            # is reported against the eval file, not against a temporary copy.
            to_audit_records(eval_raw, source=paths.eval_path, locations=eval_loc, **common)
            # RMIA reuses LiRA's reference models when LiRA runs; alone, it trains its own 1-2.
            shared = "lira" in attacks
            lira_audit, lira_details = _lira_references(
                ctx, training, tokenizer, combine(members, nonmembers), n_members=len(members),
                nonmember_pool_index=n_idx, pool=eval_raw,
                k=policy.lira.reference_models if shared else policy.rmia.reference_models,
                min_models=MIN_MODELS if shared else 1, seed=cfg.seed,
                task=task, label_names=label_names, batch_size=cfg.batch_size, max_length=max_length,
                device=device)
            if "rmia" in attacks:
                rmia_input, rmia_details = rmia_calibration(
                    lira_audit, n_members=len(members), policy=policy.rmia, shared_with_lira=shared,
                    training_s=0.0 if shared else lira_details.training_s)
            if not shared:
                lira_details = None
        scored = run_attacks(model, tokenizer, base_model, base_tokenizer, members, nonmembers, task=task,
                             attacks=attacks, batch_size=cfg.batch_size, max_length=max_length,
                             min_k_fraction=cfg.min_k_fraction, device=device, lira=lira_audit, rmia=rmia_input)
        progress.advance()

        canaries: CanaryAudit | None = None
        if canary_out:
            inserted_ids = read_inserted_ids(Path(canary_out.inserted_ids_path))
            ev = ctx.evidence.training
            dp = bool(ev and ev.dp_enabled)
            accountant_eps = None
            if dp and ev is not None and ev.epsilon:
                accountant_eps = ev.epsilon.get(ev.accountant or "", None) or max(ev.epsilon.values())
            delta = float(ev.delta) if (dp and ev is not None and ev.delta) else 0.0
            canaries = canary_audit(
                model, tokenizer, base_model, base_tokenizer, pool=pool, inserted_ids=inserted_ids, ctx_task=task,
                text_column=data.text_column, label_column=data.label_column, label_names=label_names,
                prompt_column=data.prompt_column, completion_column=data.completion_column,
                id_column=data.id_column, attacks=attacks, canary_policy=policy.canaries, delta=delta,
                accountant_epsilon=accountant_eps, batch_size=cfg.batch_size, max_length=max_length,
                seed=cfg.seed, device=device, source=canary_out.pool_path,
            )
        elif policy.canaries.enabled:
            notes.append("canaries enabled in the policy but the canary stage did not run: no ε lower bound")
        extraction = _extraction(model, tokenizer, members, nonmembers, task=task, config=cfg.extraction,
                                 max_length=max_length, batch_size=cfg.batch_size, device=device, seed=cfg.seed)
        regurgitation = None
        if canary_out and canary_out.pii_pool_path and canary_out.pii_inserted_ids_path:
            regurgitation = self._pii_regurgitation(ctx, canary_out, model, tokenizer, device=device,
                                                    max_length=max_length)
        elif canary_out and task == "causal-lm" and policy.canaries.pii_pool_size > 0:
            notes.append("the canary stage inserted no PII canaries (recorded by an older govern?): PII "
                         "regurgitation not measured")
        progress.advance()
        progress.close()

        scores_path = ctx.stage_dir(STAGE) / "scores.jsonl"
        _write_scores(scores_path, members.ids, nonmembers.ids, scored)
        evidence = build_evidence(scored, n_members=len(members), n_nonmembers=len(nonmembers), seed=cfg.seed,
                                  fprs=fprs_for(policy), bootstrap=cfg.bootstrap, task=task, notes=notes,
                                  canaries=canaries, members_source="train", nonmembers_source="eval",
                                  duration_s=time.perf_counter() - started)
        evidence.lira = lira_details
        evidence.rmia = rmia_details
        evidence.extraction = extraction
        evidence.pii_regurgitation = regurgitation
        evidence.model_digest = model_digest
        from govern.stage import artifact_for

        return StageResult(evidence=evidence, artifacts=[artifact_for(scores_path, "membership-scores", "predictions")],
                           outputs=MembershipOutputs(scores_path=str(scores_path)))

    @staticmethod
    def _pii_regurgitation(ctx: StageContext, canaries: CanaryFiles, model: Any, tokenizer: Any, *, device: str,
                           max_length: int) -> PIIRegurgitation:
        """The PII canaries completed from their context; hashes keyed by the lineage DB's PII key, the
        same key (and normalisation) as the PII stage's findings."""
        from govern.audits.regurgitation import audit_pii_regurgitation
        from govern.data.io import read_records
        from govern.lineage.store import default_db_url
        from govern.pii.keys import load_or_create_key

        assert canaries.pii_pool_path is not None and canaries.pii_inserted_ids_path is not None
        data = ctx.config.data
        return audit_pii_regurgitation(
            model, tokenizer, read_records(Path(canaries.pii_pool_path), "jsonl"),
            read_inserted_ids(Path(canaries.pii_inserted_ids_path)), text_column=data.text_column,
            prompt_column=data.prompt_column, completion_column=data.completion_column, id_column=data.id_column,
            repetitions=ctx.policy.membership.canaries.repetitions,
            key=load_or_create_key(ctx.db_url or default_db_url()), max_length=max_length,
            batch_size=ctx.config.audits.membership.batch_size, device=device, source=canaries.pii_pool_path)


def _lira_references(ctx: StageContext, training: dict[str, Any], tokenizer: Any, audit: AuditRecords, *,
                     n_members: int, nonmember_pool_index: np.ndarray, pool: list[dict[str, Any]], k: int,
                     min_models: int, seed: int, task: str, label_names: Sequence[str] | None, batch_size: int,
                     max_length: int, device: str) -> tuple[LiraInput, LiraDetails]:
    """Train LiRA's reference models with the training stage's recipe (and the target's steps and σ
    from its evidence) on subsets of the held-out ``pool`` and score the audit records (members,
    then non-members) under each.

    Members were never in the pool. Audited non-members are ``pool[nonmember_pool_index]``: OUT of
    the models whose subset did not contain them."""
    from govern.audits.lira import balanced_inclusion, train_reference_models, variance_kind
    from govern.training.trainer import TrainingSpec

    spec_path = training.get("spec_path")
    if not spec_path or not Path(spec_path).is_file():
        raise StageError(STAGE, "offline LiRA retrains with the training stage's recipe, but this run's training "
                                "stage left no spec.json (trained by an older govern?); re-run training")
    spec = TrainingSpec.model_validate_json(Path(spec_path).read_text(encoding="utf-8"))
    if task == "classification" and label_names:
        # Fix the label order to the target's: a half of the pool may lack a class.
        spec = spec.model_copy(update={"label_names": list(label_names)})

    def score(model: Any) -> dict[str, np.ndarray]:
        return {"audit": score_records(model, tokenizer, audit, task=task, batch_size=batch_size,
                                       max_length=max_length, device=device).loss}

    target = ctx.evidence.training
    run = train_reference_models(spec, pool, k=k, seed=seed, score=score, work_dir=ctx.stage_dir(STAGE),
                                 steps=target.steps if target is not None and target.steps else None,
                                 noise_multiplier=target.noise_multiplier if target is not None else None,
                                 progress=ctx.progress, min_models=min_models)
    # Every audited record is measured against exactly ⌈k/2⌉ OUT models — members too, although no
    # reference model saw them: a member calibrated by all k models would have a tighter μ_out than a
    # non-member, and the wider non-member tail would hide members at low FPR.
    out_audit = np.empty((k, len(audit)), dtype=bool)
    # (With one reference model there is no balance to keep: members are OUT of it, as they truly are.)
    out_audit[:, :n_members] = ~balanced_inclusion(n_members, k, seed + 1) if k >= 2 else True
    out_audit[:, n_members:] = ~run.inclusion[:, nonmember_pool_index]
    counts = out_audit.sum(axis=0)
    details = LiraDetails(
        reference_models=k, pool="eval", pool_size=len(pool), records_per_model=run.records_per_model,
        min_out_models_per_record=int(counts.min()), variance=variance_kind(counts), dp=run.dp,
        steps=run.steps, noise_multiplier=run.noise_multiplier, reference_epsilon=run.epsilons, seeds=run.seeds,
        training_s=round(run.duration_s, 3))
    return LiraInput(confidences=run.confidences["audit"], out_mask=out_audit), details


def rmia_calibration(references: LiraInput, *, n_members: int, policy: RmiaPolicy, shared_with_lira: bool,
                     training_s: float) -> tuple[RmiaInput, RmiaDetails]:
    """RMIA's population (the audited non-members, after the ``n_members`` members) and its correction
    factor: the policy's, else tuned on the reference models alone (never on the target's membership),
    else the reference code's default when one reference model leaves nothing to tune on."""
    from govern.audits.rmia import DEFAULT_OFFLINE_A, tune_offline_a

    k, n = references.confidences.shape
    population = np.arange(n_members, n)
    source: Literal["policy", "tuned", "default"]
    if policy.offline_a is not None:
        a, source = float(policy.offline_a), "policy"
    else:
        # Inclusion is known for the non-members only (pool records); members were in no reference model.
        probs = 1.0 / (1.0 + np.exp(-references.confidences[:, n_members:]))
        tuned = tune_offline_a(probs, ~references.out_mask[:, n_members:])
        a, source = (tuned, "tuned") if tuned is not None else (DEFAULT_OFFLINE_A, "default")
    details = RmiaDetails(reference_models=k, shared_with_lira=shared_with_lira, population_size=len(population),
                          offline_a=a, offline_a_source=source, gamma=policy.gamma, training_s=round(training_s, 3))
    return RmiaInput(population=population, offline_a=a, gamma=policy.gamma), details


def _write_scores(path: Path, member_ids: Sequence[str], nonmember_ids: Sequence[str], scored: ScoredSets) -> None:
    """Per-record scores for the report's histograms: ids and numbers only, never text."""
    import json

    with open(path, "w", encoding="utf-8") as fh:
        for is_member, ids, table in ((True, member_ids, scored.member), (False, nonmember_ids, scored.nonmember)):
            for i, rid in enumerate(ids):
                row = {"id": rid, "member": is_member, **{k: float(v[i]) for k, v in table.items()}}
                fh.write(json.dumps(row) + "\n")
