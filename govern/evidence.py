"""Evidence: what each stage proved, as typed models that together form one JSON document.

The policy engine sees only ``Evidence.model_dump(mode="json")`` (custom CEL rules address it as
``evidence.<stage>.<field>``), the lineage DB stores each stage's part, and reports render it. So the
field names here are a public contract: rename one and policies written by users break.

Evidence never holds raw record text or PII values: ids, counts, digests, locations and keyed hashes
only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from govern.config import FileFormat


class EvidenceModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------- data
class FileRecord(EvidenceModel):
    role: str = Field(description="train, eval, or another name for standalone scans.")
    path: str
    format: FileFormat
    sha256: str = Field(description="Digest of the file's bytes.")
    size_bytes: int
    rows: int = Field(description="Records read (blank lines are not records).")
    columns: list[str] = Field(description="Column names the config declares; any other is counted, not named "
                                           "(a column name can itself be personal data).")
    fingerprint: str = Field(description="sha256 over a canonical serialisation of the records (format-independent).")


class LeakageEvidence(EvidenceModel):
    """Train/eval overlap: eval records whose (normalised) text also occurs in train."""

    exact_duplicates: int
    exact_fraction: float = Field(description="Of eval records.")
    near_duplicates: int = Field(description="Eval records with a MinHash-estimated Jaccard ≥ threshold to a train record.")
    near_fraction: float
    threshold: float = Field(description="Estimated Jaccard similarity (of word shingles) that makes a near duplicate.")
    method: str = "minhash-lsh"
    num_perm: int = Field(default=128, description="MinHash permutations (more: a closer Jaccard estimate).")
    example_pairs: list[tuple[str, str]] = Field(
        default_factory=list, description="Up to 20 (eval id, train id) pairs; ids only, never text."
    )


class DataEvidence(EvidenceModel):
    files: list[FileRecord]
    train_rows: int
    eval_rows: int
    text_column: str
    label_column: str | None = None
    labels: dict[str, int] = Field(default_factory=dict, description="Train label counts.")
    sensitive_columns: list[str] = Field(default_factory=list)
    leakage: LeakageEvidence


# ---------------------------------------------------------------------------------------------- pii
class PIICount(EvidenceModel):
    dataset: str = Field(description="train / eval / a file name for standalone scans.")
    field: str
    entity_type: str
    count: int
    records: int = Field(description="Records with at least one finding of this type in this field.")
    action: Literal["block", "redact", "allow"]


class PIIEntityQuality(EvidenceModel):
    """Detection quality for one entity type on a labeled sample (counts and rates only, no values)."""

    entity_type: str
    gold: int = Field(description="Gold spans of this type in the sample.")
    predicted: int = Field(description="Spans the analyzer reported for this type.")
    true_positives: int
    precision: float | None = None
    recall: float | None = None
    f2: float | None = Field(default=None, description="F-beta with beta=2: recall weighs four times precision.")
    precision_ci_low: float | None = None
    precision_ci_high: float | None = None
    recall_ci_low: float | None = None
    recall_ci_high: float | None = None


class PIIQuality(EvidenceModel):
    """The PII scan scored on a labeled sample of the user's own data (``pii.quality.sample``)."""

    measured: bool = Field(description="False when the policy names no labeled sample.")
    sample_file: str | None = Field(default=None, description="File name of the labeled sample (never its content).")
    sample_sha256: str | None = None
    records: int = 0
    confidence: float = 0.95
    ci_method: str = "clopper-pearson"
    entities: list[PIIEntityQuality] = Field(default_factory=list)
    not_scanned: list[str] = Field(default_factory=list, description="Gold entity types the analyzer does not scan.")
    min_recall: dict[str, float] = Field(default_factory=dict, description="The policy's recall floors.")
    note: str = ""


class PIIEvidence(EvidenceModel):
    engine: str
    engine_version: str
    entities: list[str]
    min_score: float
    records_total: int
    records_scanned: int
    sampled: bool = False
    counts: list[PIICount] = Field(default_factory=list)
    by_entity: dict[str, int] = Field(default_factory=dict)
    records_affected: int = 0
    blocked: dict[str, int] = Field(default_factory=dict, description="Entity → findings whose action is block.")
    redacted: bool = False
    redaction_mode: str | None = None
    redacted_files: dict[str, str] = Field(default_factory=dict, description="role → sha256 of the redacted copy.")
    duration_s: float = 0.0
    actions: dict[str, Literal["block", "redact", "allow"]] = Field(
        default_factory=dict, description="Entity → action the policy gave it (every scanned entity)."
    )
    hmac_key_id: str | None = Field(
        default=None, description="First 16 hex of sha256(key) of the HMAC key behind value_hmac; never the key."
    )
    workers: int = Field(default=1, description="Scanner processes used.")
    quality: PIIQuality | None = Field(
        default=None, description="Detection quality on the policy's labeled sample; measured=false when none."
    )


