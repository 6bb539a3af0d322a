"""The PII entity names a policy may use, known without loading Presidio or spaCy.

``govern policy lint`` and every policy load check entity names against this list, so a misspelling
(``US_SNN``) is an error that names the line and suggests ``US_SSN`` — instead of failing at scan time,
after a run has started. Importing Presidio costs about a second (and the ``spacy`` engine a model),
too much for every ``govern check``, so the names are listed here and
``tests/security/test_policy_bombs.py`` pins them to the registry :func:`govern.pii.analyzer.build_analyzer`
really builds: a Presidio upgrade that adds or drops an entity fails that test until this list follows.
"""

from __future__ import annotations

import difflib

#: Entities of govern's ``patterns`` engine: Presidio's predefined English recognizers (minus the NER
#: one) plus govern's PhoneShapeRecognizer.
PATTERN_ENTITIES = frozenset({
    "CREDIT_CARD", "CRYPTO", "DATE_TIME", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "MAC_ADDRESS",
    "MEDICAL_LICENSE", "PHONE_NUMBER", "UK_NHS", "URL", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
    "US_PASSPORT", "US_SSN", "UUID",
})

#: Entities only an NER model finds (Presidio's SpacyRecognizer, engine ``spacy``).
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"})

#: Every name a recognizer of some engine supports. A run config may switch the engine, so a policy
#: load accepts NER names with ``engine: patterns``; the scanner then says which engine is needed.
KNOWN_ENTITIES = PATTERN_ENTITIES | NER_ENTITIES


def unknown_entity_problem(name: str, custom: frozenset[str] | set[str] = frozenset()) -> str | None:
    """None when ``name`` is a known or custom entity; else a message with the closest valid name."""
    valid = KNOWN_ENTITIES | set(custom)
    if name in valid:
        return None
    close = difflib.get_close_matches(name.upper(), sorted(valid), n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(KNOWN_ENTITIES))}"
    return f"unknown entity '{name}': no recognizer finds it; {hint} (or add a custom_recognizers entry for it)"
