"""How good was the scan on *this* data: precision, recall and F2 per entity on a labeled sample.

A policy names a labeled sample of the user's own data (``pii.quality.sample``); the PII stage runs the
same analyzer on it and records the result as evidence (:class:`~govern.evidence.PIIQuality`), and
``pii.quality.min_recall`` turns it into a gate. ``govern scan --quality FILE`` prints the same table.

Sample formats (told apart by content, not by name):

* JSONL, one record a line: ``{"text": "...", "spans": [{"entity_type": "PERSON", "start": 0, "end": 8}]}``
  (``start_position``/``end_position`` are accepted too);
* presidio-research JSON: a list of ``{"full_text": ..., "spans": [{"entity_type", "start_position",
  "end_position", ...}]}`` — the format of its generated data sets.

Matching: a prediction is a true positive when it overlaps a not-yet-matched gold span of the same
entity type (the rule presidio-research's span evaluator and govern's benchmarks use); every gold span
of a scanned type that no prediction overlaps is a false negative. Gold spans of types the analyzer does
not scan are ignored (they are listed as not scanned). Intervals are exact Clopper-Pearson (95 %) on
recall (over gold spans) and precision (over predictions). F2 weighs recall four times precision: for
PII a miss costs more than an extra redaction.

Nothing from the sample — no text, no value — enters the evidence: counts, rates and the file's
sha256 only.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from govern.data.io import parse_json_line
from govern.errors import DataError
from govern.evidence import PIIEntityQuality, PIIQuality

if TYPE_CHECKING:
    from govern.pii.analyzer import ConfiguredAnalyzer
    from govern.pii.scanner import ScanSettings

CONFIDENCE = 0.95
NOT_MEASURED = "detection quality was not measured: the policy names no labeled sample (pii.quality.sample)"


class LabeledSpan(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entity_type: str = Field(min_length=1)
    start: int = Field(ge=0)
    end: int = Field(gt=0)


class LabeledText(BaseModel):
    """One labeled record of a quality sample."""

    model_config = ConfigDict(extra="ignore")

    text: str
    spans: list[LabeledSpan] = Field(default_factory=list)


def _normalise(raw: Any) -> Any:
    """presidio-research keys → ours (``full_text``, ``start_position``, ``end_position``)."""
    if not isinstance(raw, dict):
        return raw
    out = dict(raw)
    if "text" not in out and "full_text" in out:
        out["text"] = out["full_text"]
    spans = out.get("spans")
    if isinstance(spans, list):
        fixed = []
        for span in spans:
            if isinstance(span, dict):
                span = dict(span)
                span.setdefault("start", span.get("start_position"))
                span.setdefault("end", span.get("end_position"))
            fixed.append(span)
        out["spans"] = fixed
    return out


def _validate(path: Path, raw: Any, *, line: int | None = None, record: int | None = None) -> LabeledText:
    try:
        item = LabeledText.model_validate(_normalise(raw))
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        # pydantic's message only (never the input value: the sample is personal data)
        raise DataError(path, f"not a labeled record: {err['msg']}", line=line, record=record, field=field) from None
    for i, span in enumerate(item.spans):
        if span.end <= span.start or span.end > len(item.text):
            raise DataError(path, f"span {span.start}..{span.end} is outside the text ({len(item.text)} characters)",
                            line=line, record=record, field=f"spans.{i}")
    return item


def load_quality_sample(path: Path) -> list[LabeledText]:
    """Read a labeled sample (JSONL or presidio-research JSON). Raises DataError naming the file, the
    line or record and the field; never echoes the text."""
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "labeled sample not found (pii.quality.sample)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read labeled sample ({type(exc).__name__})") from None
    stripped = content.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(content)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"invalid JSON ({exc.msg})", line=exc.lineno) from None
        return [_validate(path, item, record=i) for i, item in enumerate(data)]
    out = [_validate(path, parse_json_line(path, line, number), line=number)
           for number, line in enumerate(content.splitlines(), start=1) if line.strip()]
    if not out:
        raise DataError(path, "labeled sample has no records")
    return out


Counts = dict[str, dict[str, int]]


def score_spans(predicted: Iterable[tuple[str, int, int]], gold: Iterable[tuple[str, int, int]],
                counts: Counts) -> None:
    """Add one text's true/false positives and false negatives to ``counts`` (see the module docstring)."""
    gold = list(gold)
    used = [False] * len(gold)
    for entity, s, e in sorted(predicted, key=lambda p: (p[1], p[2])):
        match = next((i for i, (ge, gs, gend) in enumerate(gold)
                      if not used[i] and ge == entity and s < gend and gs < e), None)
        if match is None:
            counts[entity]["fp"] += 1
        else:
            used[match] = True
            counts[entity]["tp"] += 1
    for (entity, _, _), hit in zip(gold, used, strict=True):
        if not hit:
            counts[entity]["fn"] += 1


def new_counts() -> Counts:
    return defaultdict(lambda: {"tp": 0, "fp": 0, "fn": 0})


