"""PERSON detection that does not rest on the small NER model alone.

:class:`PersonNameRecognizer` replaces the PERSON part of Presidio's ``SpacyRecognizer`` (which keeps
its other entities). It combines four kinds of evidence and scores each span:

* **the spaCy NER's PERSON spans** (kept at spaCy's 0.85 unless every word is a common English word
  and none is a known name — "Please", "Order" tagged PERSON — or they are obviously not a name);
* **the name lexicon** (:mod:`govern.pii.names`): runs of capitalised words that start with a known
  first name or end with a known last name ("Aaliyah Vorster", "Jean-Pierre Okafor-Smith"), and
  lower-case first + last names in chat text ("ask priya raghunathan");
* **context**: titles and roles ("Mr", "Dr.", "Defendant", "ex-"), salutations and sign-offs ("Dear", "Hi",
  "Regards,\\n"), phrases like "my name is", which make a capitalised word a name even when no list
  knows it ("ms. Wijtze");
* **the tagger's parts of speech** (the spaCy ``Doc`` Presidio already made, so no extra pass): a known
  name followed by a finite verb or a possessive is a subject or an owner ("Okonkwo called", "Naja's
  laptop"), which lifts a name opening a sentence, a lower-case chat name ("ok priya said …") and an
  ambiguous NER name ("Mark has approved …"); a later "he"/"she"/"his"/"her" outweighs the small
  model's guess that such a subject is a place or a company.

Ambiguous names — words that are also common English words ("Will", "May", "Bill", "Hope", "Mark",
"Grace") — never count on their own: they need a second name word beside them or context. Common
English words come from the spaCy model's own WordNet lemma tables (verbs, adjectives, adverbs, and
nouns that are not common names) plus its stop words, so no extra list ships. Not people, whatever the
NER says: runs opening with an article ("The Royal Ballet"), Title Case phrases of dictionary words
("Cautionary Notes"), street names and the town after a street address, lower-case dictionary words.

Scores: 0.85 title/role context or first+last name; 0.8 salutation context; 0.75 lower-case
first+last; 0.6 a single capitalised known name inside a sentence, or one that is a verb's subject or an
owner; 0.55 a common first name opening a sentence; 0.4 (below the default threshold) any other single
known name opening a sentence, where capitalisation tells nothing.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from presidio_analyzer import AnalysisExplanation, EntityRecognizer, LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from govern.pii.names import COMMON_RANK, NAME_SHAPE, NameLexicon

LANGUAGE = "en"

TITLES = frozenset({
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "madam", "madame", "mister",
    "lord", "lady", "rev", "reverend", "fr", "father", "sister", "brother", "judge", "justice", "officer",
    "sgt", "sergeant", "capt", "captain", "det", "detective", "lt", "col", "gen", "president", "senator",
    "rep", "gov", "governor", "mayor", "nurse", "doctor", "coach", "uncle", "aunt", "auntie", "grandma",
    "grandpa", "herr", "frau", "mme", "mlle", "monsieur", "señor", "sr", "sra", "dott", "defendant",
    "plaintiff", "claimant", "witness", "patient", "client", "customer", "tenant", "applicant", "employee",
    "agent", "inspector", "constable", "attorney", "counsel", "suspect", "victim", "minister", "pastor",
})
#: Titles written abbreviated, with a dot before the name ("Dr. Okafor", "Mrs. Mensah").
TITLE_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "mx", "dr", "prof", "rev", "fr", "sgt", "capt", "det", "lt", "col",
                                 "gen", "rep", "gov", "sr", "sra", "dott", "mme", "mlle", "insp"})
#: Words after which the next name-shaped word(s) are a person: greetings, sign-offs, introductions.
SALUTATIONS = frozenset({
    "dear", "hi", "hello", "hey", "hiya", "greetings", "thanks", "thank", "cheers", "regards", "sincerely",
    "best", "yours", "cordially", "respectfully", "attn", "attention", "from", "signed", "name", "named",
    "cc", "by", "with", "ask", "tell", "contact", "met", "love", "xoxo", "bye",
    "congrats", "congratulations", "sorry", "welcome", "goodbye", "is", "am", "im",
})
#: Salutations strong enough to lift a lower-case or unknown word on their own.
STRONG_SALUTATIONS = frozenset({"dear", "hi", "hello", "hey", "hiya", "regards", "sincerely", "cheers",
                                "thanks", "attn", "signed", "named", "called", "yours", "name"})
#: Words that make a capitalised run an address, an organisation or a thing, never a person.
STOPPERS = frozenset({
    "street", "st", "road", "rd", "avenue", "ave", "lane", "ln", "boulevard", "blvd", "drive", "dr.", "court",
    "way", "place", "square", "park", "bank", "inc", "ltd", "llc", "corp", "corporation", "company", "co",
    "group", "university", "college", "school", "hospital", "clinic", "church", "airport", "station",
    "city", "county", "state", "river", "lake", "mount", "valley", "center", "centre", "hotel", "restaurant",
    "foundation", "institute", "association", "department", "ministry", "council", "club", "team",
    "services", "solutions", "technologies", "systems", "gmbh", "plc", "ag", "sa", "bv", "consulting",
    "software", "partners", "holdings", "industries", "international", "rue", "strasse", "straße", "straat",
    "via", "calle", "avenida", "rua", "platz", "gasse", "weg", "plaza", "piazza", "chaussee", "allee",
})
#: Lower-case particles inside names: "Ludwig van Beethoven", "Maria de la Cruz", "Omar bin Laden".
PARTICLES = frozenset({"van", "von", "de", "der", "den", "del", "della", "di", "da", "du", "dos", "das",
                       "la", "le", "bin", "binti", "ibn", "al", "el", "ter", "ten", "y", "zu"})
#: Common nouns that are also common names, not in WordNet's verb/adjective lists (months, virtues,
#: flowers, colours, …): ambiguous even though a name list ranks them high.
AMBIGUOUS_NOUNS = frozenset({
    "april", "may", "june", "august", "summer", "autumn", "winter", "dawn", "joy", "faith", "hope", "grace",
    "charity", "patience", "honor", "honour", "mercy", "ruby", "amber", "iris", "lily", "daisy", "holly",
    "ivy", "pearl", "jade", "rose", "violet", "poppy", "heather", "olive", "rusty", "sunny", "sky", "river",
    "rain", "storm", "star", "angel", "king", "prince", "duke", "earl", "major", "page", "art", "bill",
    "mark", "will", "pat", "sue", "rob", "bob", "jack", "frank", "ray", "guy", "don", "dean", "chase",
    "chuck", "drew", "gene", "gary", "sandy", "penny", "candy", "brandy", "crystal", "diamond", "destiny",
    "harmony", "melody", "serenity", "trinity", "unity", "justice", "liberty", "love", "baby", "honey",
    "sugar", "bunny", "buddy", "man", "lady", "friend", "boy", "girl", "son", "day", "night", "city",
    "house", "white", "black", "brown", "green", "gray", "grey", "young", "long", "short", "little",
    "good", "best", "rich", "hall", "hill", "wood", "stone", "field", "bank", "church", "street", "price",
    "cash", "money", "lane", "cole", "miles", "christian", "cliff", "glen", "heath", "moss", "reed",
    "wolf", "fox", "hunter", "fisher", "baker", "cook", "smith", "porter", "mason", "carter", "taylor",
    "parker", "turner", "walker", "ward", "bishop", "january", "february", "march", "july", "september",
    "october", "november", "december", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
    "sunday", "nan", "null", "none", "ok", "bot",
})


@dataclass(frozen=True)
class _Word:
    text: str
    start: int
    end: int
    lower: str
    cap: bool
    first: int  # lexicon rank tier (0 unknown)
    last: int
    ambiguous: bool  # a common English word as well as a name
    dictionary: bool  # in the English word tables at all (as any part of speech)


def english_word_tables(nlp: Any) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(stop words, verbs+adjectives+adverbs, nouns) from a loaded spaCy English pipeline's lemmatizer
    tables (WordNet-derived); empty sets when the pipeline has none."""
    stop = frozenset(w.lower() for w in getattr(nlp.Defaults, "stop_words", set()))
    other: set[str] = set()
    nouns: set[str] = set()
    try:
        lemmatizer = nlp.get_pipe("lemmatizer")
        index = lemmatizer.lookups.get_table("lemma_index")
    except (KeyError, ValueError):
        return stop, frozenset(), frozenset()
    for pos in ("noun", "verb", "adj", "adv"):  # the table hashes its string keys
        words = index.get(pos) or []
        (nouns if pos == "noun" else other).update(w for w in words if "_" not in w)
    return stop, frozenset(other), frozenset(nouns)


