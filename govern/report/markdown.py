"""Markdown rendering of a run's report, sized for a pull-request comment (GitHub caps comments at
65,536 characters: long finding lists are cut with a note, the HTML report has everything)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from govern.report.data import ReportData, _outcome
from govern.report.html import empirical_epsilon_bounds, fmt_json, fmt_number, sorted_results

MAX_FINDINGS = 60
_ICON = {"pass": "✅", "warn": "⚠️", "block": "⛔"}
_OUTCOME_ICON = {"blocking": "⛔", "error": "❗", "warning": "⚠️", "waived": "🔕", "passed": "✅",
                 "skipped": "⏭️", "info": "ℹ️"}


def cell(value: Any) -> str:
    """A table cell: no pipes or newlines (they would break the table)."""
    text = value if isinstance(value, str) else fmt_json(value)
    return (text.replace("|", "\\|").replace("\n", " ").replace("\r", " ")
            .replace("<", "&lt;").replace(">", "&gt;"))


def _table(title: str, header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A ``###`` section that is one table (cells already escaped with :func:`cell`), then a blank line."""
    return [f"### {title}", _row(header), "|" + "---|" * len(header), *(_row(r) for r in rows), ""]


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _gated(data: ReportData, prefixes: tuple[str, ...]) -> list[Any]:
    """The decision's results for the rules starting with ``prefixes`` (skipped ones left out)."""
    if data.decision is None:
        return []
    return [f for f in data.decision.results if f.rule_id.startswith(prefixes) and f.status != "skipped"]


def _gate_text(result: Any) -> str:
    """A gated rule as key evidence: its outcome and the engine's own message, which names the row,
    the value compared (point estimate or CI bound) and the threshold."""
    return f"{_outcome(result)}: {result.message}"


