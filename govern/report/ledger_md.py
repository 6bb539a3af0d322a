"""Markdown rendering of the cross-run ledger (for a PR comment or a periodic governance issue)."""

from __future__ import annotations

from govern.report.html import fmt_number
from govern.report.ledger import LedgerReport


def render_ledger_markdown(report: LedgerReport) -> str:
    lines = [f"## Governance ledger since {report.since}", "",
             f"Generated {report.generated_at:%Y-%m-%d %H:%M UTC} from `{report.db}`.", "",
             "### Privacy budget per data set", "", f"_{report.method}_", ""]
    if report.datasets:
        lines += ["| Data set | Role | Fingerprint | Trained on by | Composed ε | at δ | Σε (basic) | Cap |",
                  "|---|---|---|---|---|---|---|---|"]
        for b in report.datasets:
            cap = fmt_number(b.cap) + (" ⛔ exceeded" if b.over_cap else "")
            epsilon = f"**{fmt_number(b.total_epsilon)}**" if b.charged_runs else "0 (not trained on)"
            lines.append(f"| {b.dataset_name or '—'} | {', '.join(b.roles)} | `{b.dataset_fingerprint[:23]}…` | "
                         f"{b.charged_runs} of {len(b.runs)} runs | {epsilon} | {fmt_number(b.delta)} | "
                         f"{fmt_number(b.sum_of_epsilons)} | {cap} |")
    else:
        lines.append("_No DP training run touched a data set in this period._")
    lines += ["", f"### Runs ({len(report.runs)})", "", "| Run | Name | Status | Decision | Started | Blocking rules |",
              "|---|---|---|---|---|---|"]
    for r in report.runs:
        lines.append(f"| `{r.id}` | {r.name} | {r.status} | {r.decision or '—'} | {r.started_at:%Y-%m-%d %H:%M} | "
                     f"{', '.join(f'`{x}`' for x in r.blocking_rules) or '—'} |")
    lines += ["", "### Waivers", ""]
    if report.waivers:
        lines += ["| # | Rule | Target | By | Why | Until | Active |", "|---|---|---|---|---|---|---|"]
        for w in report.waivers:
            lines.append(f"| {w.id} | `{w.rule_id}` | `{w.target[:23]}` | {w.by} | {w.reason.replace('|', '/')} | "
                         f"{w.until} | {'yes' if w.active else 'ended' if w.ended_at else 'expired'} |")
    else:
        lines.append("_No waivers created or active in this period._")
    return "\n".join(lines) + "\n"