def _address_like(text: str, start: int, end: int) -> bool:
    """A number right before or after the words: "87 Jakobi 69", "Ibirapita 8057" — a street, not a person."""
    # same line only: a name on the line above an address ("Michael Urner\n\n11 Školní 939") is still a name
    return bool(re.search(r"\d[\w.]*,?[ \t]*$", text[max(0, start - 12):start])
                or re.match(r"[ \t]*\d", text[end:end + 3]))


#: Street words written before the street's name ("rue Victor Hugo", "via Roma"): the name is a street.
STREET_PREFIXES = frozenset({"rue", "via", "viale", "calle", "carrer", "avenida", "rua", "avenue", "ave", "boulevard",
                             "blvd", "piazza", "plaza", "place", "square", "allee", "chaussee", "strada", "largo",
                             "praça", "praca", "ulica", "ul"})
_STREET_WORDS = STREET_PREFIXES | {"street", "st", "road", "rd", "lane", "ln", "drive", "way", "court", "ct",
                                   "terrace", "close", "crescent", "strasse", "straße", "straat", "gasse", "weg",
                                   "platz", "ulice", "utca", "vej", "gatan", "gata", "veien"}
_STREET_ALTERNATIVES = "|".join(sorted(map(re.escape, _STREET_WORDS), key=len, reverse=True))
_STREET_AFTER_NUMBER = re.compile(r"\b\d+[a-z]?[ \t]+(?:[^\W\d_]+[ \t]+){0,3}?(?:" + _STREET_ALTERNATIVES + r")\b",
                                  re.IGNORECASE)
