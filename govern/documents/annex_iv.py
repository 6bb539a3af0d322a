"""A draft of the Annex IV technical documentation (AI Act Art. 11) for a high-risk system built on the model.

Assembled from the report sections the compliance map (:mod:`govern.report.compliance`) relates to each
Annex IV point: each point lists the sections of this run's report that hold evidence for it. The points
govern has no evidence for — the system around the model, human oversight, standards applied, the
declaration of conformity, post-market monitoring — are marked "to be completed" (or filled from the run
config's ``documentation:`` section where it states them).
"""

from __future__ import annotations

from govern.documents.gpai_form import documentation_of
from govern.documents.model import Document, FieldBuilder
from govern.report.data import ReportData

BASIS = "Regulation (EU) 2024/1689, Annex IV (technical documentation referred to in Art. 11(1))"

#: Annex IV points in order: (point, title). The compliance map names points by the same numbers.
POINTS: list[tuple[str, str]] = [
    ("1", "General description of the AI system"),
    ("2(a)", "Development methods and steps, pre-trained systems and tools used"),
    ("2(b)", "Design specifications and choices"),
    ("2(d)", "Data requirements: training data, provenance, scope, cleaning"),
    ("2(e)", "Human oversight measures"),
    ("2(g)", "Validation and testing procedures, metrics, test logs and reports"),
    ("2(h)", "Cybersecurity measures"),
    ("3", "Monitoring, functioning and control: capabilities, limitations, risks"),
    ("4", "Appropriateness of the performance metrics"),
    ("5", "Risk-management system (Art. 9)"),
    ("6", "Changes made through the lifecycle"),
    ("7", "Harmonised standards or other specifications applied"),
    ("8", "EU declaration of conformity"),
    ("9", "Post-market monitoring plan"),
]


def build_annex_iv(data: ReportData) -> Document:
    doc = documentation_of(data)
    evidence: dict[str, list[str]] = {}
    for row in data.compliance:
        if not row.evidence_present:
            continue
        for item in row.annex_iv:
            point = item.split(" ", 1)[0]
            evidence.setdefault(point, []).append(f"{row.section} ({item.split('—', 1)[-1].strip()})")
    from_config = {"1": doc.intended_use and f"intended purpose: {doc.intended_use}",
                   "2(e)": doc.human_oversight, "9": doc.post_market_monitoring}
    section = FieldBuilder("Annex IV points")
    for point, title in POINTS:
        if point in evidence:
            section.db(f"annex_iv.{point}", f"{point} — {title}",
                       "see the govern report of run " + data.run.id + ": " + "; ".join(evidence[point]))
        else:
            section.config(f"annex_iv.{point}", f"{point} — {title}", from_config.get(point))
    section.note("Points filled from the report name the report sections that hold the evidence; the report "
                 "itself (govern report RUN) is the attachment.")
    return Document(kind="annex-iv", title=f"Annex IV technical documentation (draft) — {data.run.name}",
                    basis=BASIS, run_id=data.run.id, run_name=data.run.name, generated_at=data.generated_at,
                    generator=data.generator, db=data.db, sections=[section.section])
