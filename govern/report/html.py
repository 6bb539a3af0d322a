"""HTML rendering of a run's report: one self-contained file (inline CSS, inline SVG charts).

No scripts, no fonts, no images to fetch: a Content-Security-Policy meta tag forbids every external
request (``default-src 'none'``), so a browser that opens the report years later, offline, shows
exactly what the auditor saw. The same HTML, with its print stylesheet, is what WeasyPrint turns into
the PDF.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from govern.decisions import RuleResult
from govern.report.compliance import DISCLAIMER
from govern.report.data import ReportData, _outcome
from govern.report.lineage_svg import lineage_svg
from govern.report.plots import Bar, Series, bar_chart, line_chart

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src 'none'"

_OUTCOME_ORDER = {"blocking": 0, "error": 1, "warning": 2, "waived": 3, "info": 4, "passed": 5, "skipped": 6}


@lru_cache(maxsize=1)
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("govern.report", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_number
    env.filters["pct"] = fmt_percent
    env.filters["json"] = fmt_json
    env.filters["short"] = short_digest
    env.filters["dt"] = lambda d: d.strftime("%Y-%m-%d %H:%M:%S UTC") if d is not None else "—"
    env.filters["bytes"] = fmt_bytes
    env.filters["breakable"] = breakable
    env.globals["outcome"] = _outcome
    return env


def fmt_number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
            return f"{value:.{max(digits - 1, 1)}e}"
        return f"{value:.{digits}f}".rstrip("0").rstrip(".") if "." in f"{value:.{digits}f}" else f"{value}"
    return str(value)


def fmt_percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def fmt_json(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str | int | float | bool):
        return fmt_number(value) if not isinstance(value, str) else value
    return json.dumps(value, sort_keys=True, default=str)


_BREAK_AFTER = frozenset("._/[,:=")


def breakable(value: Any) -> Markup:
    """Escaped text that may wrap only after separators (``.`` ``_`` ``/`` ``[`` ``,`` ``:`` ``=``).

    Identifiers (``fairness.max_difference.equalized_odds_difference``), evidence paths and digests are
    too long for a table cell; breaking them anywhere splits tokens (``1.00e-0`` / ``5``), so the
    stylesheet forbids that and these ``<wbr>`` are the only places a line may end."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Markup.escape(fmt_number(value))  # a number is one token: never broken
    text = fmt_json(value) if not isinstance(value, str) else value
    out: list[str] = []
    for ch in text:
        out.append(str(Markup.escape(ch)))
        if ch in _BREAK_AFTER:
            out.append("<wbr>")
    return Markup("".join(out))


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{n} B"


def short_digest(value: str | None, n: int = 19) -> str:
    if not value:
        return "—"
    return value if len(value) <= n else value[:n] + "…"


def sorted_results(results: list[RuleResult]) -> list[RuleResult]:
    """Blocking findings first, then errors, warnings, waived, passed, skipped."""
    return sorted(results, key=lambda r: (_OUTCOME_ORDER.get(_outcome(r), 9), r.rule_id))


def empirical_epsilon_bounds(data: ReportData) -> list[dict[str, Any]]:
    """ε lower bounds implied by the attacks: (ε, δ)-DP forces TPR ≤ e^ε·FPR + δ, so an attack that
    reaches TPR at FPR shows ε ≥ ln((TPR − δ)/FPR). Uses the TPR's lower CI bound when there is one
    (a conservative, i.e. smaller, lower bound)."""
    if data.membership is None:
        return []
    delta = data.privacy.delta if data.privacy and data.privacy.delta else 0.0
    rows = []
    for attack in data.membership.attacks:
        for t in attack.tpr_at_fpr:
            tpr = t.ci_low if t.ci_low is not None else t.tpr
            bound = math.log((tpr - delta) / t.fpr) if t.fpr > 0 and tpr - delta > 0 else None
            rows.append({"attack": attack.name, "fpr": t.fpr, "tpr_used": tpr,
                         "epsilon_lower_bound": max(bound, 0.0) if bound is not None else None})
    return rows


def charts(data: ReportData) -> dict[str, Markup]:
    """Every chart the report shows, as inline SVG (empty string when there is nothing to plot)."""
    out: dict[str, Markup] = {}
    m = data.membership
    if m is not None and any(a.roc for a in m.attacks):
        series = [Series(f"{a.name} (AUC {a.auc:.3f})", [(float(x), float(y)) for x, y in a.roc])
                  for a in m.attacks if a.roc]
        out["roc"] = Markup(line_chart(series, title="Membership-inference ROC", x_label="false-positive rate",
                                       y_label="true-positive rate", x_range=(0, 1), y_range=(0, 1),
                                       diagonal=True))
        out["roc_log"] = Markup(line_chart(series, title="ROC at low false-positive rates (log scale)",
                                           x_label="false-positive rate", y_label="true-positive rate",
                                           x_range=(1e-3, 1), y_range=(0, 1), log_x=True))
    f = data.fairness
    if f is not None and f.disparities:
        # One chart per metric: differences (parity at 0) and ratios (parity at 1) do not share an axis.
        limits = _fairness_limit_values(data)
        metrics: list[str] = []
        for d in f.disparities:
            if d.metric not in metrics:
                metrics.append(d.metric)
        for metric in metrics:
            bars = [Bar(d.attribute, d.value, d.ci_low, d.ci_high) for d in f.disparities if d.metric == metric]
            out[f"disparity:{metric}"] = Markup(bar_chart(
                bars, title=metric.replace("_", " "), x_label=metric.replace("_", " "),
                reference=1.0 if "ratio" in metric else 0.0, limit=limits.get(metric)))
    if f is not None and f.groups:
        headline = _headline_group_metric(data)
        if headline:
            metric = headline
            bars = [Bar(f"{g.attribute}={g.group}" + (" (insufficient)" if g.insufficient_data else ""),
                        g.metrics[metric].value if metric in g.metrics else None,
                        g.metrics[metric].ci_low if metric in g.metrics else None,
                        g.metrics[metric].ci_high if metric in g.metrics else None,
                        color="#9aa3ab" if g.insufficient_data else None)
                    for g in f.groups]
            out["groups"] = Markup(bar_chart(bars, title=f"{metric.replace('_', ' ')} per group",
                                             x_label=metric.replace("_", " ")))
    e = data.evaluation
    if e is not None and e.reliability:
        pts = []
        for b in e.reliability:
            conf = _first(b, "confidence", "mean_confidence", "avg_confidence", "conf")
            acc = _first(b, "accuracy", "acc", "frequency", "fraction_positive")
            if conf is not None and acc is not None:
                pts.append((conf, acc))
        if pts:
            out["calibration"] = Markup(line_chart(
                [Series("model", sorted(pts), markers=True)], title="Calibration (reliability diagram)",
                x_label="mean predicted confidence", y_label="observed accuracy", x_range=(0, 1), y_range=(0, 1),
                diagonal=True))
    t = data.training
    if t is not None and t.curve:
        out["loss"] = Markup(line_chart([Series("training loss", [(p.step, p.loss) for p in t.curve])],
                                        title="Training loss per step", x_label="step", y_label="loss"))
        eps_points = [(p.step, p.epsilon) for p in t.curve if p.epsilon is not None]
        if eps_points:
            out["epsilon"] = Markup(line_chart(
                [Series(f"ε ({t.accountant or 'accountant'})", eps_points, color="#d1495b")],
                title="Privacy spent (ε) per step", x_label="step", y_label="ε",
                y_range=(0, max(e for _, e in eps_points))))
    svg = lineage_svg(data.lineage)
    if svg:
        out["lineage"] = Markup(svg)
    return out


def _first(d: dict[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, int | float) and math.isfinite(v):
            return float(v)
    return None


def _headline_group_metric(data: ReportData) -> str | None:
    if data.fairness is None:
        return None
    names: list[str] = []
    for g in data.fairness.groups:
        for k in g.metrics:
            if k not in names:
                names.append(k)
    for preferred in ("accuracy", "selection_rate", "true_positive_rate", "perplexity"):
        if preferred in names:
            return preferred
    return names[0] if names else None


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML document."""
    template = _environment().get_template("report.html.j2")
    return template.render(
        r=data,
        csp=CSP,
        charts=charts(data),
        results=sorted_results(data.decision.results) if data.decision else [],
        counts=data.decision.counts() if data.decision else {},
        eps_bounds=empirical_epsilon_bounds(data),
        group_metrics=_group_metric_names(data),
        disclaimer=DISCLAIMER,
        policy_json=json.dumps(data.policy.document, indent=2, sort_keys=True, default=str) if data.policy else "",
        config_json=json.dumps(data.reproducibility.config, indent=2, sort_keys=True, default=str)
        if data.reproducibility.config is not None else "",
        other_json={k: json.dumps(v, indent=2, sort_keys=True, default=str) for k, v in data.other_evidence.items()},
        fairness_limits=_fairness_limits(data),
        glossary=GLOSSARY,
    )


#: The report's metrics in plain language, for the compliance reader (the last section of every report).
GLOSSARY: tuple[tuple[str, str], ...] = (
    ("ε (epsilon) and δ (delta)", "The differential-privacy guarantee: whether or not any one person's record was "
     "in the training data, the model's behaviour changes by at most a factor e^ε, except with probability δ. "
     "Smaller is more private; ε ≤ 8 with δ far below 1/n is a common ceiling. govern records the ε its "
     "accountant computed, never the value asked for."),
    ("Accountant (RDP, PRV)", "The method that adds up the privacy cost of every training step. Different "
     "accountants give slightly different (all valid) upper bounds; the policy names the one it gates on."),
    ("Membership inference, AUC", "An attack that tries to tell records used in training from records that were "
     "not. AUC 0.5 means it does no better than a coin; 1.0 means it always succeeds."),
    ("TPR at low FPR", "How many training records the attack finds (true-positive rate) while wrongly accusing only "
     "a few non-members (false-positive rate, e.g. 1 %). The measure that matters for individual people."),
    ("Verbatim extraction", "Prompted with the beginning of a training record, does the model write out the rest "
     "word for word? Compared with records it never saw, whose continuation it can only guess; the difference is "
     "what it memorised."),
    ("PII regurgitation", "Made-up e-mail addresses, phone and card numbers are planted in some training records; "
     "prompted with the words before each, does the model write the value out? Values it was never shown show the "
     "chance level."),
    ("Empirical ε lower bound", "What the audit could prove about privacy from the attack's success: if it is above "
     "the accountant's ε, something is wrong with the training or the accounting."),
    ("Demographic parity (difference, ratio)", "How different the rate of positive predictions is between groups. "
     "The ratio's 0.8 threshold is the four-fifths rule used in employment law."),
    ("Equalized odds difference", "The largest gap between groups in true-positive or false-positive rate: whether "
     "the model's errors fall equally on every group."),
    ("95 % confidence interval", "The range the measured value would fall in 95 times out of 100 if the evaluation "
     "were repeated on new data; a policy may gate on its pessimistic end."),
    ("Expected calibration error", "How far the model's stated confidence is from how often it is right."),
    ("Waiver", "A recorded, time-limited decision by a named person to accept one failed rule, with the reason."),
    ("Fingerprint, digest", "sha256 values that identify a data set's content or a file's bytes: any change, of a "
     "single byte, gives a different value."),
    ("Audit event, hash chain, witness", "Every change to the record is an event whose hash covers the one before it, "
     "so an edit breaks the chain; a witness is a copy of the newest hash kept elsewhere, so even a rewrite of "
     "the whole chain is caught."),
)


def _group_metric_names(data: ReportData) -> list[str]:
    if data.fairness is None:
        return []
    names: list[str] = []
    for g in data.fairness.groups:
        for k in g.metrics:
            if k not in names:
                names.append(k)
    return names


def _fairness_limit_values(data: ReportData) -> dict[str, float]:
    if data.policy is None:
        return {}
    section = data.policy.document.get("fairness") or {}
    values = dict(section.get("max_difference") or {})
    values.update(section.get("min_ratio") or {})
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float)}


def _fairness_limits(data: ReportData) -> dict[str, str]:
    """metric → the policy's limit, as text ("≤ 0.1", "≥ 0.8"), from the policy document in the DB."""
    if data.policy is None:
        return {}
    section = data.policy.document.get("fairness") or {}
    limits = {k: f"≤ {v}" for k, v in (section.get("max_difference") or {}).items()}
    limits.update({k: f"≥ {v}" for k, v in (section.get("min_ratio") or {}).items()})
    return limits
