"""The policy file format (``apiVersion: govern.dev/v1``, ``kind: Policy``).

One section per concern holds the thresholds the built-in rules check; ``rules`` holds custom rules in
CEL. A section that is omitted keeps the defaults below, which are permissive where a check needs a
number the organisation must choose (e.g. no fairness limit unless one is set). ``govern policy schema``
prints this as JSON Schema for editors.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from typing_extensions import TypedDict

from govern.decisions import Severity  # one definition, shared with the verdicts

PIIAction = Literal["block", "redact", "allow"]
MembershipAttack = Literal["loss", "reference", "min_k", "zlib", "min_k_pp"]
#: ε lower bounds the canary audit can compute (govern.audits.fdp_audit).
CanaryBoundMethod = Literal["steinke", "fdp"]
SigningMethod = Literal["key", "certificate", "sigstore"]


# Defaults as named functions, not lambdas: a lambda's literals are inferred as plain str, so the type
# checker could not see that they are valid actions/attacks/methods.
def _default_entities() -> dict[str, PIIAction]:
    return {
        "CREDIT_CARD": "redact",
        "US_SSN": "redact",
        "IBAN_CODE": "redact",
        "EMAIL_ADDRESS": "redact",
        "PHONE_NUMBER": "redact",
        "IP_ADDRESS": "redact",
    }


def _default_ner_entities() -> dict[str, PIIAction]:
    return {"PERSON": "allow", "LOCATION": "allow", "NRP": "allow"}


def _default_bounds() -> list[CanaryBoundMethod]:
    return ["steinke"]


def _default_attacks() -> list[MembershipAttack]:
    return ["loss", "reference"]


def _default_signing_methods() -> list[SigningMethod]:
    return ["key", "certificate", "sigstore"]


ApproverRole = Literal["approver", "admin"]


def _default_approver_roles() -> list[ApproverRole]:
    return ["approver", "admin"]


API_VERSION = "govern.dev/v1"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Metadata(Section):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1, description="The policy's own version, e.g. 1.2.0.")
    description: str | None = None
    owner: str | None = None


class DataPolicy(Section):
    severity: Severity = "block"
    min_train_rows: int = Field(default=1, ge=0)
    min_eval_rows: int = Field(default=1, ge=0)
    max_exact_leakage: int | None = Field(default=0, ge=0, description="Eval records also in train (exact, normalised).")
    max_near_duplicate_fraction: float | None = Field(default=None, ge=0, le=1)


class PatternSpec(Section):
    regex: str
    score: float = Field(default=0.8, gt=0, le=1)
    name: str | None = None

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return v


class CustomRecognizer(Section):
    """A regex or deny-list recognizer added without code (employee ids, patient numbers...)."""

    name: str
    entity: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    patterns: list[PatternSpec] = Field(default_factory=list)
    deny_list: list[str] = Field(default_factory=list)
    context: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _has_something(self) -> CustomRecognizer:
        if not self.patterns and not self.deny_list:
            raise ValueError("a custom recognizer needs patterns or deny_list")
        return self


class SampleSpec(Section):
    fraction: float | None = Field(default=None, gt=0, le=1)
    max_records: int | None = Field(default=None, ge=1)
    seed: int = 0


class PIIQualityPolicy(Section):
    """Measured detection quality: score the scan on a labeled sample of the user's own data."""

    sample: str | None = Field(
        default=None,
        description="Labeled sample (JSONL with text + spans, or presidio-research JSON); relative to the policy file.",
    )
    min_recall: dict[str, float] = Field(
        default_factory=dict, description="Entity → recall floor on the sample (0..1); below it the run blocks."
    )
    severity: Severity = "block"

    @model_validator(mode="after")
    def _floors_are_rates(self) -> PIIQualityPolicy:
        for entity, floor in self.min_recall.items():
            if not 0 <= floor <= 1:
                raise ValueError(f"min_recall.{entity}: {floor} is not a rate between 0 and 1")
        return self


class PIIPolicy(Section):
    engine: Literal["patterns", "spacy"] = "patterns"
    min_score: float = Field(default=0.5, ge=0, le=1)
    entities: dict[str, PIIAction] = Field(
        default_factory=_default_entities,
        description="Entity type → action. Only these types are scanned.",
    )
    context_words: dict[str, list[str]] = Field(default_factory=dict)
    custom_recognizers: list[CustomRecognizer] = Field(default_factory=list)
    ner_entities: dict[str, PIIAction] = Field(
        default_factory=_default_ner_entities,
        description="Entity → action added when the spacy engine runs (NER types; `entities` wins on overlap).",
    )
    redaction: Literal["entity_type", "pseudonym"] = "entity_type"
    sample: SampleSpec | None = None
    quality: PIIQualityPolicy = Field(default_factory=PIIQualityPolicy)
    severity: Severity = "block"

    @model_validator(mode="after")
    def _custom_entities_have_actions(self) -> PIIPolicy:
        for custom in self.custom_recognizers:
            if custom.entity not in self.entities:
                raise ValueError(
                    f"custom recognizer '{custom.name}' finds {custom.entity}, which pii.entities does not list: "
                    "give it an action (block, redact or allow)"
                )
        return self