def entity_quality(entity: str, c: dict[str, int], confidence: float = CONFIDENCE) -> PIIEntityQuality:
    from govern.audits.attack_metrics import clopper_pearson

    tp, fp, fn = c["tp"], c["fp"], c["fn"]
    gold, predicted = tp + fn, tp + fp
    recall = tp / gold if gold else None
    precision = tp / predicted if predicted else None
    f2 = None
    if recall is not None and precision is not None:
        f2 = 5 * precision * recall / (4 * precision + recall) if (4 * precision + recall) else 0.0
    r_ci = clopper_pearson(tp, gold, confidence) if gold else (None, None)
    p_ci = clopper_pearson(tp, predicted, confidence) if predicted else (None, None)
    return PIIEntityQuality(entity_type=entity, gold=gold, predicted=predicted, true_positives=tp,
                            precision=precision, recall=recall, f2=f2,
                            precision_ci_low=p_ci[0], precision_ci_high=p_ci[1],
                            recall_ci_low=r_ci[0], recall_ci_high=r_ci[1])


Analyze = Callable[[str], list[tuple[str, int, int]]]


def measure_quality(sample_path: Path, analyze: Analyze, scanned: Iterable[str],
                    min_recall: dict[str, float] | None = None) -> PIIQuality:
    """Score ``analyze`` (text → predicted (entity, start, end), at the policy's threshold) on the
    labeled sample at ``sample_path``."""
    sample = load_quality_sample(sample_path)
    scanned_set = set(scanned)
    counts = new_counts()
    unscanned: set[str] = set()
    for item in sample:
        gold = [(s.entity_type, s.start, s.end) for s in item.spans if s.entity_type in scanned_set]
        unscanned |= {s.entity_type for s in item.spans if s.entity_type not in scanned_set}
        predicted = [p for p in analyze(item.text) if p[0] in scanned_set]
        score_spans(predicted, gold, counts)
    entities = [entity_quality(e, counts[e]) for e in sorted(counts)]
    return PIIQuality(
        measured=True, sample_file=sample_path.name,
        sample_sha256=hashlib.sha256(sample_path.read_bytes()).hexdigest(),
        records=len(sample), confidence=CONFIDENCE, entities=entities,
        not_scanned=sorted(unscanned), min_recall=dict(min_recall or {}),
        note=f"{len(sample)} labeled records; a prediction counts when it overlaps a gold span of the same type",
    )


def not_measured(min_recall: dict[str, float] | None = None) -> PIIQuality:
    return PIIQuality(measured=False, min_recall=dict(min_recall or {}), note=NOT_MEASURED)


def quality_table(quality: PIIQuality) -> list[list[str]]:
    """Rows for the CLI and the reports: entity, gold, P [CI], R [CI], F2."""
    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x:.3f}"

    def ci(low: float | None, high: float | None) -> str:
        return "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"

    rows = []
    for q in quality.entities:
        floor = quality.min_recall.get(q.entity_type)
        rows.append([q.entity_type, str(q.gold), str(q.predicted),
                     pct(q.precision) + ci(q.precision_ci_low, q.precision_ci_high),
                     pct(q.recall) + ci(q.recall_ci_low, q.recall_ci_high), pct(q.f2),
                     "—" if floor is None else f"{floor:g}"])
    return rows


QUALITY_HEADER = ["entity", "gold", "predicted", "precision [95% CI]", "recall [95% CI]", "F2", "min recall"]


def sample_path(sample: str, policy_file: str) -> Path:
    """The policy's sample path, relative to the policy file (as a shipped policy's other paths are)."""
    path = Path(sample).expanduser()
    if path.is_absolute() or policy_file.startswith("<"):
        return path
    policy = Path(policy_file)
    return (policy.parent / path) if policy.exists() else path


def analyzer_predictions(analyzer: ConfiguredAnalyzer) -> Analyze:
    """``text → [(entity, start, end)]`` with the scan's own analyzer, entities, threshold and overlap rule."""
    from govern.pii.analyzer import LANGUAGE, resolve_overlaps

    def analyze(text: str) -> list[tuple[str, int, int]]:
        results = analyzer.engine.analyze(text, language=LANGUAGE, entities=analyzer.entities,
                                          score_threshold=analyzer.min_score)
        return [(r.entity_type, r.start, r.end) for r in resolve_overlaps(results)]

    return analyze


def quality_for_settings(analyzer: ConfiguredAnalyzer, settings: ScanSettings) -> PIIQuality:
    """The scan's quality evidence: measured on ``settings.quality_sample`` (``--quality``) or the
    policy's ``pii.quality.sample``; otherwise a "not measured" record."""
    policy = settings.policy.quality
    if settings.quality_sample is not None:
        path = Path(settings.quality_sample)
    elif policy.sample is not None:
        path = sample_path(policy.sample, settings.policy_file)
    else:
        return not_measured(policy.min_recall)
    return measure_quality(path, analyzer_predictions(analyzer), analyzer.entities, policy.min_recall)