def render_markdown(data: ReportData) -> str:
    r = data
    lines: list[str] = []
    add = lines.append
    verdict = r.decision.decision if r.decision else "none"
    add(f"## {_ICON.get(verdict, '❔')} govern: `{verdict.upper()}` — {cell(r.run.name)}")
    add("")
    if r.chain is not None and not r.chain.ok:
        add(f"> ⛔ **RECORD BROKEN — do not rely on this report.** The lineage DB no longer matches what govern "
            f"recorded for this run ({len(r.chain.problems)} problem(s)):")
        for problem in r.chain.problems[:10]:
            add(f"> - {cell(problem)}")
        add("")
    add(f"Run `{r.run.id}` · status **{r.run.status}** · generated {r.generated_at:%Y-%m-%d %H:%M UTC} "
        f"from the lineage DB by {r.generator}")
    if r.policy:
        add(f"Policy **{cell(r.policy.name)}** {cell(r.policy.version)} · digest `{r.policy.digest}`")
    add("")

    add("### Decision and why")
    if r.decision is None:
        add(f"_No policy decision was recorded (status: {r.run.status})._")
    else:
        counts = r.decision.counts()
        add(", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no rules evaluated")
        add("")
        add("| | Rule | Severity | Finding | Evidence | Observed | Threshold |")
        add("|---|---|---|---|---|---|---|")
        results = sorted_results(r.decision.results)
        for f in results[:MAX_FINDINGS]:
            o = _outcome(f)
            add(f"| {_OUTCOME_ICON.get(o, '')} {o} | `{cell(f.rule_id)}` | {f.severity} | {cell(f.message)} | "
                f"`{cell(f.evidence_path or '—')}` | {cell(f.observed)} | {cell(f.threshold)} |")
        if len(results) > MAX_FINDINGS:
            add(f"\n_{len(results) - MAX_FINDINGS} more results (passed/skipped) are in the HTML or JSON report._")
    add("")

    if r.waivers:
        lines += _table("Waivers", ["#", "Rule", "By", "Why", "Until", "Active"], (
            [str(w.id), f"`{cell(w.rule_id)}`", cell(w.by), cell(w.reason), str(w.until),
             "yes" if w.active else (f"ended {w.ended_at:%Y-%m-%d} by {cell(w.ended_by)}: {cell(w.end_reason)}"
                                     if w.ended_at else "expired")]
            for w in r.waivers))

    add("### Key evidence")
    add("| Concern | Result |")
    add("|---|---|")
    if r.data:
        lk = r.data.leakage
        add(f"| Data | {r.data.train_rows:,} train / {r.data.eval_rows:,} eval records; leakage: "
            f"{lk.exact_duplicates} exact, {lk.near_duplicates} near duplicates |")
    else:
        add(f"| Data | {r.absent_reason('data')} |")
    ps = r.pii_summary
    if ps.scanned:
        by = ", ".join(f"{k} {v}" for k, v in ps.by_entity.items()) or "none"
        acts = ", ".join(f"{k} {v}" for k, v in ps.by_action.items()) or "—"
        add(f"| PII (counts only) | {ps.findings_total:,} findings ({by}); actions: {acts} |")
        add(f"| PII detection quality | {ps.detection_quality} |")
    else:
        add(f"| PII | {r.absent_reason('pii')} |")
    if r.privacy:
        p = r.privacy
        if p.dp_enabled:
            add(f"| Privacy | ε = **{fmt_number(p.epsilon)}**, δ = {fmt_number(p.delta)} ({p.accountant}); "
                f"σ = {fmt_number(p.noise_multiplier)}, q = {fmt_number(p.sample_rate, 5)}, {p.steps} steps |")
        else:
            add("| Privacy | **trained without differential privacy** |")
    else:
        add(f"| Privacy | {r.absent_reason('training')} |")
    compute = r.training.compute if r.training else None
    if compute is not None:  # the EU AI Act significant-modification check (govern.documents.compute)
        ratio = ("base compute unknown" if compute.base_compute_ratio is None
                 else f"{fmt_number(compute.base_compute_ratio, 6)} of the base model's (indicative threshold ⅓)")
        add(f"| Training compute | ≈ {compute.flops:.3g} FLOP ({cell(compute.formula)}); {ratio} |")
    if r.membership:
        m = r.membership
        gated_tpr = _gated(r, ("membership.max_tpr_at_fpr[",))
        if gated_tpr:  # the operating points the policy gated, as the gate saw them
            tpr = "; ".join(_gate_text(f) for f in gated_tpr)
        else:  # no gate on TPR: the strongest attack at every operating point it reports
            points: dict[float, tuple[float, str]] = {}
            for attack in m.attacks:
                for t in attack.tpr_at_fpr:
                    points[t.fpr] = max(points.get(t.fpr, (-1.0, "")), (t.tpr, attack.name))
            tpr = "; ".join(f"TPR {fmt_number(v)} @ FPR {fmt_number(fpr, 4)} ({name})"
                            for fpr, (v, name) in sorted(points.items()))
        bounds = [b["epsilon_lower_bound"] for b in empirical_epsilon_bounds(r) if b["epsilon_lower_bound"]]
        extra = f"; empirical ε ≥ {fmt_number(max(bounds))}" if bounds else ""
        if m.canaries:
            extra += f"; canary ε ≥ {fmt_number(m.canaries.epsilon_lower_bound)}"
        add(f"| Membership inference | max AUC {fmt_number(m.max_auc)}; {cell(tpr) or 'no TPR@FPR'}{extra} |")
        for sentence in r.memorization_explanation:
            add(f"| Verbatim memorisation | {cell(sentence)} |")
    else:
        add(f"| Membership inference | {r.absent_reason('membership')} |")
    if r.fairness:
        fa = r.fairness
        gated_fair = _gated(r, ("fairness.max_difference.", "fairness.min_ratio.", "fairness.min_worst_group_accuracy"))
        if gated_fair:  # each gated metric's worst row, at the value (point or CI bound) the gate compared
            disp = "; ".join(_gate_text(f) for f in gated_fair)
        else:  # nothing gated: the worst row per metric (largest difference, smallest ratio/worst-group value)
            worst: dict[str, Any] = {}
            for d in fa.disparities:
                if d.value is None:
                    continue
                lower_is_worse = d.metric.endswith("_ratio") or d.metric == "worst_group_accuracy"
                held = worst.get(d.metric)
                if held is None or (d.value < held.value if lower_is_worse else d.value > held.value):
                    worst[d.metric] = d
            disp = "; ".join(f"worst {d.metric} {fmt_number(d.value)} ({d.attribute}, point estimate)"
                             for d in worst.values()) or "—"
        insufficient = f"; insufficient data: {', '.join(fa.insufficient_groups)}" if fa.insufficient_groups else ""
        add(f"| Fairness | {cell(disp)}{cell(insufficient)} |")
    else:
        add(f"| Fairness | {r.absent_reason('fairness')} |")
    if r.evaluation:
        e = r.evaluation
        parts = [f"{k} {fmt_number(v)}" for k, v in (("accuracy", e.accuracy), ("macro F1", e.macro_f1),
                                                     ("ECE", e.ece), ("perplexity", e.perplexity)) if v is not None]
        add(f"| Task metrics | {', '.join(parts) or '—'} (n = {e.n:,}) |")
    else:
        add(f"| Task metrics | {r.absent_reason('evaluation')} |")
    judged = r.judged_model_digests()
    trained = judged.get("training")
    if trained:
        problems = r.model_digest_problems()
        if problems:
            add(f"| Model judged | **not all evidence is about the model training wrote**: {cell('; '.join(problems))} |")
        else:
            others = ", ".join(s for s in judged if s != "training") or "no audit yet"
            add(f"| Model judged | {others}: `{trained[:16]}…` (tree sha256), the model training "
                "wrote |")
    if r.signatures:
        add(f"| Signatures | {len(r.signatures)} ({', '.join(sorted({s.method for s in r.signatures}))}) |")
    else:
        add(f"| Signatures | {r.absent_reason('signing')} The model is unsigned. |")
    add("")
    if r.signatures:
        add("### Verify")
        add("```sh")
        for s in r.signatures:
            add(s.verify_command)
        add("```")
        add("")
    if r.actions:
        lines += _table("Who did what", ["action", "who", "when", "detail"],
                        ([a.action, cell(a.actor), f"{a.at:%Y-%m-%d %H:%M UTC}", cell(a.detail)] for a in r.actions))
    rp = r.reproducibility
    add("<details><summary>Reproducibility</summary>")
    add("")
    add(f"- code revision: `{rp.code_revision or '—'}`")
    add(f"- config digest: `{rp.config_digest or '—'}`")
    add(f"- seeds: {', '.join(f'{k}={v}' for k, v in rp.seeds.items()) or '—'}")
    if rp.base_model:
        add(f"- base model: {cell(str(rp.base_model.get('name', '—')))} `{rp.base_model.get('digest', '')}`")
    if rp.versions:
        add(f"- versions: {', '.join(f'{k} {v}' for k, v in sorted(rp.versions.items()))}")
    add("")
    add("</details>")
    add("")
    add("_Regulatory mapping (EU AI Act Annex IV, NIST AI RMF) is in the HTML/PDF report; it is an aid, "
        "not legal advice._")
    return "\n".join(lines) + "\n"