class PrivacyPolicy(Section):
    require_dp: bool = True
    max_epsilon: float | None = Field(default=8.0, gt=0)
    max_delta: float | None = Field(default=1e-5, gt=0, lt=1)
    delta_below_inverse_n: bool = Field(default=True, description="Require δ < 1/n (n = training records).")
    accountant: Literal["rdp", "prv", "dp_accounting_rdp", "dp_accounting_pld"] = "rdp"
    max_total_epsilon_per_dataset: float | None = Field(default=None, gt=0)
    severity: Severity = "block"


class TrainingPolicy(Section):
    """Is the trained model the one the accountant accounted for, and did it actually train?"""

    require_integrity: bool = Field(default=True, description="Block a model whose trainable weights changed "
                                    "outside a private optimizer step (a second optimizer, an edit, other weights).")
    min_relative_weight_change: float = Field(
        default=0.0, ge=0, description="The trainable weights must change by more than this (relative L2 norm): "
                                       "0 blocks a model that did not train at all.")
    severity: Severity = "block"


class TprLimit(Section):
    fpr: float = Field(gt=0, lt=1)
    max_tpr: float = Field(gt=0, le=1)


class CanaryPolicy(Section):
    enabled: bool = False
    pool_size: int = Field(default=200, ge=2)
    confidence: float = Field(default=0.95, gt=0, lt=1)
    repetitions: int = Field(default=1, ge=1)
    ship_canaried_model: bool = Field(
        default=False, description="If false, canaries are an audit-only run: the signed model must not contain them."
    )
    guess_fraction: float = Field(
        default=0.2, gt=0, le=1,
        description="Share of the pool the auditor guesses on (half top scores 'in', half bottom 'out'); abstains on the rest.",
    )
    exposure_candidates: int = Field(
        default=255, ge=1, description="causal-lm: random secrets each exposure canary is ranked against."
    )
    exposure_canaries: int = Field(default=8, ge=0, description="causal-lm: inserted canaries whose exposure is measured.")
    guess_fractions: list[float] = Field(
        default_factory=list,
        description="More abstention thresholds to try besides guess_fraction; the largest bound is kept, each "
                    "test at a Bonferroni-corrected confidence so the kept one holds at `confidence`.")
    pii_pool_size: int = Field(
        default=60, ge=0,
        description="causal-lm: PII-shaped canaries (fake e-mail addresses, phone numbers, Luhn-valid card numbers "
                    "after a context) added beside the pool, each inserted on its own coin flip; the audit measures "
                    "how many the model completes from their context (0: none).")
    bounds: list[CanaryBoundMethod] = Field(
        default_factory=_default_bounds,
        description="ε lower bounds computed from the guesses: Steinke-Nasr-Jagielski 2023 and/or the f-DP "
                    "one-run audit (Mahloujifar-Melis-Chaudhuri 2025); the largest is gated (Bonferroni over all).")

    @field_validator("guess_fractions")
    @classmethod
    def _fractions_in_range(cls, value: list[float]) -> list[float]:
        for f in value:
            if not 0 < f <= 1:
                raise ValueError(f"guess fraction {f:g} must be in (0, 1]")
        return value


class LiraPolicy(Section):
    """Offline LiRA (Carlini et al. 2022): ``reference_models`` models trained with the run's own recipe
    (and its steps and σ) on random subsets of the held-out set calibrate each record's confidence.
    Costs about k training runs; only inside ``govern run``, where the recipe is known."""

    enabled: bool = False
    reference_models: int = Field(
        default=4, ge=3,
        description="k: each held-out record trains ⌊k/2⌋ of them and is OUT of ⌈k/2⌉ (more models, better calibration).",
    )


class RmiaPolicy(Section):
    """Offline RMIA (Zarifzadeh et al. 2024) on LiRA's reference models (no extra training when LiRA is
    on); alone, it trains ``reference_models`` of them (1 or 2 suffice). Only inside ``govern run``."""

    enabled: bool = False
    reference_models: int = Field(default=2, ge=1, description="Used only when LiRA is off (else LiRA's models).")
    offline_a: float | None = Field(
        default=None, ge=0, le=1,
        description="The paper's offline correction factor; unset: tuned on the reference models (2 or more).")
    gamma: float = Field(default=1.0, ge=1, description="γ: how much more likely x must be than a population record.")