_NUMBER_WORDS_NUMBER = re.compile(r"\b\d+[a-z]?[ \t]+(?:[^\W\d_]+[ \t]+){1,3}\d+[a-z]?[ \t]*$", re.IGNORECASE)
#: Articles: a capitalised run opening with one is the title of a thing ("The Royal Ballet").
ARTICLES = frozenset({"the", "a", "an"})
#: Words before a noun, not a subject name: "the rose" is a flower.
DETERMINERS = ARTICLES | {"my", "your", "our", "their", "his", "her", "its", "this", "that", "these", "those",
                          "some", "any", "no", "every", "each"}
#: Penn tags of a finite verb or modal: the word before one is its subject ("Okafor called", "Mark has").
FINITE_VERB_TAGS = frozenset({"VBD", "VBZ", "VBP", "MD"})
PROPER_NOUN_TAGS = frozenset({"NNP", "NNPS"})
#: Pronouns that refer to a person ("they" and "it" refer to companies as often).
_PERSON_PRONOUN = re.compile(r"\b(?:he|she|him|her|his|hers|himself|herself)\b", re.IGNORECASE)
#: Places in the NER's labels: a lower-case word it calls a place is not a chat name.
_PLACE_LABELS = frozenset({"LOCATION", "GPE", "LOC", "FAC"})
#: Chat words that some country's name list ranks as common first names ("yo", "bro", "haha").
CHAT_WORDS = frozenset({"yo", "ya", "yah", "bro", "bruh", "ty", "kk", "umm", "hmm", "nah", "haha", "hahaha",
                        "hehe", "lol", "lmao", "omg", "idk", "tbh", "imo", "thx", "pls", "plz", "dev", "sys",
                        "aws", "admin", "ok", "okay", "yeah", "yep", "nope", "wow", "ugh", "brb", "gtg"})


def _in_street_address(text: str, words: list[_Word], i: int) -> bool:
    """``words[i]`` names a street or a town of a street address: right after a street word ("12 rue Victor
    Hugo"), or right after the comma that ends one ("12 rue Victor Hugo, Saint Denis, France")."""
    if i > 0 and words[i - 1].lower in STREET_PREFIXES and text[words[i - 1].end:words[i].start] == " ":
        return True
    before = text[max(0, words[i].start - 80):words[i].start]
    comma = re.search(r",[ \t]*$", before)
    if comma is None:
        return False
    segment = re.split(r"[,;:!?\n]|\.\s", before[:comma.start()])[-1]
    return bool(_STREET_AFTER_NUMBER.search(segment) or _NUMBER_WORDS_NUMBER.search(segment))


