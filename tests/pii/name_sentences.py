"""Labeled sentences built from the names-dataset lists, for PERSON precision/recall (tests + benchmark).

Names are drawn (seeded) from the lexicon itself: common first and last names, rare ones (known to the
package but ranked in no country's top 2,000), hyphenated double surnames, middle names, particles
("van der"), and lower-case names in chat text; and single names with no cue at all — a surname or
first name opening a sentence as its subject, a first name inside one, a possessive, a lower-case first
name in chat — the cases a title or greeting does not announce. Around them, the capitalised non-names
real text has (cities, companies, weekdays, months) and, in separate sentences, words that are also names
("Will", "May", "Bill", "Hope", "Mark", "Grace") used as words, companies and cities opening a sentence,
titles of books and talks in Title Case, street addresses, and lower-case chat without a name. Gold spans
are exact character offsets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from govern.pii.names import NameLexicon
from govern.pii.person import AMBIGUOUS_NOUNS

CITIES = ["London", "Paris", "Berlin", "Madrid", "Chicago", "Toronto", "Sydney", "Mumbai", "Lagos", "Nairobi",
          "Dublin", "Lisbon", "Warsaw", "Denver", "Seattle", "Manila", "Lima", "Osaka", "Cairo", "Boston"]
COMPANIES = ["Microsoft", "Siemens", "Toyota", "Spotify", "Vodafone", "Nestle", "Samsung", "Oracle"]
PRODUCTS = ["router", "laptop", "washing machine", "phone", "printer", "thermostat", "subscription"]
CRIMES = ["theft", "fraud", "burglary", "assault", "forgery", "arson"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
MONTHS = ["January", "March", "April", "May", "June", "August", "October", "December"]

NON_NAME_SENTENCES = [
    "Will the {product} ship in May? I hope so.",
    "Please bill the customer for {n} hours and mark the invoice as paid.",
    "Hope this helps! Will check again on {weekday}.",
    "The grace period ends in June, so we will review it then.",
    "We moved the meeting to {weekday} in {city}.",
    "The {company} team released version {n} of the {product} firmware.",
    "Order {n} was delivered to {city} on {weekday}.",
    "May I ask why the {product} was returned?",
    "Mark my words: the {company} update will break the {product}.",
    "Thanks for the quick reply, the {product} works again.",
    "Bill payment failed twice, so I called {company} support.",
    "Our office in {city} is closed on {weekday} and in August.",
    "Summer sale: the {product} is 20% off until {month}.",
    "Rose gold and jade green are the new colours for the {product}.",
    "I will call back tomorrow about ticket {n}.",
    "{company} released a new {product} firmware on {weekday}.",
    "{city} is closed for the holiday, so the {product} ships on {weekday}.",
    "Read Cautionary Notes: Seven Lessons From The Field before the {product} workshop.",
    "Her talk, \"The Silent Architecture of Trust\", opens the {city} summit.",
    "Ship it to 12 rue Victor Hugo, Saint Denis, France, by {weekday}.",
    "ok thx, the {product} works now lol",
    "pls send the invoice asap, the {product} is still broken",
    "Courage, Honesty and Patience are the values on our {product} team poster.",
]


@dataclass
class LabeledSentence:
    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)  # PERSON spans
    kind: str = ""


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[int, int]] = []
        self.length = 0

    def add(self, text: str, person: bool = False) -> _Builder:
        if person:
            self.spans.append((self.length, self.length + len(text)))
        self.parts.append(text)
        self.length += len(text)
        return self

    def build(self, kind: str) -> LabeledSentence:
        return LabeledSentence("".join(self.parts), self.spans, kind)


def _pool(names: frozenset[str], words: frozenset[str], rng: random.Random, k: int) -> list[str]:
    # shape-plain names (letters only) that are not also English words: "realistic" names; the
    # ambiguous ones are exercised with context in their own sentences
    # Latin script only: these are English sentences (names in other scripts are a different test)
    ordered = sorted(n for n in names if n.isalpha() and 3 <= len(n) <= 14 and n.lower() not in words
                     and n.lower() not in AMBIGUOUS_NOUNS and all(c < "\u0250" for c in n))
    return rng.sample(ordered, min(k, len(ordered)))


def name_sentences(lexicon: NameLexicon, english_words: frozenset[str], n: int = 400, seed: int = 0
                   ) -> list[LabeledSentence]:
    """``n`` sentences with PERSON spans, plus ``len(NON_NAME_SENTENCES)`` × (n // 100 + 1) without."""
    rng = random.Random(seed)
    k = max(50, n)
    firsts = _pool(lexicon.first_common, english_words, rng, k)
    lasts = _pool(lexicon.last_common, english_words, rng, k)
    rare_firsts = _pool(lexicon.first_known, english_words, rng, k)
    rare_lasts = _pool(lexicon.last_known, english_words, rng, k)

    def full(style: str) -> str:
        f, la = rng.choice(firsts), rng.choice(lasts)
        if style == "rare":
            return f"{rng.choice(rare_firsts)} {rng.choice(rare_lasts)}"
        if style == "hyphen":
            return f"{f} {la}-{rng.choice(lasts)}"
        if style == "middle":
            return f"{f} {rng.choice(firsts)} {la}"
        if style == "particle":
            return f"{f} {rng.choice(['van der', 'de', 'van', 'von', 'da', 'bin'])} {la}"
        if style == "double_first":
            return f"{f}-{rng.choice(firsts)} {la}"
        return f"{f} {la}"

    styles = ["plain", "plain", "plain", "rare", "rare", "hyphen", "middle", "particle", "double_first"]
    out: list[LabeledSentence] = []
    for i in range(n):
        style = rng.choice(styles)
        name = full(style)
        city, company, product = rng.choice(CITIES), rng.choice(COMPANIES), rng.choice(PRODUCTS)
        template = i % 14
        b = _Builder()
        if template == 0:
            b.add("Defendant ").add(name, True).add(f", aged {rng.randint(18, 80)}, was charged with "
                                                    f"{rng.choice(CRIMES)} in {city} on {rng.choice(WEEKDAYS)}.")
        elif template == 1:
            b.add(f"Ticket #{rng.randint(1000, 99999)}: ").add(name, True).add(
                f" reports that the {product} stopped working after the {company} update.")
        elif template == 2:
            b.add("Hi ").add(rng.choice(firsts), True).add(
                f",\nthanks for your message about order {rng.randint(100, 9999)}.\nKind regards,\n").add(name, True)
        elif template == 3:
            b.add("Dear Ms. ").add(rng.choice(lasts), True).add(", your appointment with Dr. ").add(
                rng.choice(rare_lasts), True).add(f" is confirmed for {rng.choice(MONTHS)} {rng.randint(1, 28)}.")
        elif template == 4:
            first = rng.choice(firsts).lower()
            other = f"{rng.choice(firsts).lower()} {rng.choice(lasts).lower()}"
            b.add("hey ").add(first, True).add(" can you ask ").add(other, True).add(
                f" about the {product} invoice? thx")
        elif template == 5:
            b.add("The account was opened by ").add(name, True).add(f" at our {city} branch on {rng.choice(WEEKDAYS)}.")
        elif template == 6:
            b.add(name, True).add(f" called about the refund; the courier never came to {city}.")
        elif template == 7:
            b.add("Meeting notes: ").add(name, True).add(" and ").add(full("plain"), True).add(
                f" agreed to ship the {product} fix on {rng.choice(WEEKDAYS)}.")
        elif template == 8:
            b.add(f"Signed in {city} by ").add(name, True).add(f", on behalf of {company}.")
        elif template == 9:  # a surname alone, as the subject: case notes, tickets
            last = rng.choice(lasts + rare_lasts)
            pronoun = rng.choice(["she", "he", "they"])
            b.add(last, True).add(f" called about the {product} on {rng.choice(WEEKDAYS)}; {pronoun} wants a refund.")
            style = "single"
        elif template == 10:
            b.add(rng.choice(firsts), True).add(f" is very happy with the new {product}.")
            style = "single"
        elif template == 11:  # lower-case chat with a first name and no greeting
            first = rng.choice(firsts).lower()
            b.add(rng.choice(["thx ", "ok ", "so "])).add(first, True).add(f" said the {product} is broken again lol")
            style = "chat"
        elif template == 12:
            b.add("I spoke with ").add(rng.choice(firsts), True).add(f" about the {product} yesterday.")
            style = "single"
        else:
            b.add(rng.choice(firsts), True).add(f"'s {product} was sent back to the {city} store.")
            style = "single"
        out.append(b.build(style))
    for _ in range(n // 100 + 1):
        for template in NON_NAME_SENTENCES:
            text = template.format(product=rng.choice(PRODUCTS), n=rng.randint(2, 9999), weekday=rng.choice(WEEKDAYS),
                                   city=rng.choice(CITIES), company=rng.choice(COMPANIES), month=rng.choice(MONTHS))
            out.append(LabeledSentence(text, [], "non-name"))
    return out