# ----------------------------------------------------------------------------------------- training
class TrainingPoint(EvidenceModel):
    step: int
    loss: float
    epsilon: float | None = None


class ComputeEstimate(EvidenceModel):
    """The fine-tune's training compute against its base model's: the EU AI Act significant-modification check.

    The Commission's guidelines for GPAI providers (18 July 2025) take a modification whose training compute
    exceeds one third of the base model's as the indicative criterion that the modifier becomes the provider
    of a new model, and 10^23 FLOP as the presumption that a model is a GPAI model at all. Both numbers
    here are estimates by a documented formula (``formula``), never measurements; see
    :mod:`govern.documents.compute`.
    """

    tokens_processed: int = Field(description="Sequence positions the forward passes computed (padding included).")
    method: Literal["full", "lora"]
    trainable_params: int
    total_params: int
    formula: str = Field(description="The FLOP formula applied, with its terms (D tokens, N total, N_t trainable).")
    flops: float = Field(description="Estimated training FLOPs of this fine-tune.")
    base_model_training_flops: float | None = Field(
        default=None, description="The base model's training compute (run config, else govern's table of known "
                                  "models); None: unknown.")
    base_model_training_flops_source: str | None = Field(default=None, description="Where that number comes from.")
    base_compute_ratio: float | None = Field(
        default=None, description="flops / base_model_training_flops (None when the base compute is unknown).")
    significant_modification_threshold: float = Field(
        default=1 / 3, description="The guidelines' indicative ratio (one third of the base model's compute).")
    exceeds_significant_modification: bool | None = Field(
        default=None, description="ratio > threshold: the fine-tuner is likely the provider of a new GPAI model.")
    gpai_presumption_flops: float = 1e23
    notes: list[str] = Field(default_factory=list, description="What the estimate leaves out, and which way it errs.")


class TrainingIntegrity(EvidenceModel):
    """Was the model that is signed the model the accountant accounted for, and did it actually train?

    Recorded by :class:`govern.training.private.IntegrityTracker` (the built-in recipe and a user's own
    loop alike): the trainable parameters are snapshotted after every optimizer step, so a change made
    between two private steps, or an update the accountant did not count, is a violation."""

    tracked_tensors: int
    tracked_params: int
    optimizer_steps: int = Field(description="Real optimizer updates (logical steps).")
    accounted_steps: int | None = Field(default=None, description="Steps the DP accountant composed (None: no DP).")
    violations: int = Field(default=0, description="Changes to the trainable weights outside a private step.")
    violation_details: list[str] = Field(default_factory=list, description="The first violations, by step and tensor name.")
    relative_weight_change: float = Field(description="||w_final - w_initial|| / ||w_initial|| over the trainable weights.")
    changed_tensors: int = 0
    per_sample_grads_all_params: bool | None = Field(
        default=None, description="Opacus computed per-sample gradients for every trainable parameter (None: "
                                  "not measured, e.g. ghost clipping or no DP).")
    missing_per_sample_grads: list[str] = Field(default_factory=list)
    clipped_fraction: float | None = Field(default=None, description="Per-sample gradients whose norm exceeded max_grad_norm.")
    optimizer_noise_multiplier: float | None = Field(default=None, description="σ read from the DP optimizer itself.")
    optimizer_max_grad_norm: float | None = None


