"""The Model Documentation Form of the General-Purpose AI Code of Practice (Transparency chapter, July 2025).

Every field govern's lineage DB knows is filled from it (through :class:`~govern.report.data.ReportData`);
the fields only the provider can state come from the run config's ``documentation:`` section, and those
absent are listed as "to be completed". The form's own section order is kept, so a provider can copy the
values across.
"""

from __future__ import annotations

from govern.config import DocumentationConfig
from govern.documents.model import Document, FieldBuilder
from govern.report.data import ReportData, epsilon_of

BASIS = ("General-Purpose AI Code of Practice, Transparency chapter: Model Documentation Form (July 2025); "
         "AI Act Art. 53(1)(a)-(b), Annex XI and XII")


def documentation_of(data: ReportData) -> DocumentationConfig:
    """The run's ``documentation:`` section as recorded in its stored config (validated when it was run)."""
    config = data.reproducibility.config or {}
    raw = config.get("documentation") if isinstance(config, dict) else None
    return DocumentationConfig.model_validate(raw or {})


def trained_model_artifact(data: ReportData) -> tuple[str, str] | None:
    """(name, sha256) of the model training wrote: the subject of every document.

    The one whose digest the training evidence names when it names one: with ``merge_adapter`` training also
    records the merged copy, but the adapter is what the audits judged and the signing stage signed."""
    outputs = [a for a in data.artifacts if a.role == "output" and a.kind in ("adapter", "model")
               and a.stage in (None, "training")]
    named = data.training.model_digest if data.training is not None else None
    trained = next((a for a in reversed(outputs) if named is not None and a.sha256 == named),
                   outputs[-1] if outputs else None)
    return (trained.name, trained.sha256) if trained is not None else None


def _fmt(value: float | None, digits: int = 4) -> str | None:
    return None if value is None else f"{value:.{digits}g}"


