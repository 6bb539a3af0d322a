"""Which report sections support which EU AI Act Annex IV items and NIST AI RMF functions.

An aid for whoever assembles technical documentation, NOT legal advice and not a conformity
assessment: the mapping says where the evidence in this report is *relevant*, not that an obligation
is met. Annex IV points refer to Regulation (EU) 2024/1689; NIST AI RMF to NIST AI 100-1 (2023); the
Generative AI profile to NIST AI 600-1 (2024); Annex A controls to ISO/IEC 42001:2023.
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


# section → (NIST AI 600-1 Generative AI profile: the GAI risks the evidence bears on, with the AI RMF
# subcategory whose suggested actions cover it; ISO/IEC 42001:2023 Annex A reference controls). Same
# reading as above: where the evidence is relevant, never that a control is implemented.
_PROFILES: dict[str, tuple[list[str], list[str]]] = {
    "Decision and findings": (["Value chain and component integration (GOVERN 1)"],
                              ["A.6.2.4 — verification and validation", "A.2.2 — AI policy"]),
    "Policy": (["all GAI risks: policies set (GOVERN 1.1-1.7)"], ["A.2.2 — AI policy", "A.2.4 — review of the AI policy"]),
    "Waivers": (["risk acceptance documented (GOVERN 1.3, MANAGE 1.3)"],
                ["A.3.2 — AI roles and responsibilities", "A.5.3 — documentation of AI system impact assessments"]),
    "Data provenance": (["Intellectual property; Information integrity (MAP 4.1, MEASURE 2.1)"],
                        ["A.7.3 — acquisition of data", "A.7.5 — data provenance", "A.4.3 — data resources"]),
    "PII summary": (["Data privacy (MEASURE 2.10)"], ["A.7.4 — quality of data for AI systems", "A.7.6 — data preparation"]),
    "Privacy guarantee": (["Data privacy (MEASURE 2.10, MANAGE 2)"],
                          ["A.6.1.3 — processes for responsible AI system design and development",
                           "A.5.4 — assessing AI system impact on individuals or groups"]),
    "Membership inference": (["Data privacy; Information security (MEASURE 2.7, 2.10)"],
                             ["A.6.2.4 — AI system verification and validation"]),
    "Fairness": (["Harmful bias and homogenization (MEASURE 2.11)"],
                 ["A.5.4 — assessing AI system impact on individuals or groups", "A.6.2.4 — verification and validation"]),
    "Task metrics and calibration": (["Confabulation (MEASURE 2.5)"], ["A.6.2.4 — AI system verification and validation"]),
    "Training curves": (["Environmental impacts (MEASURE 2.12: compute recorded)"],
                        ["A.4.5 — system and computing resources", "A.6.2.3 — documentation of AI system design and development"]),
    "Signatures and provenance": (["Information integrity; Value chain and component integration (GOVERN 6, MANAGE 3)"],
                                  ["A.10.3 — suppliers", "A.6.2.5 — AI system deployment"]),
    "Lineage graph": (["Value chain and component integration (GOVERN 6.1, MAP 4)"],
                      ["A.10.3 — suppliers", "A.4.4 — tooling resources", "A.7.5 — data provenance"]),
    "Reproducibility record": (["Information integrity (MEASURE 2.1)"],
                               ["A.6.2.7 — AI system technical documentation", "A.4.2 — resource documentation"]),
    "Audit-event log": (["Information security (MANAGE 4.1)"], ["A.6.2.8 — AI system recording of event logs"]),
}


def profile_controls(section: str) -> tuple[list[str], list[str]]:
    """(NIST AI 600-1 risks and actions, ISO/IEC 42001 Annex A controls) a report section is relevant to."""
    nist, iso = _PROFILES.get(section, ([], []))
    return list(nist), list(iso)