class TrainingEvidence(EvidenceModel):
    dp_enabled: bool
    non_private: bool = Field(description="True when trained without DP (only a policy that allows it passes).")
    accountant: str | None = Field(default=None, description="The accountant Opacus tracked during training.")
    epsilon: dict[str, float] = Field(
        default_factory=dict,
        description="ε per accountant: rdp, prv (Opacus), dp_accounting_rdp, dp_accounting_pld.",
    )
    delta: float | None = None
    noise_multiplier: float | None = None
    sample_rate: float | None = None
    steps: int
    epochs: float
    max_grad_norm: float | None = None
    n_train: int
    batch_size: int
    method: str
    trainable_params: int
    total_params: int
    base_model: dict[str, Any] = Field(
        default_factory=dict, description="name, path, digest; source, licence and package where the model's "
                                          "own card or package metadata state them.")
    curve: list[TrainingPoint] = Field(default_factory=list)
    device: str
    world_size: int = 1
    duration_s: float
    seed: int
    versions: dict[str, str] = Field(default_factory=dict)
    resumed_from_step: int | None = None
    task: str | None = None
    target_epsilon: float | None = Field(default=None, description="The configured target (σ was solved for it).")
    accountant_history: list[tuple[float, float, int]] = Field(
        default_factory=list, description="Opacus history: (noise_multiplier, sample_rate, steps) entries."
    )
    steps_per_epoch: int | None = None
    grad_sample_mode: str | None = Field(default=None, description="How Opacus computed per-sample gradients "
                                                                   "(hooks, ew, functorch, ghost).")
    poisson_sampling: bool | None = Field(default=None, description="Batches drawn by Poisson sampling, as the "
                                                                    "accountant assumes (a DP run never trains "
                                                                    "without it).")
    learning_rate: float | None = None
    max_length: int | None = None
    max_physical_batch_size: int | None = Field(default=None, description="Micro-batch size the logical batch was "
                                                                          "split into for memory (no effect on ε).")
    precision: str | None = None
    lora: dict[str, Any] = Field(default_factory=dict, description="r, alpha, dropout, target_modules.")
    label_names: list[str] = Field(default_factory=list)
    canaries_inserted: int = Field(default=0, description="Audit canary records appended to the training set.")
    checkpoints_written: int = 0
    model_digest: str | None = Field(
        default=None, description="Tree sha256 of the model folder this stage wrote (as in the lineage DB's "
                                  "artifacts); the evaluation, membership and fairness evidence name it too.")
    tokens_processed: int | None = Field(
        default=None, description="Non-padding tokens the training forward passes read (every step, all ranks); "
                                  "None when a resumed checkpoint predates the count.")
    padded_tokens_processed: int | None = Field(
        default=None, description="Sequence positions computed, padding included (what the FLOP estimate uses).")
    compute: ComputeEstimate | None = Field(
        default=None, description="Training FLOPs vs the base model's (EU AI Act significant-modification check).")
    integrity: TrainingIntegrity | None = Field(
        default=None, description="Training integrity and 'it actually trained' facts (None: recorded by an older govern).")
    loop: str = Field(default="recipe", description="Who ran the training loop: govern's recipe or the user's own "
                                                    "code in a govern.session.")


# --------------------------------------------------------------------------------------- evaluation
class EvaluationEvidence(EvidenceModel):
    task: str
    n: int
    accuracy: float | None = None
    macro_f1: float | None = None
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    ece: float | None = None
    ece_bins: int | None = None
    reliability: list[dict[str, float]] = Field(default_factory=list)
    loss: float | None = None
    perplexity: float | None = None
    ece_method: str | None = Field(
        default=None, description="How ECE was binned: top-label confidence, equal-width bins over [0, 1]."
    )
    tokens: int | None = Field(default=None, description="causal-lm: predicted tokens the loss averages over.")
    device: str | None = None
    duration_s: float = 0.0
    model_digest: str | None = Field(
        default=None, description="Tree sha256 of the model folder whose predictions these are (as in the lineage DB's "
                                  "artifacts): the model these numbers are about.")


# ---------------------------------------------------------------------------------------- fairness
class MetricValue(EvidenceModel):
    value: float | None = Field(description="The point estimate (None: undefined for this group, e.g. no positives).")
    ci_low: float | None = Field(default=None, description="Lower end of the bootstrap 95% interval (None: no bootstrap).")
    ci_high: float | None = Field(default=None, description="Upper end of the bootstrap 95% interval.")


class GroupMetrics(EvidenceModel):
    attribute: str = Field(description="A sensitive column, or 'a&b' for an intersection.")
    group: str
    n: int
    insufficient_data: bool = False
    metrics: dict[str, MetricValue] = Field(default_factory=dict)