def build_gpai_form(data: ReportData) -> Document:
    doc = documentation_of(data)
    t = data.training
    base = dict(t.base_model) if t is not None else dict(data.reproducibility.base_model)
    model = trained_model_artifact(data)
    signatures = [s for s in data.signatures if model is not None and s.subject_digest == model[1]]
    sections = []

    general = FieldBuilder("1. General information")
    general.config("provider.name", "Legal name of the provider", doc.provider)
    general.config("provider.contact", "Provider contact", doc.provider_contact)
    general.db("model.name", "Model name", data.run.name)
    general.add("model.version", "Model version", doc.model_version or f"govern run {data.run.id}",
                "run config (documentation)" if doc.model_version else "lineage DB")
    general.db("model.digest", "Model authenticity (sha256 of the model files)", model[1] if model else None)
    general.db("model.signatures", "Signatures over those files",
               [f"{s.method} signature by {s.signer or 'unknown signer'} ({s.bundle_path})" for s in signatures])
    general.config("model.release_date", "Release date", doc.release_date.isoformat() if doc.release_date else None)
    general.db("base_model.name", "Base model (this model is a fine-tune of it)", base.get("name"))
    general.db("base_model.digest", "Base model digest", base.get("digest"))
    general.db("base_model.source", "Base model source", base.get("source"))
    provider = doc.base_model_provider or _namespace(base.get("source"))
    general.add("base_model.provider", "Base model provider", provider,
                "run config (documentation)" if doc.base_model_provider else "lineage DB")
    general.db("base_model.licence", "Base model licence", base.get("licence"))
    sections.append(general.section)

    props = FieldBuilder("2. Model properties")
    props.db("model.architecture", "Architecture",
             " / ".join(str(base[k]) for k in ("model_type", "architecture") if base.get(k)) or None)
    if t is not None:
        adapter = "full fine-tune of every weight"
        if t.method == "lora":
            adapter = "LoRA adapter" + (f" (r = {t.lora.get('r')}, alpha = {t.lora.get('alpha')}, target modules: "
                                        f"{', '.join(t.lora.get('target_modules') or [])})" if t.lora else "")
        props.db("model.modification", "Modification of the base model", adapter)
        props.db("model.total_parameters", "Total parameters", f"{t.total_params:,}")
        props.db("model.trainable_parameters", "Parameters trained in this fine-tune", f"{t.trainable_params:,}")
        props.db("model.max_input_tokens", "Maximum input length in fine-tuning (tokens)", t.max_length)
    else:
        props.db("model.total_parameters", "Total parameters", None)
    task = (t.task if t is not None else None) or (data.evaluation.task if data.evaluation is not None else None)
    props.db("model.input_modalities", "Input modalities", "text" if task else None)
    props.db("model.output_modalities", "Output modalities",
             {"classification": "class label with probabilities", "causal-lm": "text"}.get(task or ""))
    sections.append(props.section)

    distribution = FieldBuilder("3. Methods of distribution and licences")
    distribution.config("distribution.channels", "Distribution channels", doc.distribution_channels)
    distribution.config("distribution.licence", "Licence of the model", doc.licence)
    sections.append(distribution.section)

    use = FieldBuilder("4. Use")
    use.config("use.acceptable_use_policy", "Acceptable use policy", doc.acceptable_use_policy)
    use.config("use.intended", "Intended uses", doc.intended_use)
    use.config("use.restricted", "Restricted or prohibited uses", doc.out_of_scope_use)
    use.config("use.limitations", "Known limitations", doc.limitations)
    use.config("use.integration", "AI systems it can be integrated into, and what that needs", doc.integration)
    sections.append(use.section)

    process = FieldBuilder("5. Training process")
    if t is not None:
        process.db("training.method", "Design of the training process",
                   f"supervised {t.task or 'classification'} fine-tuning ({t.method}), {t.steps} optimizer steps, "
                   f"{t.epochs:.2f} epochs, batch {t.batch_size}"
                   + (f", learning rate {t.learning_rate:g}" if t.learning_rate is not None else "") + f", seed {t.seed}")
        eps = epsilon_of(t) if t.dp_enabled else None
        process.db("training.privacy", "Privacy protection in training",
                   f"differentially private (DP-SGD): ε = {_fmt(eps)}, δ = {_fmt(t.delta)} ({t.accountant} "
                   f"accountant), noise multiplier {_fmt(t.noise_multiplier)}, clipping norm {t.max_grad_norm}"
                   if t.dp_enabled else "no differential privacy")
    else:
        process.db("training.method", "Design of the training process", None)
    if data.decision is not None and data.policy is not None:
        process.db("training.governance", "Governance decision",
                   f"{data.decision.decision} under policy {data.policy.name} {data.policy.version} "
                   f"({data.policy.digest})")
    sections.append(process.section)

    training_data = FieldBuilder("6. Data used for training, testing and validation")
    if data.data is not None:
        rows = []
        for f in data.data.files:
            info = doc.datasets.get(f.role)
            rows.append([f.role, f.path.rsplit("/", 1)[-1], f"{f.rows:,}", f"{f.size_bytes:,}", f.sha256, f.fingerprint,
                         (info.source_type if info and info.source_type else "to be completed"),
                         (info.description if info and info.description else "to be completed")])
        training_data.table("data.files", "Data sets", ["role", "file", "records", "bytes", "sha256", "fingerprint",
                                                        "source type", "description"], rows)
        training_data.db("data.train_records", "Training records", f"{data.data.train_rows:,}")
        training_data.db("data.eval_records", "Evaluation records", f"{data.data.eval_rows:,}")
        if t is not None and t.tokens_processed is not None:
            training_data.db("data.tokens", "Tokens processed in training", f"{t.tokens_processed:,}")
        leak = data.data.leakage
        training_data.db("data.curation.leakage", "Train/evaluation overlap check",
                         f"{leak.exact_duplicates} exact and {leak.near_duplicates} near duplicates (MinHash "
                         f"Jaccard ≥ {leak.threshold}) of evaluation records found in the training data")
    else:
        training_data.db("data.train_records", "Training records", None)
    ps = data.pii_summary
    if ps.scanned:
        by_entity = ", ".join(f"{k} {v}" for k, v in ps.by_entity.items()) or "none found"
        training_data.db("data.curation.pii", "Personal data detection and treatment",
                         f"scanned {ps.records_scanned:,} of {ps.records_total:,} records with {ps.engine}; findings "
                         f"by type: {by_entity}; " + (f"redacted ({ps.redaction_mode}) before training"
                                                      if ps.redacted else "no redaction applied"))
    else:
        training_data.db("data.curation.pii", "Personal data detection and treatment", None)
    if data.fairness is not None:
        training_data.db("data.bias", "Measures to detect biases",
                         f"fairness audit over {', '.join(data.fairness.sensitive_columns)}: "
                         + "; ".join(f"{d.attribute} {d.metric} {_fmt(d.value, 3)}" for d in data.fairness.disparities))
    sections.append(training_data.section)

    compute = FieldBuilder("7. Computational resources")
    if t is not None:
        compute.db("compute.training_time", "Training time", f"{t.duration_s:,.1f} s on {t.device}"
                   + (f" × {t.world_size}" if t.world_size > 1 else ""))
    c = t.compute if t is not None else None
    compute.db("compute.flops", "Amount of computation used for training (FLOP)",
               f"{c.flops:.3e} (estimate: {c.formula})" if c else None)
    compute.db("compute.base_ratio", "Share of the base model's training compute (significant-modification check)",
               (f"{c.base_compute_ratio:.3g} (base model: {c.base_model_training_flops:.3e} FLOP, "
                f"{c.base_model_training_flops_source}); indicative threshold one third: "
                + ("EXCEEDED — the fine-tuner is likely the provider of a new GPAI model"
                   if c.exceeds_significant_modification else "not exceeded"))
               if c is not None and c.base_compute_ratio is not None and c.base_model_training_flops else None)
    if c is not None:
        for n in c.notes:
            compute.note(n)
    sections.append(compute.section)

    energy = FieldBuilder("8. Energy consumption")
    energy.config("energy.kwh", "Energy used for training (kWh)",
                  None if doc.energy_kwh is None else f"{doc.energy_kwh:g} ({doc.energy_method or 'method not stated'})")
    energy.note("govern does not measure energy; state a measured figure in documentation.energy_kwh.")
    sections.append(energy.section)

    evaluation = FieldBuilder("9. Evaluation and testing")
    if data.evaluation is not None:
        e = data.evaluation
        evaluation.db("evaluation.metrics", "Task metrics",
                      f"accuracy {_fmt(e.accuracy, 3)}, macro F1 {_fmt(e.macro_f1, 3)} on {e.n:,} records"
                      if e.task == "classification" else f"perplexity {_fmt(e.perplexity, 4)} on {e.n:,} records")
    if data.membership is not None:
        evaluation.db("evaluation.membership", "Membership-inference audit (privacy)",
                      f"max AUC {_fmt(data.membership.max_auc, 3)} over {data.membership.n_members} members and "
                      f"{data.membership.n_nonmembers} non-members")
    sections.append(evaluation.section)
    return Document(kind="gpai-form", title=f"Model Documentation Form — {data.run.name}", basis=BASIS,
                    run_id=data.run.id, run_name=data.run.name, generated_at=data.generated_at,
                    generator=data.generator, db=data.db, sections=sections)


def _namespace(source: object) -> str | None:
    """``sentence-transformers`` for ``sentence-transformers/all-MiniLM-L6-v2`` (the hub namespace)."""
    if isinstance(source, str) and source.count("/") == 1 and "://" not in source:
        return source.split("/", 1)[0] + " (namespace of the base model's source)"
    return None
