"""Training compute of a fine-tune against its base model's: the EU AI Act significant-modification check.

The Commission's guidelines on the obligations of GPAI providers (18 July 2025) take a modification whose
training compute exceeds **one third** of the original model's training compute as the indicative
criterion that whoever modified the model becomes the provider of a new GPAI model, and **10^23 FLOP** as
the compute above which a model is presumed to be a GPAI model. This module estimates both sides from what
the training evidence records, by formulas written down here, and says which way each estimate errs.

FLOP formulas (D = sequence positions the forward passes computed, padding included; N = all parameters of
the model as trained; N_t = trainable parameters):

- ``full``: ``6·N·D`` — forward 2·N·D, backward 4·N·D (gradients for activations and for every weight;
  Kaplan et al. 2020, Hoffmann et al. 2022).
- ``lora``: ``(4·N + 2·N_t)·D`` — forward 2·N·D; the backward pass still propagates activation gradients
  through the frozen network (2·N·D) but computes weight gradients for the adapters only (2·N_t·D).
- with DP (Opacus): ``+ 2·N_t·D`` for the per-sample gradients of the trainable weights, computed next to
  the batch gradient before clipping.

Both count embedding parameters as if they cost two FLOPs per token (a lookup costs less) and count padded
positions: the estimate of the fine-tune errs high. The known base-model figures below are lower bounds
(the documented last training phase only), so the ratio errs high too: a check that says "below one third"
is not optimistic.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, ConfigDict

from govern.evidence import ComputeEstimate, TrainingEvidence

#: The guidelines' indicative ratio and GPAI presumption.
SIGNIFICANT_MODIFICATION_RATIO: Final = 1 / 3
GPAI_PRESUMPTION_FLOPS: Final = 1e23


class KnownBaseCompute(BaseModel):
    """A base model's training compute as govern ships it: a number, and how it was derived."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flops: float
    source: str


#: Training compute of the models govern's packages ship (matched on name, source or package). Each is
#: 6·N·D over the training its own model card documents, a lower bound of the true total.
KNOWN_BASE_COMPUTE: Final[dict[str, KnownBaseCompute]] = {
    "all-minilm-l6-v2": KnownBaseCompute(
        flops=6 * 22_713_216 * 100_000 * 1024 * 128,
        source="6·N·D over the sentence-transformers fine-tuning its model card documents (100k steps × batch "
               "1024 × 128 tokens, N = 22.7M); excludes MiniLM's own pre-training, so a lower bound"),
    "smollm2-135m": KnownBaseCompute(
        flops=6 * 134_515_008 * 2e12,
        source="6·N·D over the 2T pre-training tokens its model card documents (N = 134.5M); excludes the "
               "instruction tuning, so a lower bound"),
}


def known_base_compute(base_model: dict[str, object]) -> KnownBaseCompute | None:
    """The shipped figure for a base model, matched on its recorded name, source or package (case-folded)."""
    haystack = " ".join(str(base_model.get(k) or "") for k in ("name", "source", "package", "gguf_file")).lower()
    for key, known in KNOWN_BASE_COMPUTE.items():
        if key in haystack or key.replace("-", "_") in haystack:
            return known
    return None


def fine_tune_flops(method: str, tokens: int, total_params: int, trainable_params: int, dp: bool) -> tuple[float, str]:
    """(FLOPs, the formula with its terms) for one fine-tune; see the module docstring."""
    if method == "full":
        flops = 6.0 * total_params * tokens
        formula = f"6·N·D (full fine-tune; N = {total_params:,}, D = {tokens:,})"
    else:
        flops = (4.0 * total_params + 2.0 * trainable_params) * tokens
        formula = f"(4·N + 2·N_t)·D (LoRA; N = {total_params:,}, N_t = {trainable_params:,}, D = {tokens:,})"
    if dp:
        flops += 2.0 * trainable_params * tokens
        formula += " + 2·N_t·D (DP per-sample gradients)"
    return flops, formula


def estimate_compute(training: TrainingEvidence, base_model_training_flops: float | None = None) -> ComputeEstimate | None:
    """The compute estimate of a recorded fine-tune; None when the evidence lacks its token count.

    ``base_model_training_flops``: the run config's figure (``base_model.training_flops``), which wins over
    govern's table of known models."""
    tokens = training.padded_tokens_processed
    if tokens is None:
        return None
    method = "full" if training.method == "full" else "lora"
    flops, formula = fine_tune_flops(method, tokens, training.total_params, training.trainable_params,
                                     training.dp_enabled)
    notes = ["the fine-tune's FLOPs are an estimate that errs high (padding and embedding lookups counted as "
             "matrix multiplies)",
             "audit models (LiRA reference models, canary runs) are not counted: they are not the released model"]
    base, source = base_model_training_flops, "run config (base_model.training_flops)"
    if base is None:
        known = known_base_compute(training.base_model)
        if known is not None:
            base, source = known.flops, known.source
    ratio = flops / base if base else None
    if ratio is None:
        notes.append("the base model's training compute is unknown: set base_model.training_flops in the run "
                     "config to compare")
    return ComputeEstimate(
        tokens_processed=tokens, method=method, trainable_params=training.trainable_params,
        total_params=training.total_params, formula=formula, flops=flops, base_model_training_flops=base,
        base_model_training_flops_source=source if base is not None else None, base_compute_ratio=ratio,
        significant_modification_threshold=SIGNIFICANT_MODIFICATION_RATIO,
        exceeds_significant_modification=None if ratio is None else ratio > SIGNIFICANT_MODIFICATION_RATIO,
        gpai_presumption_flops=GPAI_PRESUMPTION_FLOPS, notes=notes)