class Disparity(EvidenceModel):
    attribute: str
    metric: str = Field(description="e.g. demographic_parity_difference, equalized_odds_difference.")
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    positive_label: str | None = Field(
        default=None,
        description="The class treated as positive for this number. One-vs-rest: the class whose "
        "disparity is the worst (the reported value is the max difference / min ratio over classes).",
    )
    min_group: str | None = Field(default=None, description="Group with the lowest value of the compared metric.")
    max_group: str | None = Field(default=None, description="Group with the highest value of the compared metric.")
    groups_compared: int = Field(default=0, description="Groups with enough data that entered this disparity.")


class FairnessEvidence(EvidenceModel):
    sensitive_columns: list[str]
    intersections: bool
    max_intersection_size: int | None = Field(
        default=None, description="Largest combination of sensitive columns audited (None: all).")
    bootstrap: int
    seed: int
    min_group_size: int
    positive_label: str | None = None
    groups: list[GroupMetrics] = Field(default_factory=list)
    disparities: list[Disparity] = Field(default_factory=list)
    insufficient_groups: list[str] = Field(default_factory=list)
    mode: Literal["binary", "one_vs_rest", "perplexity"] = Field(
        default="binary",
        description="binary: one positive label; one_vs_rest: each class in turn is positive and "
        "`disparities` holds the worst class; perplexity: causal LM, per-group perplexity.",
    )
    classes: list[str] = Field(default_factory=list)
    n: int = 0
    attributes: list[str] = Field(default_factory=list, description="Sensitive columns and their intersections ('a&b').")
    ci_level: float = 0.95
    bootstrap_method: str | None = None
    per_class_disparities: list[Disparity] = Field(
        default_factory=list, description="one_vs_rest: every class's disparities (`disparities` holds the worst)."
    )
    duration_s: float = 0.0
    model_digest: str | None = Field(
        default=None, description="Tree sha256 of the model folder whose predictions were audited (as in the lineage DB's "
                                  "artifacts): the model these numbers are about.")


# -------------------------------------------------------------------------------------- membership
class TprAtFpr(EvidenceModel):
    """The attack's true-positive rate at a false-positive-rate budget (Carlini et al. 2022).

    ``tpr`` is measured at the ROC point with the largest empirical FPR that is still ≤ ``fpr``. With
    ``n`` non-members the smallest non-zero FPR is 1/n, so a budget below that allows no false positive
    at all (``resolvable`` false): the number is then the TPR at zero false positives, not at ``fpr``.
    """

    fpr: float
    tpr: float
    ci_low: float | None = None
    ci_high: float | None = None
    achieved_fpr: float | None = Field(default=None, description="Empirical FPR of the chosen operating point.")
    max_false_positives: int | None = Field(default=None, description="floor(fpr · n_nonmembers).")
    resolvable: bool = Field(default=True, description="False when fpr · n_nonmembers < 1 (no false positive allowed).")
    ci_method: str = "clopper-pearson"


class AttackResult(EvidenceModel):
    name: str
    auc: float
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    tpr_at_fpr: list[TprAtFpr] = Field(default_factory=list)
    roc: list[tuple[float, float]] = Field(default_factory=list, description="Downsampled (fpr, tpr) points.")
    description: str = ""
    n_members: int | None = None
    n_nonmembers: int | None = None


class CanaryBound(EvidenceModel):
    """One ε lower bound from the canary guesses: one method at one abstention threshold."""

    method: str = Field(description="steinke-nasr-jagielski-2023 or mahloujifar-melis-chaudhuri-2025 (f-DP).")
    guess_fraction: float = Field(description="Share of the canary pool guessed on (the abstention threshold).")
    guesses: int
    correct: int = Field(description="Guesses that named a canary's membership right.")
    confidence: float = Field(description="Confidence of this one test (Bonferroni-corrected over all tests).")
    epsilon_lower_bound: float = Field(description="With this confidence the training's true ε is at least this.")


class CanaryAudit(EvidenceModel):
    pool_size: int
    inserted: int
    guesses: int
    correct: int
    confidence: float
    epsilon_lower_bound: float
    exposure: list[float] = Field(default_factory=list)
    attack: str = Field(default="loss", description="The attack whose scores ranked the canary pool (fixed in advance).")
    delta: float = Field(default=0.0, description="δ the lower bound holds for (the training δ; 0 for non-private runs).")
    accountant_epsilon: float | None = Field(default=None, description="The accountant's ε for the same run, if DP.")
    violation: bool = Field(default=False, description="True when the empirical lower bound exceeds the accountant's ε.")
    method: str = "steinke-nasr-jagielski-2023"
    canaries_in_model: bool = Field(
        default=False, description="The trained model saw the canaries: it is an audit model, not a release model."
    )
    exposure_candidates: int | None = Field(default=None, description="Random candidates ranked per exposure canary.")
    exposure_max: float | None = Field(default=None, description="Largest measurable exposure: log2(candidates + 1).")
    exposure_nonmembers: list[float] = Field(
        default_factory=list, description="Exposure of canaries not inserted (the baseline a model shows by chance)."
    )
    bounds: list[CanaryBound] = Field(
        default_factory=list, description="Every bound computed; the gated one (the largest) is epsilon_lower_bound, "
                                          "its method, guesses and correct are those above.")


