"""Realistic, consistent fake names for the ``pseudonym`` redaction of PERSON.

Each word of a name is replaced on its own — a first name by a first name, any other word by a last
name, drawn from the names-dataset lexicon's common Latin-script names — so "Aaliyah Vorster" and a
later "Ms. Vorster" become "Mireille Okonjo" and "Ms. Okonjo". The choice is the keyed HMAC of the
seed (one per data set) and the lower-cased word, so the same word maps to the same pseudonym within
a data set and elsewhere differently, and the table holds HMACs, never the words. A pseudonym is never
the original word (a draw that equals it, or that another word already took, is drawn again), and
the original's casing is kept (lower-case chat names stay lower-case).
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

from govern.pii.keys import PIIKey
from govern.pii.names import NAME_SHAPE, load_name_lexicon

#: Words kept as they are inside a name: titles and particles carry no identity.
_KEEP = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "van", "von", "de", "der", "den", "del",
                   "della", "di", "da", "du", "dos", "das", "la", "le", "bin", "binti", "ibn", "al", "el", "y"})


@lru_cache(maxsize=1)
def _pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    lexicon = load_name_lexicon()

    def plain(names: frozenset[str]) -> tuple[str, ...]:
        # letters only, Latin script, 3-10 letters: fake names that read naturally in English text
        return tuple(sorted(n for n in names if n.isalpha() and 3 <= len(n) <= 10 and all(c < "\u0250" for c in n)))

    return plain(lexicon.first_common), plain(lexicon.last_common)


def _cased_like(original: str, fake: str) -> str:
    if original.islower():
        return fake.lower()
    if original.isupper() and len(original) > 1:
        return fake.upper()
    return fake


class NamePseudonyms:
    """One data set's name → fake-name mapping (see the module docstring)."""

    def __init__(self, key: PIIKey, seed: str) -> None:
        self._key = hmac.new(key.key, b"govern-name-pseudonym\x00" + seed.encode("utf-8"), hashlib.sha256).digest()
        self._lexicon = load_name_lexicon()
        self._firsts, self._lasts = _pools()
        self._chosen: dict[str, str] = {}  # HMAC of the word → pseudonym (title case)
        self._taken: set[str] = set()

    def _draw(self, word: str, pool: tuple[str, ...]) -> str:
        digest = hmac.new(self._key, word.lower().encode("utf-8"), hashlib.sha256).hexdigest()
        if digest in self._chosen:
            return self._chosen[digest]
        attempt = 0
        while True:
            index = int.from_bytes(hmac.new(self._key, f"{digest}:{attempt}".encode(), hashlib.sha256).digest()[:8],
                                   "big") % len(pool)
            fake = pool[index]
            if fake.lower() != word.lower() and fake not in self._taken:
                break
            attempt += 1
        self._chosen[digest] = fake
        self._taken.add(fake)
        return fake

    def pseudonym(self, value: str) -> str:
        """``value`` (a PERSON span) with every name word replaced; punctuation and spacing kept."""
        out: list[str] = []
        last = 0
        words = list(NAME_SHAPE.finditer(value))
        for i, match in enumerate(words):
            out.append(value[last:match.start()])
            word = match.group(0)
            parts = word.split("-")
            fakes = []
            for j, part in enumerate(parts):
                if part.lower() in _KEEP or len(part) < 2:
                    fakes.append(part)
                    continue
                as_first = (i == 0 and j == 0 and len(words) > 1) or (
                    len(words) == 1 and self._lexicon.first_rank(part) and not self._lexicon.last_rank(part))
                fakes.append(_cased_like(part, self._draw(part, self._firsts if as_first else self._lasts)))
            out.append("-".join(fakes))
            last = match.end()
        out.append(value[last:])
        result = "".join(out)
        return result if result.lower() != value.lower() else "<PERSON>"