class _Tags:
    """The tagger's Penn part-of-speech tags by character offset, from the spaCy ``Doc`` Presidio already
    made for this text (none without one: every look-up is then "")."""

    def __init__(self, doc: Any) -> None:
        tokens = list(doc) if doc is not None else []
        self._starts = [t.idx for t in tokens]
        self._tags = [str(t.tag_) for t in tokens]

    def at(self, start: int) -> str:
        k = bisect_left(self._starts, start)
        return self._tags[k] if k < len(self._starts) and self._starts[k] == start else ""

    def after(self, end: int) -> str:
        """The tag of the first token that starts at or after ``end``."""
        k = bisect_left(self._starts, end)
        return self._tags[k] if k < len(self._tags) else ""


class PersonNameRecognizer(LocalRecognizer):
    """PERSON from spaCy NER + a name lexicon + context; see the module docstring."""

    #: set by EntityRecognizer.__init__ from its ``name`` argument; declared because presidio leaves it untyped
    name: str

    def __init__(self, lexicon: NameLexicon, stop_words: frozenset[str], other_words: frozenset[str],
                 nouns: frozenset[str], use_ner: bool = True) -> None:
        super().__init__(supported_entities=["PERSON"], supported_language=LANGUAGE, context=[],
                         name="PersonNameRecognizer")
        self.lexicon = lexicon
        self._stop = stop_words
        self._other = other_words
        self._nouns = nouns
        self.use_ner = use_ner

    def load(self) -> None:
        return None

    # ------------------------------------------------------------------------------------ words
    def _word(self, match: re.Match[str]) -> _Word:
        text = match.group(0)
        if len(text) > 3 and text[-2:] in ("'s", "’s"):
            text = text[:-2]  # possessive: "Sumaya's kid" names Sumaya
        lower = text.lower().replace("’", "'")
        first = self.lexicon.first_rank(text)
        last = self.lexicon.last_rank(text)
        if not (first or last) and "-" in text:
            # "Jean-Pierre", "Okafor-Smith": a double name is known when each part is a known name
            parts = [p for p in text.split("-") if p]
            firsts = [self.lexicon.first_rank(p) for p in parts]
            lasts = [self.lexicon.last_rank(p) for p in parts]
            if all(f or la for f, la in zip(firsts, lasts, strict=True)):
                first = max(firsts) if all(firsts) else 0
                last = max(lasts) if all(lasts) else 0
                if not (first or last):
                    last = max(max(firsts), max(lasts))

        common_name = first == COMMON_RANK or last == COMMON_RANK
        in_dictionary = (lower in self._stop or lower in self._other or lower in self._nouns
                         or (lower.endswith("s") and lower[:-1] in self._nouns))
        ambiguous = (lower in self._stop or lower in self._other or lower in AMBIGUOUS_NOUNS
                     or (lower in self._nouns and not common_name) or lower in TITLES or lower in SALUTATIONS
                     or len(lower) < 2 or (text.isupper() and len(text) <= 4))  # "PM", "CEO": acronyms
        return _Word(text, match.start(), match.start() + len(text), lower, text[:1].isupper(), first, last,
                     ambiguous, in_dictionary)

    @staticmethod
    def _joined(text: str, a: _Word, b: _Word) -> bool:
        """``a`` and ``b`` are adjacent words of one name: only a space between them, or an initial's dot."""
        gap = text[a.end:b.start]
        return gap == " " or (gap == ". " and len(a.text) == 1)

    @staticmethod
    def _sentence_initial(text: str, word: _Word) -> bool:
        before = text[:word.start].rstrip(" \t\"'(")
        return not before or before[-1] in ".!?:;\n*-•>#"

    def _context(self, text: str, words: list[_Word], i: int) -> str | None:
        """'title', 'strong' or 'salutation' when the words before ``words[i]`` say a name follows."""
        if i == 0:
            return None
        prev = words[i - 1]
        gap = text[prev.end:words[i].start]
        # "ex-" makes any word a former role: "ex-Beatle Paul McCartney", "ex-CEO Okafor"; a dot only after an
        # abbreviation ("Dr. Okafor"): after a role noun it ends the sentence ("… the professor. Order 5 …")
        if (prev.lower in TITLES or prev.lower.startswith("ex-")) and (
                gap == " " or (gap.strip() == "." and prev.lower in TITLE_ABBREVIATIONS)):
            return "title"
        if prev.lower == "name" and not (":" in gap or "-" in gap):
            return None  # "Name: Okafor" introduces a name; "name skill model" does not
        if len(gap) <= 4 and gap.strip(" ,:\n\r\t!-") == "" and prev.lower in SALUTATIONS:
            if prev.lower in STRONG_SALUTATIONS:
                return "strong"
            # "my name is", "her maiden name is", "I am": an introduction; other "is"/"am" say nothing
            if prev.lower in ("is", "am", "im"):
                before = words[i - 2].lower if i >= 2 else ""
                return "strong" if before in ("name", "i") or prev.lower == "im" else None
            return "salutation"
        return None

    # --------------------------------------------------------------------------------- analysis
    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        if entities and "PERSON" not in entities:
            return []
        words = [self._word(m) for m in NAME_SHAPE.finditer(text)]
        tags = _Tags(nlp_artifacts.tokens if nlp_artifacts is not None else None)
        spans: list[tuple[int, int, float, str]] = []
        other_ents: list[tuple[int, int, str]] = []
        ner_persons: list[tuple[int, int]] = []
        if self.use_ner and nlp_artifacts is not None:
            for ent in nlp_artifacts.entities or []:
                if ent.label_ == "PERSON":
                    ner_persons.append((ent.start_char, ent.end_char))
                elif ent.label_ in ("LOCATION", "ORGANIZATION", "NRP", "GPE", "ORG", "LOC", "FAC", "NORP"):
                    other_ents.append((ent.start_char, ent.end_char, ent.label_))
        for start, end in ner_persons:
            verdict = self._check_ner_span(text, words, start, end, tags)
            if verdict is not None:
                spans.append(verdict)
        spans.extend(self._lexicon_spans(text, words, other_ents, tags))
        results = [self._result(s, e, score, why) for s, e, score, why in spans]
        return EntityRecognizer.remove_duplicates(results)

    def _title_case_phrase(self, text: str, words: list[_Word], inside: list[_Word]) -> bool:
        """A capitalised word that is no name sits right before or after the span, inside a sentence:
        the span is part of a Title Case phrase ("Cautionary Notes", "Modern Times Quarterly")."""
        at = words.index(inside[0])
        after = words.index(inside[-1]) + 1
        neighbours = []
        if at > 0 and self._joined(text, words[at - 1], inside[0]) and not self._sentence_initial(text, words[at - 1]):
            neighbours.append(words[at - 1])
        if after < len(words) and self._joined(text, inside[-1], words[after]):
            neighbours.append(words[after])
        return any(w.cap and not (w.first or w.last) and w.lower not in TITLES and w.lower not in SALUTATIONS
                   for w in neighbours)

    def _check_ner_span(self, text: str, words: list[_Word], start: int, end: int, tags: _Tags
                        ) -> tuple[int, int, float, str] | None:
        inside = [w for w in words if start <= w.start and w.end <= end]
        # spaCy's span may swallow a title or greeting ("hey john", "Dr. Smith"): trim it off the front
        while inside and (inside[0].lower in TITLES or inside[0].lower in SALUTATIONS):
            inside = inside[1:]
        while inside and inside[-1].lower in SALUTATIONS:
            inside = inside[:-1]
        if not inside:
            return None
        at = words.index(inside[0])
        if inside[0].lower in ARTICLES or (at > 0 and words[at - 1].lower == "the"
                                           and text[words[at - 1].end:inside[0].start] == " "):
            return None  # "the Beatles", "The Dimensions": things and bands
        if any(w.lower in STOPPERS for w in inside):
            return None
        context = self._context(text, words, at)
        if context != "title" and (_address_like(text, inside[0].start, inside[-1].end)
                                   or _in_street_address(text, words, at)):
            return None
        known = any(w.first or w.last for w in inside)
        # "Please", "Order", "Silent Partners", "Cautionary Notes": common words the small model calls
        # PERSON; only a common first name among them ("Rose Hunter"), outside a Title Case phrase, keeps it
        if all(w.dictionary for w in inside) and context not in ("title", "strong") and (
                not any(w.first == COMMON_RANK for w in inside) or self._title_case_phrase(text, words, inside)):
            return None
        if not known and all(w.dictionary for w in inside):
            return None
        if all(w.dictionary and not w.cap for w in inside) and not any(
                w.first == COMMON_RANK and tags.at(w.start) in PROPER_NOUN_TAGS for w in inside):
            # "foot administration meet": lower-case words, whatever the small model says; but the tagger's
            # proper noun that is a common first name is one ("john said …": WordNet knows "john" too)
            return None
        subject = (all(tags.at(w.start) in PROPER_NOUN_TAGS for w in inside)
                   and tags.after(inside[-1].end) in FINITE_VERB_TAGS)
        if (len(inside) == 1 and inside[0].dictionary and context is None and not subject
                and self._sentence_initial(text, inside[0])):
            return None  # "Detail risk …", "Order 5 shipped": a capitalised word opening a sentence
        # "Bill payment failed", "Will you ...": a name-word used as a word; but the tagger's proper noun
        # as a verb's subject is a person ("Mark has approved the refund")
        if all(w.ambiguous for w in inside) and context is None and not subject:
            return None
        return inside[0].start, inside[-1].end, 0.85, "spaCy NER PERSON"

    def _lexicon_spans(self, text: str, words: list[_Word], other_ents: list[tuple[int, int, str]], tags: _Tags
                       ) -> list[tuple[int, int, float, str]]:
        out: list[tuple[int, int, float, str]] = []
        i = 0
        n = len(words)
        while i < n:
            w = words[i]
            context = self._context(text, words, i)
            if w.cap or context:
                # a run of capitalised words (particles allowed inside), or lower-case ones after context
                j = i + 1
                lower_run = not w.cap
                while j < n and j - i < 5 and self._joined(text, words[j - 1], words[j]) and (
                        (words[j].cap and not lower_run) or (lower_run and not words[j].cap
                                                             and (words[j].first or words[j].last)
                                                             and not words[j].ambiguous)
                        or (words[j].lower in PARTICLES and j + 1 < n and not lower_run
                            and (words[j + 1].cap or words[j + 1].lower in PARTICLES))):
                    j += 1
                if not _in_street_address(text, words, i):
                    found = self._score_run(text, words, i, j, context, other_ents, tags)
                    if found is not None:
                        out.append(found)
                i = j
                continue
            # lower-case chat text: "ask priya raghunathan", "tracy sukhorukova"
            # (one of the two may be a word too, "freeman tahuite"; two words are words: "media knowledge")
            if (i + 1 < n and w.first and not w.ambiguous and self._joined(text, w, words[i + 1])
                    and not words[i + 1].cap and words[i + 1].last and not words[i + 1].ambiguous
                    and not (w.dictionary and words[i + 1].dictionary)):
                out.append((w.start, words[i + 1].end, 0.75, "lower-case first + last name"))
                i += 2
                continue
            # "ok priya said the router is broken": a lower-case common first name as a verb's subject
            if (w.first == COMMON_RANK and not w.ambiguous and not w.dictionary and len(w.text) >= 3
                    and w.lower not in CHAT_WORDS and tags.after(w.end) in FINITE_VERB_TAGS
                    and not (i > 0 and words[i - 1].lower in DETERMINERS)
                    and not any(s < w.end and w.start < e for s, e, label in other_ents
                                if label in _PLACE_LABELS)):
                out.append((w.start, w.end, 0.6, "lower-case first name as the subject of a verb"))
            i += 1
        return out

    def _score_run(self, text: str, words: list[_Word], i: int, j: int, context: str | None,
                   other_ents: list[tuple[int, int, str]], tags: _Tags) -> tuple[int, int, float, str] | None:
        original = run = words[i:j]
        if any(w.lower in STOPPERS for w in run):
            return None
        if original[0].lower in ARTICLES and len(original) > 1:
            return None  # "The Royal Ballet", "The Silent Architecture of Trust": titles of things, not people
        # trim role words and common words off the edges: "Defendant Aaliyah Vorster" → "Aaliyah Vorster"
        lead_context = context
        cue = words[i - 1].lower if context and i > 0 else ""
        while run and (run[0].lower in TITLES or run[0].lower in SALUTATIONS
                       or (run[0].ambiguous and run[0].first != COMMON_RANK and len(run) > 1)):
            if run[0].lower in TITLES:
                lead_context = "title"
            elif run[0].lower in STRONG_SALUTATIONS and run[0].lower != "name":  # "Name Okafor": no colon, no cue
                lead_context = lead_context or "strong"
            if run[0].lower in SALUTATIONS:
                cue = run[0].lower
            run = run[1:]
        while len(run) > 1 and run[-1].ambiguous and run[-1].last != COMMON_RANK:
            run = run[:-1]
        while run and run[-1].lower in PARTICLES:
            run = run[:-1]
        if not run:
            return None
        start, end = run[0].start, run[-1].end
        if lead_context != "title" and _address_like(text, start, end):
            return None
        names = [w for w in run if w.lower not in PARTICLES]
        known = [w for w in names if w.first or w.last]
        clear = [w for w in known if not w.ambiguous]
        if len(names) == 1 and names[0].text.isupper() and len(names[0].text) <= 4:
            return None  # "VOV", "NYC": acronyms and codes
        if lead_context == "title" and len(names) <= 3 and (
                names[0].cap or (known and not names[0].ambiguous and not names[0].dictionary)):
            return start, end, 0.85, "title or role before a name"
        overlaps = [label for s, e, label in other_ents if s < end and start < e]
        overlaps_other = bool(overlaps)
        if not names[0].cap:
            # lower-case chat text: only after a greeting, and only a known first name ("hey priya")
            if lead_context == "strong" and names[0].first and not names[0].ambiguous:
                return start, end, 0.75, "greeting before a lower-case first name"
            if (lead_context and len(names) >= 2 and names[0].first and not names[0].ambiguous
                    and names[-1].last and not names[-1].ambiguous
                    and not (names[0].dictionary and names[-1].dictionary)):
                return start, end, 0.75, "lower-case first + last name after a cue"
            return None
        if lead_context == "strong" and len(names) <= 3:
            if clear or not all(w.dictionary for w in names):
                return start, end, 0.8, "salutation or introduction before a name"
            if known:
                return start, end, 0.8, "salutation before an ambiguous name"
        # the small model calls many unfamiliar names ORG, GPE or NORP ("with Florian"); after a cue that
        # introduces people ("with", "ask", "cc"), a common first name is still a name; "from"/"by"
        # introduce places and companies as often
        person_cue = cue not in ("from", "by") and names[0].first == COMMON_RANK and not names[0].dictionary
        # weak cues ("with", "by", "ask"): a known first name, or two name words
        if lead_context == "salutation" and len(names) <= 3 and (not overlaps_other or person_cue) and (
                (names[0].first and not names[0].ambiguous) or (len(names) >= 2 and clear)):
            return start, end, 0.8, "introduction before a name"
        if not all(w.cap for w in names):
            return None
        if len(names) >= 2 and len(names) <= 4:
            if (names[0].first or names[-1].last) and clear:
                if overlaps_other and not (names[0].first and not names[0].ambiguous):
                    return None
                return start, end, 0.85, "first and last name"
            return None
        if len(names) == 1 and clear:
            return self._score_single(text, names[0], overlaps, tags)
        return None

    def _score_single(self, text: str, w: _Word, overlaps: list[str], tags: _Tags
                      ) -> tuple[int, int, float, str] | None:
        """One capitalised known name with no title or greeting before it."""
        follower = tags.after(w.end)
        # a verb's subject or an owner ("Okafor called", "Naja's laptop"): a person or an organisation
        acts = follower in FINITE_VERB_TAGS or follower == "POS"
        # ... and a later "he"/"she"/"his"/"her" says which ("Okonkwo is reliable. Ask him.")
        referred = acts and _PERSON_PRONOUN.search(text, w.end) is not None
        if w.dictionary:
            # "Hunter", "Baker": a noun as well as a name; Title Case says nothing, the NER or a cue must
            return (w.start, w.end, 0.6, "a verb's subject, referred to as he or she") if referred else None
        # the small model calls many unfamiliar names ORG; a place is a better reason to doubt
        org_only = bool(overlaps) and all(label in ("ORGANIZATION", "ORG") for label in overlaps)
        if overlaps and not (org_only and w.first == COMMON_RANK):
            return (w.start, w.end, 0.6, "a verb's subject, referred to as he or she") if referred else None
        if self._sentence_initial(text, w):
            if acts:
                return w.start, w.end, 0.6, "known name as a verb's subject or an owner"
            if w.first == COMMON_RANK:
                return w.start, w.end, 0.55, "common first name opening a sentence"
            return w.start, w.end, 0.4, "known name opening a sentence"
        return w.start, w.end, 0.6, "capitalised known name"

    def _result(self, start: int, end: int, score: float, why: str) -> RecognizerResult:
        return RecognizerResult(
            entity_type="PERSON", start=start, end=end, score=score,
            analysis_explanation=AnalysisExplanation(recognizer=self.name, original_score=score,
                                                     textual_explanation=why),
            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name,
                                  RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id},
        )