class LiraDetails(EvidenceModel):
    """How the offline LiRA attack was calibrated (its metrics are in ``attacks`` under ``lira``)."""

    reference_models: int
    pool: str = Field(description="Where the reference models' training records came from (the held-out set).")
    pool_size: int
    records_per_model: list[int]
    min_out_models_per_record: int = Field(description="Fewest reference models any audited record was OUT of.")
    variance: str = Field(description="'global' (pooled over records, few models) or 'per-record'.")
    dp: bool = Field(description="The reference models were trained with the target's DP recipe.")
    steps: list[int] = Field(default_factory=list, description="Optimizer steps of each reference model (the target's).")
    noise_multiplier: float | None = Field(default=None, description="σ of the reference models (the target's).")
    reference_epsilon: list[float] = Field(default_factory=list, description="Accountant ε of each reference model.")
    seeds: list[int] = Field(default_factory=list)
    training_s: float = 0.0


class RmiaDetails(EvidenceModel):
    """How offline RMIA was calibrated (its metrics are in ``attacks`` under ``rmia``)."""

    reference_models: int
    shared_with_lira: bool = Field(description="The reference models are LiRA's: RMIA trained nothing of its own.")
    population_size: int = Field(description="Population records z each audited record is compared with.")
    offline_a: float = Field(description="The paper's correction factor for the missing IN models.")
    offline_a_source: Literal["policy", "tuned", "default"]
    gamma: float
    training_s: float = Field(default=0.0, description="Reference-model training time (0 when shared with LiRA).")


class ExtractionRate(EvidenceModel):
    """Verbatim extraction on one side of the audit (members or non-members)."""

    records: int = Field(description="Records prompted (those with tokens left after the prefix).")
    exact_matches: int = Field(description="Records whose greedy continuation reproduced the suffix token for token.")
    exact_match_rate: float
    ci_low: float | None = None
    ci_high: float | None = None
    ci_method: str = "clopper-pearson"
    mean_prefix_match: float = Field(
        description="Mean longest-common-prefix fraction: the share of the suffix reproduced before the first "
                    "wrong token.")


class ExtractionAudit(EvidenceModel):
    """Discoverable memorisation (Carlini et al. 2022): prompted with a record's first tokens, does the model
    continue it verbatim? Members against non-members of the same distribution, which is the baseline."""

    method: str = "carlini-2022-discoverable-memorization"
    decoding: Literal["greedy"] = "greedy"
    prefix_tokens: int = Field(description="k: prompt tokens (a prompt/completion record's whole prompt when longer).")
    suffix_tokens: int = Field(description="m: tokens compared (fewer when a record ends first).")
    confidence: float = 0.95
    members: ExtractionRate
    nonmembers: ExtractionRate
    excess_exact_match_rate: float = Field(
        description="Members' exact-match rate minus the non-members': what training on the records added "
                    "(the figure memorization.max_extraction_rate gates).")
    skipped_short: int = Field(default=0, description="Sampled records with nothing left after the prefix.")
    duration_s: float = 0.0


class PIICanaryCounts(EvidenceModel):
    entity_type: str
    inserted: int
    inserted_reproduced: int
    held_out: int
    held_out_reproduced: int