class MembershipPolicy(Section):
    attacks: list[MembershipAttack] = Field(default_factory=_default_attacks)
    max_auc: float | None = Field(default=None, ge=0.5, le=1)
    max_tpr_at_fpr: list[TprLimit] = Field(default_factory=list)
    canaries: CanaryPolicy = Field(default_factory=CanaryPolicy)
    lira: LiraPolicy = Field(default_factory=LiraPolicy)
    rmia: RmiaPolicy = Field(default_factory=RmiaPolicy)
    severity: Severity = "block"


class MemorizationPolicy(Section):
    """What a causal LM reproduces verbatim (the membership stage measures it; classifiers have nothing to
    gate here). Both limits are rates in [0, 1]; unset, the figures are measured and reported only."""

    # Gated on the excess over non-members, not the members' rate: a held-out record of the same
    # distribution is "extracted" too when its continuation is predictable (boilerplate, templates, code
    # idioms), and that is the task being learned, not a training record given away. The excess is what
    # having the record in training added (Carlini et al. 2022 compare against the same control).
    max_extraction_rate: float | None = Field(
        default=None, ge=0, le=1,
        description="Largest allowed excess of the members' verbatim exact-match rate over the non-members' "
                    "(membership.extraction.excess_exact_match_rate).")
    # Gated on the inserted canaries' rate itself: their values are uniformly random given their context,
    # so nothing but memorisation reproduces one (the held-out canaries' rate, ≈ 0, is the check of that).
    max_pii_regurgitation_rate: float | None = Field(
        default=None, ge=0, le=1,
        description="Largest allowed share of inserted PII canaries the model completes from their context "
                    "(membership.pii_regurgitation.inserted_rate); measured in canary audit runs only.")
    severity: Severity = "block"


# Fairness limits are checked where they are written: a limit outside the range its metric can take
# either never passes (every run trains for hours, then blocks) or never fails (the gate is silently
# off, e.g. a typo'd sign). Both are load errors naming the line, not advisories.
def _difference_limit(value: float) -> float:
    if value < 0:
        raise ValueError(f"{value:g} can never pass: a difference between groups is never negative "
                         "(limits lie in [0, 1]; 0 demands exact parity)")
    if value > 1:
        raise ValueError(f"{value:g} can never fail: a difference between two rates is at most 1 "
                         "(limits lie in [0, 1]; remove the limit to stop gating on it)")
    return value


def _ratio_limit(value: float) -> float:
    if value > 1:
        raise ValueError(f"{value:g} can never pass: a ratio of the smallest to the largest group rate is "
                         "at most 1 (limits lie in (0, 1]; 0.8 is the four-fifths rule)")
    if value <= 0:
        raise ValueError(f"{value:g} can never fail: a ratio of rates is never negative (limits lie in "
                         "(0, 1]; remove the limit to stop gating on it)")
    return value


def _perplexity_difference_limit(value: float) -> float:
    if value < 0:
        raise ValueError(f"{value:g} can never pass: a perplexity gap between groups is never negative")
    return value


DifferenceLimit = Annotated[float, AfterValidator(_difference_limit)]
RatioLimit = Annotated[float, AfterValidator(_ratio_limit)]


class MaxDifference(TypedDict, total=False):
    """Fairness metric → largest allowed gap between groups (the worst pair of groups is gated)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]  # pydantic's TypedDict config key

    demographic_parity_difference: DifferenceLimit
    equalized_odds_difference: DifferenceLimit
    accuracy_difference: DifferenceLimit
    true_positive_rate_difference: DifferenceLimit
    false_positive_rate_difference: DifferenceLimit
    perplexity_difference: Annotated[float, AfterValidator(_perplexity_difference_limit)]


class MinRatio(TypedDict, total=False):
    """Fairness ratio → smallest allowed ratio of the lowest to the highest group rate."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]  # pydantic's TypedDict config key

    demographic_parity_ratio: RatioLimit
    equalized_odds_ratio: RatioLimit


class FairnessPolicy(Section):
    min_group_size: int = Field(default=30, ge=1)
    gate_on: Literal["point", "ci"] = Field(
        default="point", description="point: the estimate; ci: the CI bound least favourable to passing."
    )
    max_difference: MaxDifference = Field(default_factory=lambda: MaxDifference())
    min_ratio: MinRatio = Field(default_factory=lambda: MinRatio())
    min_worst_group_accuracy: float | None = Field(default=None, ge=0, le=1)
    insufficient_data: Severity = "warn"
    severity: Severity = "block"


