"""Which report sections support which EU AI Act Annex IV items and NIST AI RMF functions.

An aid for whoever assembles technical documentation, NOT legal advice and not a conformity
assessment: the mapping says where the evidence in this report is *relevant*, not that an obligation
is met. Annex IV points refer to Regulation (EU) 2024/1689; NIST AI RMF to NIST AI 100-1 (2023).
"""

from __future__ import annotations

from collections.abc import Mapping

DISCLAIMER = (
    "This mapping is an aid for preparing technical documentation. It is not legal advice and not a "
    "conformity assessment: it shows where evidence in this report is relevant to EU AI Act Annex IV items "
    "and NIST AI RMF functions, not that any obligation is met."
)

# section → (Annex IV items, NIST AI RMF functions / categories)
_MAPPING: list[tuple[str, list[str], list[str]]] = [
    ("Decision and findings",
     ["5 — risk-management system (Art. 9)", "2(g) — test reports, dated"],
     ["GOVERN 1 — policies applied", "MANAGE 1 — risks prioritised and acted on"]),
    ("Policy",
     ["5 — risk-management system (Art. 9)", "2(b) — design choices and trade-offs"],
     ["GOVERN 1 — policies, processes, procedures"]),
    ("Waivers",
     ["5 — risk-management system: residual risks accepted", "6 — changes through the lifecycle"],
     ["GOVERN 2 — accountability", "MANAGE 1 — risk acceptance documented"]),
    ("Data provenance",
     ["2(d) — training data: provenance, scope, characteristics, selection"],
     ["MAP 2 — data and context characterised", "MEASURE 2 — evaluation data documented"]),
    ("PII summary",
     ["2(d) — data cleaning and preparation", "3 — risks to fundamental rights (privacy)"],
     ["MEASURE 2.10 — privacy risk examined and documented"]),
    ("Privacy guarantee",
     ["2(b) — design choices (differential privacy)", "3 — limitations of the system"],
     ["MEASURE 2.10 — privacy risk examined and documented", "MANAGE 2 — risk treatment"]),
    ("Membership inference",
     ["2(g) — testing procedures and results", "2(h) — cybersecurity measures (Art. 15: confidentiality attacks)"],
     ["MEASURE 2.7 — security and resilience", "MEASURE 2.10 — privacy risk"]),
    ("Fairness",
     ["2(g) — potentially discriminatory impacts", "3 — accuracy for specific groups of persons"],
     ["MEASURE 2.11 — fairness and bias evaluated"]),
    ("Task metrics and calibration",
     ["2(g) — metrics for accuracy and robustness", "3 — capabilities and limitations in performance",
      "4 — appropriateness of the performance metrics"],
     ["MEASURE 2.5 — valid and reliable"]),
    ("Training curves",
     ["2(a) — development methods and steps", "2(g) — test logs"],
     ["MEASURE 2 — trustworthiness characteristics evaluated"]),
    ("Signatures and provenance",
     ["2(h) — cybersecurity measures (integrity)", "1 — versions of the system"],
     ["GOVERN 6 — third-party and supply-chain risk", "MANAGE 4 — monitoring and traceability"]),
    ("Lineage graph",
     ["2(a) — pre-trained systems and tools used", "6 — changes through the lifecycle"],
     ["MAP 4 — third-party components mapped", "GOVERN 6 — supply chain"]),
    ("Reproducibility record",
     ["1 — versions of relevant software", "2(a) — development methods and steps"],
     ["GOVERN 4 — documentation practices", "MEASURE 2 — reproducible evaluation"]),
    ("Audit-event log",
     ["6 — lifecycle changes (see also Art. 12, record-keeping)"],
     ["GOVERN 4 — accountability and documentation"]),
]


def compliance_sections(present: Mapping[str, bool]) -> list[tuple[str, list[str], list[str], bool]]:
    """(report section, Annex IV items, NIST AI RMF functions, whether the report has evidence for it).

    Takes which sections have evidence rather than the report itself, so the mapping knows nothing of the
    report's model (and the two modules do not import each other)."""
    return [(section, annex, nist, bool(present.get(section, False))) for section, annex, nist in _MAPPING]
