"""The model card written next to the model once it has been judged (stage ``model_card``).

The training stage can only write a stub inside the model folder: ε is known then, but not the task
metrics, the audits or the decision. This stage runs after the audits and before signing and writes
``MODEL_CARD.md`` beside the model folder (not inside it: the folder's digest is what evaluation,
membership, fairness and the signature refer to). It carries what someone who is handed the model asks:
the privacy guarantee and its accountant, the task metrics, the decision so far and the policy's digest,
the base model, and the intended use and limitations from the run config's ``documentation:``; for a
causal LM, what it gives back verbatim (extraction and planted-PII rates, in the report's own sentences,
so the card and the report never tell a reader two different things). Nothing in it comes from the
training data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from govern.evidence import EvidenceModel
from govern.report.data import explain_memorization
from govern.stage import (
    ModelFolder,
    StageContext,
    StageOutputs,
    StageResult,
    artifact_for,
    digest_of,
    trained_model_digest,
)


class ModelCardEvidence(EvidenceModel):
    path: str
    sha256: str


class ModelCardOutputs(StageOutputs):
    path: str


class ModelCardStage:
    """Writes ``MODEL_CARD.md`` next to the trained model (skipped when there is no model)."""

    name = "model_card"
    outputs_model = ModelCardOutputs

    def enabled(self, ctx: StageContext) -> bool:
        trained = ctx.find(ModelFolder)
        return trained is not None and bool(trained.model_dir)

    def input_digest(self, ctx: StageContext) -> str:
        # The card names the model's digest as it is on disk, so a changed model means a new card.
        return digest_of("model_card/2", render_model_card(ctx))

    def run(self, ctx: StageContext) -> StageResult:
        model_dir = Path(str(ctx.require(ModelFolder, self.name).model_dir))
        path = model_dir.parent / "MODEL_CARD.md"
        path.write_text(render_model_card(ctx), encoding="utf-8")
        artifact = artifact_for(path, "MODEL_CARD.md", "report")
        return StageResult(evidence=ModelCardEvidence(path=str(path), sha256=artifact.sha256), artifacts=[artifact],
                           outputs=ModelCardOutputs(path=str(path)))


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 else f"{value:.4g}"
    return str(value)


def render_model_card(ctx: StageContext) -> str:
    ev = ctx.evidence
    config = ctx.config
    training = ev.training
    evaluation = ev.evaluation
    gate = ctx.gate
    doc = config.documentation
    lines = [f"# {config.name}: model card", "",
             "Written by govern after the audits of this run, from the run's evidence (never from its data).", ""]
    lines += ["## Intended use", "",
              doc.intended_use or "_Not stated: set `documentation.intended_use` in the run config._", "",
              "## Limitations", "",
              doc.limitations or "_Not stated: set `documentation.limitations` in the run config._", ""]
    if doc.out_of_scope_use:
        lines += ["## Out of scope", "", doc.out_of_scope_use, ""]
    lines += ["## Model", ""]
    if training is not None:
        base = training.base_model
        lines += [f"- Task: {config.task}; method: {training.method}",
                  f"- Base model: {base.get('name', '—')} ({base.get('source') or 'source not stated'}; licence "
                  f"{base.get('licence') or 'not stated'}); digest `{base.get('digest', '—')}`",
                  f"- Trained on {training.n_train} records for {training.steps} steps"]
    digest = trained_model_digest(ctx)
    if digest is not None:  # the card describes these bytes: the same tree sha256 the audits and signature name
        lines.append(f"- Model digest (tree sha256 of the model folder): `{digest}`")
    lines += ["", "## Privacy", ""]
    if training is not None and training.dp_enabled:
        eps = training.epsilon.get(training.accountant or "rdp") if training.epsilon else None
        lines += [f"- Differentially private (DP-SGD, Opacus): ε = {_fmt(eps)}, δ = {_fmt(training.delta)} "
                  f"({training.accountant} accountant, as computed over every step taken)",
                  f"- Noise multiplier σ = {_fmt(training.noise_multiplier)}, sampling rate q = "
                  f"{_fmt(training.sample_rate)}, max_grad_norm = {_fmt(training.max_grad_norm)}"]
    else:
        lines += ["- **Not differentially private** (allowed by the run's policy)."]
    if ev.membership is not None and ev.membership.attacks:
        strongest = max(ev.membership.attacks, key=lambda a: a.auc)
        lines += [f"- Strongest membership-inference attack: {strongest.name}, AUC {_fmt(strongest.auc)}"]
    lines += [f"- {sentence}" for sentence in explain_memorization(ev.membership)]
    lines += ["", "## Task metrics (held-out data)", ""]
    if evaluation is not None:
        for label, value in (("accuracy", evaluation.accuracy), ("macro F1", evaluation.macro_f1),
                             ("expected calibration error", evaluation.ece), ("loss", evaluation.loss),
                             ("perplexity", evaluation.perplexity)):
            if value is not None:
                lines.append(f"- {label}: {_fmt(value)} (n = {evaluation.n})")
    else:
        lines.append("- not evaluated")
    if ev.fairness is not None and ev.fairness.disparities:
        lines += ["", "## Fairness (worst per metric)", ""]
        worst: dict[str, tuple[float, str]] = {}
        for d in ev.fairness.disparities:
            if d.value is None:
                continue
            keep = worst.get(d.metric)
            lower_is_worse = d.metric.endswith("ratio")
            if keep is None or (d.value < keep[0] if lower_is_worse else d.value > keep[0]):
                worst[d.metric] = (d.value, d.attribute)
        for metric, (value, attribute) in sorted(worst.items()):
            lines.append(f"- {metric}: {_fmt(value)} ({attribute})")
    lines += ["", "## Governance", "",
              f"- Policy decision before signing: **{gate.decision if gate else 'not yet judged'}** under policy "
              f"`{(gate.policy_digest if gate else None) or '—'}`",
              f"- Run `{ctx.run_id}` in the lineage DB: `govern report {ctx.run_id}` has the full record", ""]
    return "\n".join(lines)