class EvaluationPolicy(Section):
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_macro_f1: float | None = Field(default=None, ge=0, le=1)
    max_ece: float | None = Field(default=None, ge=0, le=1)
    max_perplexity: float | None = Field(default=None, gt=0)
    severity: Severity = "block"


class SigningPolicy(Section):
    required: bool = False
    methods: list[SigningMethod] = Field(default_factory=_default_signing_methods)
    private_key_permissions: Literal["warn", "refuse"] = Field(
        default="warn",
        description="A signing private key that group or others can read: warn, or refuse to sign (the run fails).",
    )
    severity: Severity = "block"


class ApprovalPolicy(Section):
    """Who may approve a model version for deployment, and what an approvable model must be
    (``govern model approve``, the console). Not a rule over evidence: it is applied when a user acts."""

    roles: list[ApproverRole] = Field(
        default_factory=_default_approver_roles,
        description="Console roles allowed to approve, promote, revoke and roll back.")
    approvers: list[str] = Field(
        default_factory=list,
        description="If set, only these users (as recorded, e.g. --actor or the CI user) may approve.")
    distinct_approver: bool = Field(
        default=True, description="Four eyes: the approver is not the user who ran the training.")
    require_decision: Literal["pass", "warn", "any"] = Field(
        default="pass", description="The run's decision an approvable model needs (pass; warn allows pass or warn).")
    allow_waived: bool = Field(
        default=False, description="Accept a pass that rests on a waived block.")
    require_signature: bool = Field(
        default=True, description="Only a signed model whose signature verifies over the recorded digest.")
    approvals_to_deploy: int = Field(default=1, ge=1, le=10,
                                     description="Distinct approvals a version needs before it is deployed.")


class RuleLimits(Section):
    """What one custom rule may spend before it is stopped and counted as an ``error`` (fail closed).

    ``max_cost`` is deterministic (one unit per CEL node evaluated plus the length of every list, map or
    string built), so a replay by ``govern check`` reaches the same verdict on any machine; ``timeout_s``
    is a wall-clock backstop. A simple predicate costs ~25 units per list element, so the default allows
    ~4,000 element visits (≈0.5 s in cel-python): far above what a rule over govern's evidence needs
    (the strict policy's rule over a 500-point curve costs ~550), far below a nested-``all`` bomb (10⁶
    visits). Raise them here, or per rule, for a deliberately heavy rule.
    """

    max_cost: int = Field(default=100_000, ge=1_000, le=100_000_000,
                          description="Cost units per rule evaluation (nodes evaluated + sizes of values built).")
    timeout_s: float = Field(default=2.0, gt=0, le=600, description="Wall-clock seconds per rule evaluation.")


class CustomRule(Section):
    """A rule in CEL. ``expression`` must evaluate to true for the rule to pass (as in Kubernetes
    ValidatingAdmissionPolicy); the evidence document is bound to ``evidence``."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str | None = None
    severity: Severity = "block"
    expression: str
    message: str = Field(description="Shown when the expression is false.")
    requires: list[str] = Field(
        default_factory=list,
        description="Evidence keys that must exist before the rule is evaluated (e.g. [training]).",
    )
    max_cost: int | None = Field(default=None, ge=1_000, le=100_000_000,
                                 description="Overrides rule_limits.max_cost for this rule.")
    timeout_s: float | None = Field(default=None, gt=0, le=600,
                                    description="Overrides rule_limits.timeout_s for this rule.")


class Policy(Section):
    apiVersion: Literal["govern.dev/v1"]  # noqa: N815 (the file format's key)
    kind: Literal["Policy"]
    metadata: Metadata
    data: DataPolicy = Field(default_factory=DataPolicy)
    pii: PIIPolicy = Field(default_factory=PIIPolicy)
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    training: TrainingPolicy = Field(default_factory=TrainingPolicy)
    membership: MembershipPolicy = Field(default_factory=MembershipPolicy)
    memorization: MemorizationPolicy = Field(default_factory=MemorizationPolicy)
    fairness: FairnessPolicy = Field(default_factory=FairnessPolicy)
    evaluation: EvaluationPolicy = Field(default_factory=EvaluationPolicy)
    signing: SigningPolicy = Field(default_factory=SigningPolicy)
    approval: ApprovalPolicy = Field(default_factory=ApprovalPolicy)
    rule_limits: RuleLimits = Field(default_factory=RuleLimits)
    rules: list[CustomRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_rule_ids(self) -> Policy:
        seen: set[str] = set()
        for r in self.rules:
            if r.id in seen:
                raise ValueError(f"duplicate rule id '{r.id}'")
            seen.add(r.id)
        return self
