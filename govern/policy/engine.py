"""Policy evaluation: evidence document in, rule results and a decision out.

The engine sees only the evidence document (plain JSON) and waivers — never live objects — so the same
evaluation can be replayed years later by ``govern check`` from the lineage DB, under the policy of the
day or a newer one.

Semantics:
- every built-in rule and custom rule yields one result: pass, fail, waived, skipped (its stage has not
  produced evidence) or error (a custom rule could not be evaluated — fails closed at the final
  decision, because a compliance gate must not pass on a rule it could not check);
- ``block`` if any fail/error of severity block is not covered by a valid, unexpired waiver; else ``warn``
  if anything of severity warn failed or a block was waived; else ``pass``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any, cast

from govern.decisions import Decision, PolicyDecision, RuleResult, Severity, Status, WaiverRef
from govern.policy.cel import cel_document, evaluate_expression
from govern.policy.schema import Policy

__all__ = ["BUILTIN_CHECKS", "Decision", "PolicyDecision", "RuleResult", "Severity", "Status", "WaiverRef",
           "evaluate"]


Check = Callable[[Policy, dict[str, Any]], Iterable[RuleResult]]

#: evidence key → built-in checks that need it. A check runs only once its evidence exists.
BUILTIN_CHECKS: dict[str, list[Check]] = {}


def builtin(section: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        BUILTIN_CHECKS.setdefault(section, []).append(fn)
        return fn

    return register


def _result(rule_id: str, severity: Severity, ok: bool, message: str, path: str, observed: Any,
            threshold: Any) -> RuleResult:
    return RuleResult(rule_id=rule_id, severity=severity, status="pass" if ok else "fail", message=message,
                      evidence_path=path, observed=observed, threshold=threshold)


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# --------------------------------------------------------------------------------------------- data
@builtin("data")
def _data_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    p, d = policy.data, doc["data"]
    yield _result("data.min_train_rows", p.severity, d["train_rows"] >= p.min_train_rows,
                  f"train rows {d['train_rows']} (minimum {p.min_train_rows})", "data.train_rows",
                  d["train_rows"], p.min_train_rows)
    yield _result("data.min_eval_rows", p.severity, d["eval_rows"] >= p.min_eval_rows,
                  f"eval rows {d['eval_rows']} (minimum {p.min_eval_rows})", "data.eval_rows",
                  d["eval_rows"], p.min_eval_rows)
    leak = d["leakage"]
    if p.max_exact_leakage is not None:
        yield _result("data.max_exact_leakage", p.severity, leak["exact_duplicates"] <= p.max_exact_leakage,
                      f"{leak['exact_duplicates']} eval records also occur in train after normalisation "
                      f"(allowed {p.max_exact_leakage})", "data.leakage.exact_duplicates",
                      leak["exact_duplicates"], p.max_exact_leakage)
    if p.max_near_duplicate_fraction is not None:
        yield _result("data.max_near_duplicate_fraction", p.severity,
                      leak["near_fraction"] <= p.max_near_duplicate_fraction,
                      f"{_fmt(leak['near_fraction'])} of eval records are near-duplicates of train records "
                      f"(Jaccard ≥ {leak['threshold']}; allowed {p.max_near_duplicate_fraction})",
                      "data.leakage.near_fraction", leak["near_fraction"], p.max_near_duplicate_fraction)


# ---------------------------------------------------------------------------------------------- pii
@builtin("pii")
def _pii_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    blocked = {k: v for k, v in (doc["pii"].get("blocked") or {}).items() if v}
    desc = ", ".join(f"{k}×{v}" for k, v in sorted(blocked.items()))
    yield _result("pii.blocked_entities", policy.pii.severity, not blocked,
                  f"personal data the policy blocks was found: {desc}" if blocked
                  else "no personal data of a blocked type found", "pii.blocked", blocked,
                  sorted(e for e, a in policy.pii.entities.items() if a == "block"))
    yield from _pii_quality_checks(policy, doc)


def _pii_quality_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    """``pii.quality.min_recall[ENTITY]``: the scan's recall on the labeled sample. Fails closed: a floor
    without a measured sample, or a sample without any span of that entity, is a failure."""
    q = policy.pii.quality
    quality = doc["pii"].get("quality") or {}
    by_entity = {e["entity_type"]: e for e in quality.get("entities") or []}
    for entity, floor in sorted(q.min_recall.items()):
        rule = f"pii.quality.min_recall[{entity}]"
        measured = by_entity.get(entity)
        if not quality.get("measured"):
            yield _result(rule, q.severity, False, f"{entity} recall must be at least {floor:g}, but detection quality "
                          "was not measured (set pii.quality.sample)", "pii.quality.measured", False, floor)
        elif measured is None or not measured.get("gold"):
            yield _result(rule, q.severity, False, f"the labeled sample has no {entity} spans: its recall cannot be "
                          f"shown to reach {floor:g}", "pii.quality.entities", 0, floor)
        else:
            recall = float(measured["recall"])
            ci = f" (95% CI {measured['recall_ci_low']:.3f}–{measured['recall_ci_high']:.3f}, " \
                 f"{measured['true_positives']}/{measured['gold']} found)"
            yield _result(rule, q.severity, recall >= floor,
                          f"{entity} recall on the labeled sample {recall:.3f}{ci}, minimum {floor:g}",
                          "pii.quality.entities", recall, floor)


# ------------------------------------------------------------------------------------------ privacy
@builtin("training")
def _privacy_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    p, t = policy.privacy, doc["training"]
    dp = bool(t.get("dp_enabled")) and not t.get("non_private")
    if p.require_dp or not dp:
        yield _result("privacy.require_dp", p.severity, dp or not p.require_dp,
                      "trained with differential privacy" if dp else
                      ("trained WITHOUT differential privacy" + ("" if p.require_dp else " (allowed by this policy)")),
                      "training.dp_enabled", dp, p.require_dp)
    if not dp:
        return
    eps_all = t.get("epsilon") or {}
    eps = eps_all.get(p.accountant)
    if p.max_epsilon is not None:
        if eps is None:
            yield RuleResult(rule_id="privacy.max_epsilon", severity=p.severity, status="error",
                             message=f"no ε from accountant '{p.accountant}' in the training evidence",
                             evidence_path=f"training.epsilon.{p.accountant}", threshold=p.max_epsilon)
        else:
            ok = math.isfinite(eps) and eps <= p.max_epsilon
            yield _result("privacy.max_epsilon", p.severity, ok,
                          f"ε = {_fmt(eps)} ({p.accountant}, δ = {_fmt(t.get('delta'))}); maximum {p.max_epsilon}",
                          f"training.epsilon.{p.accountant}", eps, p.max_epsilon)
    delta = t.get("delta")
    if p.max_delta is not None:
        yield _result("privacy.max_delta", p.severity, delta is not None and delta <= p.max_delta,
                      f"δ = {_fmt(delta)}; maximum {p.max_delta}", "training.delta", delta, p.max_delta)
    if p.delta_below_inverse_n and t.get("n_train"):
        bound = 1.0 / t["n_train"]
        yield _result("privacy.delta_below_inverse_n", p.severity, delta is not None and delta < bound,
                      f"δ = {_fmt(delta)} must be below 1/n = {_fmt(bound)}", "training.delta", delta, bound)


@builtin("training")
def _training_integrity_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    p, integrity = policy.training, doc["training"].get("integrity")
    if integrity is None:  # recorded by a govern that did not track it: nothing to judge (not a pass)
        return
    if p.require_integrity:
        n = int(integrity.get("violations") or 0)
        details = "; ".join(integrity.get("violation_details") or [])[:300]
        yield _result("training.integrity", p.severity, n == 0,
                      "the trainable weights changed only in private (accounted) optimizer steps" if n == 0 else
                      f"{n} training-integrity violation(s): the model is not the one the accountant accounted "
                      f"for ({details})", "training.integrity.violations", n, 0)
        if integrity.get("per_sample_grads_all_params") is False:
            missing = ", ".join(integrity.get("missing_per_sample_grads") or [])[:200]
            yield _result("training.per_sample_gradients", p.severity, False,
                          f"no per-sample gradients for trainable parameter(s) {missing}: they were not clipped "
                          "and noised", "training.integrity.per_sample_grads_all_params", False, True)
    change = float(integrity.get("relative_weight_change") or 0.0)
    floor = p.min_relative_weight_change
    yield _result("training.weights_changed", p.severity, change > floor,
                  f"trainable weights changed by {_fmt(change)} (relative L2); must exceed {floor:g}"
                  + ("" if change > floor else " — the model did not train"),
                  "training.integrity.relative_weight_change", change, floor)


@builtin("ledger")
def _ledger_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    cap = policy.privacy.max_total_epsilon_per_dataset
    if cap is None:
        return
    for entry in doc["ledger"] or []:
        total = entry["total_epsilon"]
        fp = entry["dataset_fingerprint"]
        yield _result(f"privacy.max_total_epsilon_per_dataset[{fp[:19]}]", policy.privacy.severity, total <= cap,
                      f"data set {fp[:19]}… has spent ε = {_fmt(total)} over {entry['runs']} runs "
                      f"({entry['accountant']} composition); cap {cap}", "ledger", total, cap)


# --------------------------------------------------------------------------------------- membership
@builtin("membership")
def _membership_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    p, m = policy.membership, doc["membership"]
    if p.max_auc is not None:
        worst = max(m["attacks"], key=lambda a: a["auc"]) if m["attacks"] else None
        auc = worst["auc"] if worst else None
        yield _result("membership.max_auc", p.severity, auc is not None and auc <= p.max_auc,
                      f"strongest attack '{worst['name'] if worst else '-'}' AUC = {_fmt(auc)}; maximum {p.max_auc}",
                      "membership.max_auc", auc, p.max_auc)
    for limit in p.max_tpr_at_fpr:
        observed = []
        for attack in m["attacks"]:
            for point in attack.get("tpr_at_fpr", []):
                if abs(point["fpr"] - limit.fpr) < 1e-12:
                    observed.append((point["tpr"], attack["name"], point.get("resolvable", True)))
        if not observed:
            yield RuleResult(rule_id=f"membership.max_tpr_at_fpr[{limit.fpr:g}]", severity=p.severity,
                             status="error", message=f"no attack reports TPR at FPR {limit.fpr:g}",
                             evidence_path="membership.attacks", threshold=limit.max_tpr)
            continue
        tpr, name, resolvable = max(observed)
        if not resolvable:
            # Too few non-members to measure this FPR (e.g. 0.1% with 500): insufficient data, never a pass.
            yield RuleResult(rule_id=f"membership.max_tpr_at_fpr[{limit.fpr:g}]", severity="warn", status="fail",
                             message=f"TPR at FPR {limit.fpr:g} cannot be measured with "
                                     f"{m.get('n_nonmembers')} non-members (insufficient data); observed TPR "
                                     f"{_fmt(tpr)} at zero false positives", evidence_path="membership.attacks",
                             observed=tpr, threshold=limit.max_tpr)
            continue
        yield _result(f"membership.max_tpr_at_fpr[{limit.fpr:g}]", p.severity, tpr <= limit.max_tpr,
                      f"TPR {_fmt(tpr)} at FPR {limit.fpr:g} ('{name}'); maximum {limit.max_tpr}",
                      "membership.attacks", tpr, limit.max_tpr)
    canaries = m.get("canaries")
    training = doc.get("training") or {}
    if canaries and training.get("dp_enabled"):
        eps = (training.get("epsilon") or {}).get(policy.privacy.accountant)
        lb = canaries["epsilon_lower_bound"]
        if eps is not None:
            yield _result("membership.empirical_epsilon", "block", lb <= eps,
                          f"empirical ε lower bound {_fmt(lb)} vs accountant ε {_fmt(eps)}"
                          + ("" if lb <= eps else " — the DP guarantee is violated"),
                          "membership.canaries.epsilon_lower_bound", lb, eps)


@builtin("membership")
def _memorization_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    """``memorization.*``: what a causal LM reproduces verbatim. The gated figures and why are in
    :class:`govern.policy.schema.MemorizationPolicy`. Classifiers generate no text: skipped, never passed.
    A causal LM whose audit did not measure a limited figure fails closed (an error)."""
    p, m = policy.memorization, doc["membership"]
    causal = m.get("task") == "causal-lm"
    if p.max_extraction_rate is not None:
        rule, limit = "memorization.max_extraction_rate", p.max_extraction_rate
        extraction = m.get("extraction")
        if not causal:
            yield RuleResult(rule_id=rule, severity=p.severity, status="skipped", threshold=limit,
                             message="verbatim extraction applies to causal LMs only",
                             evidence_path="membership.extraction")
        elif extraction is None:
            yield RuleResult(rule_id=rule, severity=p.severity, status="error", threshold=limit,
                             message="verbatim extraction was not measured (audits.membership.extraction.enabled "
                                     "is false), so the limit cannot be shown to hold",
                             evidence_path="membership.extraction")
        elif extraction["members"]["records"] == 0:
            yield RuleResult(rule_id=rule, severity=p.severity, status="error", threshold=limit,
                             message=f"no sampled record is longer than the {extraction['prefix_tokens']}-token "
                                     "prefix: nothing was prompted (lower audits.membership.extraction.prefix_tokens)",
                             evidence_path="membership.extraction.members.records")
        else:
            excess = float(extraction["excess_exact_match_rate"])
            members, nonmembers = extraction["members"], extraction["nonmembers"]
            yield _result(rule, p.severity, excess <= limit,
                          f"greedy decoding reproduced {members['exact_matches']}/{members['records']} training "
                          f"records and {nonmembers['exact_matches']}/{nonmembers['records']} held-out ones "
                          f"verbatim: excess {_fmt(excess)}; maximum {limit:g}",
                          "membership.extraction.excess_exact_match_rate", excess, limit)
    if p.max_pii_regurgitation_rate is not None:
        rule, limit = "memorization.max_pii_regurgitation_rate", p.max_pii_regurgitation_rate
        regurgitation = m.get("pii_regurgitation")
        canaries = policy.membership.canaries
        # A canary run is one whose evidence has the canary audit: a standalone audit never inserts canaries.
        if not causal or not canaries.enabled or canaries.pii_pool_size == 0 or m.get("canaries") is None:
            why = ("PII regurgitation applies to causal LMs only" if not causal else
                   "PII regurgitation is measured in canary audit runs only (membership.canaries.enabled, "
                   "pii_pool_size > 0, inside `govern run`)")
            yield RuleResult(rule_id=rule, severity=p.severity, status="skipped", threshold=limit, message=why,
                             evidence_path="membership.pii_regurgitation")
        elif regurgitation is None or not regurgitation.get("inserted"):
            yield RuleResult(rule_id=rule, severity=p.severity, status="error", threshold=limit,
                             message="no inserted PII canary was measured in this canary run, so the limit cannot "
                                     "be shown to hold", evidence_path="membership.pii_regurgitation")
        else:
            rate = float(regurgitation["inserted_rate"])
            yield _result(rule, p.severity, rate <= limit,
                          f"the model completed {regurgitation['inserted_reproduced']}/{regurgitation['inserted']} "
                          f"inserted PII canaries from their context ({regurgitation['held_out_reproduced']}/"
                          f"{regurgitation['held_out']} never-inserted ones); rate {_fmt(rate)}; maximum {limit:g}",
                          "membership.pii_regurgitation.inserted_rate", rate, limit)


# ----------------------------------------------------------------------------------------- fairness
def _gated_value(value: float | None, low: float | None, high: float | None, gate_on: str, worse_is_higher: bool
                 ) -> float | None:
    if gate_on == "ci":
        bound = high if worse_is_higher else low
        if bound is not None:
            return bound
    return value


@builtin("fairness")
def _fairness_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    p, f = policy.fairness, doc["fairness"]
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for d in f["disparities"]:
        by_metric.setdefault(d["metric"], []).append(d)
    # cast: both TypedDicts hold only float limits, but a TypedDict's items() is typed as object values
    limits: list[tuple[str, float, bool]] = [
        (m, v, True) for m, v in cast("dict[str, float]", p.max_difference).items()]
    limits += [(m, v, False) for m, v in cast("dict[str, float]", p.min_ratio).items()]
    for metric, threshold, higher_is_worse in limits:
        kind = "max_difference" if higher_is_worse else "min_ratio"
        rows = [r for r in by_metric.get(metric, []) if r["value"] is not None]
        if not rows:
            yield RuleResult(rule_id=f"fairness.{kind}.{metric}", severity=p.severity, status="skipped",
                             message=f"{metric} not computed (no eligible groups)",
                             evidence_path="fairness.disparities", threshold=threshold)
            continue
        worst_row, worst = None, None
        for r in rows:
            g = _gated_value(r["value"], r.get("ci_low"), r.get("ci_high"), p.gate_on, higher_is_worse)
            if g is None:
                continue
            if worst is None or (g > worst if higher_is_worse else g < worst):
                worst, worst_row = g, r
        assert worst_row is not None and worst is not None
        ok = worst <= threshold if higher_is_worse else worst >= threshold
        basis = "upper CI bound" if p.gate_on == "ci" and higher_is_worse else (
            "lower CI bound" if p.gate_on == "ci" else "point estimate")
        yield _result(f"fairness.{kind}.{metric}", p.severity, ok,
                      f"{metric} for '{worst_row['attribute']}' = {_fmt(worst)} ({basis}); "
                      f"{'maximum' if higher_is_worse else 'minimum'} {threshold}",
                      "fairness.disparities", worst, threshold)
    if p.min_worst_group_accuracy is not None:
        accs = [(g["metrics"]["accuracy"]["value"], g["attribute"], g["group"]) for g in f["groups"]
                if not g.get("insufficient_data") and g["metrics"].get("accuracy", {}).get("value") is not None]
        if accs:
            acc, attr, group = min(accs)
            yield _result("fairness.min_worst_group_accuracy", p.severity, acc >= p.min_worst_group_accuracy,
                          f"worst group accuracy {_fmt(acc)} ({attr}={group}); minimum {p.min_worst_group_accuracy}",
                          "fairness.groups", acc, p.min_worst_group_accuracy)
    insufficient = f.get("insufficient_groups") or []
    yield _result("fairness.insufficient_data", p.insufficient_data, not insufficient,
                  (f"{len(insufficient)} group(s) below min_group_size {p.min_group_size}: insufficient data, "
                   f"not gated: {', '.join(insufficient[:10])}") if insufficient else "every group has enough data",
                  "fairness.insufficient_groups", insufficient, p.min_group_size)


# --------------------------------------------------------------------------------------- evaluation
#: (evidence key, policy field, higher is better) of every evaluation limit.
_EVALUATION_LIMITS = (("accuracy", "min_accuracy", True), ("macro_f1", "min_macro_f1", True),
                      ("ece", "max_ece", False), ("perplexity", "max_perplexity", False))


@builtin("evaluation")
def _evaluation_checks(policy: Policy, doc: dict[str, Any]) -> Iterable[RuleResult]:
    p, e = policy.evaluation, doc["evaluation"]
    for key, attr, higher_better in _EVALUATION_LIMITS:
        threshold = getattr(p, attr)
        if threshold is None:
            continue
        value = e.get(key)
        ok = value is not None and (value >= threshold if higher_better else value <= threshold)
        yield _result(f"evaluation.{attr}", p.severity, ok,
                      f"{key} = {_fmt(value)}; {'minimum' if higher_better else 'maximum'} {threshold}",
                      f"evaluation.{key}", value, threshold)


# ------------------------------------------------------------------------------------------ signing
def _signing_checks(policy: Policy, doc: dict[str, Any], final: bool) -> Iterable[RuleResult]:
    p, s = policy.signing, doc.get("signing")
    if p.required and (s is not None or final):
        signed = bool(s and s.get("signed"))
        yield _result("signing.required", p.severity, signed,
                      "model signed" if signed else "the policy requires a signed model and none was signed",
                      "signing.signed", signed, True)
        if signed:
            method = s.get("method") if s else None
            yield _result("signing.method", p.severity, method in p.methods,
                          f"signed with '{method}'; allowed: {', '.join(p.methods)}", "signing.method", method,
                          p.methods)
    m = doc.get("membership") or {}
    canaried = bool(m.get("canaries")) and (m["canaries"].get("canaries_in_model", True) is not False)
    if s and s.get("signed") and canaried and not policy.membership.canaries.ship_canaried_model:
        yield _result("signing.no_canaries_in_release", "block", False,
                      "this model was trained with audit canaries; the policy forbids signing it for release "
                      "(set membership.canaries.ship_canaried_model or run the audit separately)",
                      "membership.canaries", True, False)


# ------------------------------------------------------------------------------------------ rule ids
#: Built-in rules that produce one result per limit or data set, as ``family[parameter]``; a waiver of
#: the family covers every member (see ``_apply_waivers``).
RULE_FAMILIES = ("membership.max_tpr_at_fpr", "privacy.max_total_epsilon_per_dataset", "pii.quality.min_recall")


def builtin_rule_ids() -> frozenset[str]:
    """Every rule id the built-in checks can produce under some policy (families without ``[...]``).

    Kept next to the checks that emit them; tests/spine/test_cli_conventions.py evaluates a policy
    with every limit set and checks that each id it produces is listed here."""
    from govern.policy.schema import MaxDifference, MinRatio

    ids = {"data.min_train_rows", "data.min_eval_rows", "data.max_exact_leakage", "data.max_near_duplicate_fraction",
           "pii.blocked_entities", "privacy.require_dp", "privacy.max_epsilon", "privacy.max_delta",
           "privacy.delta_below_inverse_n", "training.integrity", "training.per_sample_gradients",
           "training.weights_changed", "membership.max_auc", "membership.empirical_epsilon",
           "memorization.max_extraction_rate", "memorization.max_pii_regurgitation_rate",
           "fairness.min_worst_group_accuracy", "fairness.insufficient_data", "signing.required", "signing.method",
           "signing.no_canaries_in_release", *RULE_FAMILIES}
    ids |= {f"fairness.max_difference.{m}" for m in MaxDifference.__annotations__}
    ids |= {f"fairness.min_ratio.{m}" for m in MinRatio.__annotations__}
    ids |= {f"evaluation.{attr}" for _, attr, _ in _EVALUATION_LIMITS}
    return frozenset(ids)


def is_known_rule_id(rule_id: str, custom_ids: Iterable[str] = ()) -> bool:
    """True when ``rule_id`` is a built-in rule, a member ``family[...]`` of one, or one of ``custom_ids``."""
    custom = set(custom_ids)
    if rule_id in custom or rule_id in builtin_rule_ids():
        return True
    family, bracket, rest = rule_id.partition("[")
    return bool(bracket) and rest.endswith("]") and len(rest) > 1 and family in RULE_FAMILIES


# -------------------------------------------------------------------------------------------- engine
def _custom_rules(policy: Policy, doc: dict[str, Any], final: bool) -> Iterable[RuleResult]:
    cel_evidence = cel_document(doc) if policy.rules else None
    for index, rule in enumerate(policy.rules):
        missing_req = [k for k in rule.requires if doc.get(k) is None]
        if missing_req:
            yield RuleResult(rule_id=rule.id, severity=rule.severity, status="error" if final else "skipped",
                             message=(f"needs evidence from {', '.join(missing_req)}, which "
                                      + ("was never produced" if final else "is not available yet")),
                             evidence_path=None)
            continue
        max_cost = rule.max_cost or policy.rule_limits.max_cost
        timeout_s = rule.timeout_s or policy.rule_limits.timeout_s
        outcome = evaluate_expression(rule.expression, max_cost=max_cost, timeout_s=timeout_s,
                                      cel_evidence=cel_evidence)
        if outcome.exceeded is not None:
            # Fail closed, at every gate: a rule that could not finish was not checked.
            yield RuleResult(rule_id=rule.id, severity=rule.severity, status="error",
                             message=(f"exceeded its evaluation budget and was stopped: {outcome.exceeded}. "
                                      f"If the rule is meant to be this expensive, raise rules[{index}].max_cost / "
                                      f"timeout_s or rule_limits in the policy; otherwise simplify it (nested "
                                      f"all/exists/map multiply: three levels over 100 elements are 10^6 steps)"),
                             threshold=rule.expression, observed={"cost": outcome.cost})
        elif outcome.value is not None:
            yield RuleResult(rule_id=rule.id, severity=rule.severity, status="pass" if outcome.value else "fail",
                             message=rule.description or rule.message if outcome.value else rule.message,
                             evidence_path=None, threshold=rule.expression)
        elif outcome.missing is not None and not final:
            yield RuleResult(rule_id=rule.id, severity=rule.severity, status="skipped",
                             message=f"not evaluable yet ({outcome.missing})", threshold=rule.expression)
        else:
            yield RuleResult(rule_id=rule.id, severity=rule.severity, status="error",
                             message=f"could not evaluate: {outcome.missing or outcome.error}",
                             threshold=rule.expression)


def _apply_waivers(results: list[RuleResult], waivers: Iterable[WaiverRef], today: date) -> list[str]:
    notes: list[str] = []
    by_rule: dict[str, list[WaiverRef]] = {}
    for w in waivers:
        by_rule.setdefault(w.rule_id, []).append(w)
    for r in results:
        if r.status not in ("fail", "error") or r.severity != "block":
            continue
        candidates = by_rule.get(r.rule_id, []) + by_rule.get(r.rule_id.split("[")[0], [])
        valid = [w for w in candidates if w.active_on(today)]
        if valid:
            w = max(valid, key=lambda x: x.until)
            r.status = "waived"
            r.waiver_id = w.id
            r.message += f" — WAIVED by {w.by} until {w.until.isoformat()}: {w.reason}"
        elif candidates:
            w = max(candidates, key=lambda x: x.until)
            if w.ended_at is not None and w.ended_at.date() <= w.until:
                r.message += f" (waiver #{w.id} by {w.by} was ended by {w.ended_by} on {w.ended_at.date().isoformat()})"
            else:
                r.message += f" (waiver #{w.id} by {w.by} expired on {w.until.isoformat()})"
    return notes


def evaluate(policy: Policy, document: dict[str, Any], *, waivers: Iterable[WaiverRef] = (),
             final: bool = True, today: date | None = None) -> PolicyDecision:
    """Evaluate every rule against the evidence document.

    ``final=False`` is the gate after a stage: checks whose evidence is not there yet are skipped.
    ``final=True`` is the run's (or ``govern check``'s) decision: custom rules that cannot be evaluated
    are errors, and required signing that never happened fails.
    """
    results: list[RuleResult] = []
    for section, checks in BUILTIN_CHECKS.items():
        if document.get(section) is None:
            continue
        for check in checks:
            results.extend(check(policy, document))
    results.extend(_signing_checks(policy, document, final))
    results.extend(_custom_rules(policy, document, final))
    _apply_waivers(results, waivers, today or datetime.now(UTC).date())
    if any(r.severity == "block" and r.status in ("fail", "error") for r in results):
        decision: Decision = "block"
    elif any(r.status == "waived" or (r.severity == "warn" and r.status in ("fail", "error")) for r in results):
        decision = "warn"
    else:
        decision = "pass"
    return PolicyDecision(decision=decision, results=results)