class PIIRegurgitation(EvidenceModel):
    """PII-shaped canaries completed from their context (after Lukas et al. 2023, "Analyzing Leakage of
    Personally Identifiable Information in Language Models"): counts, rates and keyed hashes, never a value."""

    method: str = "lukas-2023-context-completion"
    decoding: Literal["greedy"] = "greedy"
    pool_size: int
    repetitions: int = Field(description="Copies of each inserted canary in the training data.")
    inserted: int
    inserted_reproduced: int
    inserted_rate: float = Field(description="Share of inserted canaries reproduced exactly (the gated figure).")
    inserted_ci_low: float | None = None
    inserted_ci_high: float | None = None
    held_out: int = Field(description="Canaries of the pool that were not inserted: the chance baseline.")
    held_out_reproduced: int
    held_out_rate: float
    held_out_ci_low: float | None = None
    held_out_ci_high: float | None = None
    confidence: float = 0.95
    ci_method: str = "clopper-pearson"
    by_entity: list[PIICanaryCounts] = Field(default_factory=list)
    reproduced_value_hmacs: list[str] = Field(
        default_factory=list, description="HMAC-SHA256 (the lineage DB's PII key, normalised as PII findings are) of "
                                          "each inserted value the model reproduced; never the value.")
    hmac_key_id: str | None = Field(default=None, description="Id of that key (first 16 hex of its sha256).")
    duration_s: float = 0.0


class MembershipEvidence(EvidenceModel):
    n_members: int
    n_nonmembers: int
    seed: int
    attacks: list[AttackResult]
    max_auc: float
    canaries: CanaryAudit | None = None
    lira: LiraDetails | None = None
    rmia: RmiaDetails | None = None
    extraction: ExtractionAudit | None = Field(
        default=None, description="causal-lm: verbatim extraction of members vs non-members (None: not run).")
    pii_regurgitation: PIIRegurgitation | None = Field(
        default=None, description="causal-lm canary runs: PII canaries completed from their context.")
    task: str | None = None
    members_source: str | None = Field(default=None, description="Where members came from (file path or 'train').")
    nonmembers_source: str | None = None
    notes: list[str] = Field(default_factory=list, description="Caveats, e.g. FPR budgets too small for the sample.")
    duration_s: float = 0.0
    model_digest: str | None = Field(
        default=None, description="Tree sha256 of the model folder that was attacked (as in the lineage DB's "
                                  "artifacts): the model these numbers are about.")


# ----------------------------------------------------------------------------------------- signing
class SigningEvidence(EvidenceModel):
    method: str
    signed: bool
    bundle: str | None = None
    signer: str | None = Field(default=None, description="Public-key fingerprint or certificate identity.")
    files: int = 0
    manifest_digest: str | None = None
    provenance_bundles: list[str] = Field(default_factory=list)
    model_digest: str | None = Field(default=None, description="Tree sha256 of the signed model (as in artifacts).")
    attestations: list[str] = Field(default_factory=list, description="predicateType of each signed statement.")


# ------------------------------------------------------------------------------------------ ledger
class LedgerEntry(EvidenceModel):
    dataset_fingerprint: str
    runs: int = Field(description="Recorded runs that trained on this data set, this one included.")
    total_epsilon: float = Field(description="ε of all of them composed, at the largest of their δs (their sum "
                                              "when a run can only be composed basically; 1e-5 when none "
                                              "recorded one); infinite once one trained without DP.")
    accountant: str


class RunEvidence(EvidenceModel):
    run_id: str
    name: str
    task: str
    config_digest: str


class Evidence(EvidenceModel):
    """The evidence document. A stage that did not run leaves its key ``None``."""

    run: RunEvidence | None = None
    data: DataEvidence | None = None
    pii: PIIEvidence | None = None
    training: TrainingEvidence | None = Field(
        default=None, description="DP parameters, ε per accountant and the trained model's digest (a user's own "
                                  "loop under govern.session records the same).")
    evaluation: EvaluationEvidence | None = None
    membership: MembershipEvidence | None = None
    fairness: FairnessEvidence | None = None
    signing: SigningEvidence | None = None
    ledger: list[LedgerEntry] | None = Field(
        default=None, description="Per training file of a DP run, when the policy caps "
                                  "privacy.max_total_epsilon_per_dataset: ε composed over every recorded run that "
                                  "trained on it and this one.")

    def document(self) -> dict[str, Any]:
        """The JSON document the policy engine and CEL rules see."""
        return self.model_dump(mode="json")


#: Evidence key → model, used to rebuild stored evidence from the lineage DB.
EVIDENCE_MODELS: dict[str, type[EvidenceModel]] = {
    "run": RunEvidence,
    "data": DataEvidence,
    "pii": PIIEvidence,
    "training": TrainingEvidence,
    "evaluation": EvaluationEvidence,
    "membership": MembershipEvidence,
    "fairness": FairnessEvidence,
    "signing": SigningEvidence,
}
