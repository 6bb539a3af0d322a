"""Offline name lexicon (from the ``names-dataset`` package) for the PERSON recognizer.

``names-dataset`` (MIT, ``pip install govern[ner]``) ships first and last names with a popularity rank
per country, gathered from 491 M public profiles: 730 k first and 980 k last names, including the rare
and non-English ones a small NER model misses. Loading its own pickles costs ≈12 s and ≈2 GB of memory
(every name carries per-country gender and share dicts), far too much for each ``govern scan`` and
each scanner process. So the first use derives a compact lexicon — name → best rank as a first name
and as a last name — into ``$GOVERN_CACHE_DIR`` (default ``~/.cache/govern``), named after the
package version, under a file lock; later loads read that file (≈1 s, ≈150 MB). The lexicon holds
public name lists only, never anything scanned.

Names whose lower-case form is a common English word ("Will", "May", "Bill", "Hope", "Mark") are
*ambiguous*: :class:`~govern.pii.person.PersonNameRecognizer` takes them as names only with context.
"""

from __future__ import annotations

import gzip
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from govern.errors import GovernError

#: A name-shaped word: letters, optionally joined by apostrophes or hyphens (O'Brien, Jean-Pierre).
NAME_SHAPE = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_FULL_SHAPE = re.compile(rf"^{NAME_SHAPE.pattern}$")
#: Rank given to a name the package lists without any per-country rank (rare; still a known name).
UNRANKED = 99_999
_FORMAT = 2  # bump when the cache layout changes


#: Best rank at or under which a name counts as *common* in some country (tier 1 of the lexicon).
COMMON_RANK = 2_000
_SECTIONS = ("first_common", "first_known", "last_common", "last_known")
_SEPARATOR = "\n\x1e\n"  # record separator between sections: never inside a name


@dataclass(frozen=True)
class NameLexicon:
    """Known first and last names (title case) in two tiers: common (best rank ≤ :data:`COMMON_RANK`
    in some country) and known (ranked, but in no country within the common tier; unranked last names too). Frozensets, because a set built from one ``split`` loads
    ~10× faster than a dict parsed line by line."""

    first_common: frozenset[str]
    first_known: frozenset[str]
    last_common: frozenset[str]
    last_known: frozenset[str]
    source: str

    def first_rank(self, word: str) -> int:
        """:data:`COMMON_RANK` for a common first name, :data:`UNRANKED` for a known one, 0 if unknown."""
        name = _title(word)
        return COMMON_RANK if name in self.first_common else UNRANKED if name in self.first_known else 0

    def last_rank(self, word: str) -> int:
        name = _title(word)
        return COMMON_RANK if name in self.last_common else UNRANKED if name in self.last_known else 0


def _title(word: str) -> str:
    # str.title() turns "o'brien" into "O'Brien" and "jean-pierre" into "Jean-Pierre", as the package spells them
    return word.replace("’", "'").title()


def cache_dir() -> Path:
    return Path(os.environ.get("GOVERN_CACHE_DIR") or Path.home() / ".cache" / "govern")


def _package_version() -> str | None:
    from govern.versions import package_version

    return package_version("names-dataset")


def _build(target: Path) -> None:
    """Derive the compact lexicon from the package's pickles (trusted: they are the installed package's
    own data files, the same ones its ``NameDataset`` class unpickles)."""
    import gzip as _gzip
    import importlib.util
    import pickle

    spec = importlib.util.find_spec("names_dataset")
    assert spec is not None and spec.origin is not None
    data_dir = Path(spec.origin).parent / "v3"
    ranks: dict[str, list[int]] = {}
    for column, filename in ((0, "first_names.pkl.gz"), (1, "last_names.pkl.gz")):
        with _gzip.open(data_dir / filename, "rb") as fh:
            table = pickle.load(fh)  # noqa: S301  # safe: the installed names-dataset package's own data file (its NameDataset class unpickles it too): no more trust than importing it
        for name, info in table.items():
            if not isinstance(name, str) or len(name) < 2 or not _FULL_SHAPE.match(name):
                continue
            rank_by_country = info.get("rank") or {}
            best = min(rank_by_country.values()) if rank_by_country else UNRANKED
            if column == 0 and not rank_by_country:
                continue  # unranked first names are mostly noise (initials, typos); last names are kept
            ranks.setdefault(name, [0, 0])[column] = best
        del table
    sections: dict[str, list[str]] = {name: [] for name in _SECTIONS}
    for name, (first, last) in ranks.items():
        if first:
            sections["first_common" if first <= COMMON_RANK else "first_known"].append(name)
        if last:
            sections["last_common" if last <= COMMON_RANK else "last_known"].append(name)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as out:
        out.write(_SEPARATOR.join("\n".join(sorted(sections[name])) for name in _SECTIONS))
    tmp.replace(target)


@lru_cache(maxsize=1)
def load_name_lexicon() -> NameLexicon:
    """The lexicon, built on first use (see the module docstring). Raises GovernError naming the extra
    when ``names-dataset`` is not installed: PERSON recall would silently drop without it."""
    version = _package_version()
    if version is None:
        raise GovernError("the PERSON recognizer needs the names-dataset package: install the optional extra "
                          "`pip install govern[ner]`, or use engine 'patterns'")
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"names-lexicon-{version}-v{_FORMAT}.tsv.gz"
    if not target.exists():
        from filelock import FileLock

        with FileLock(str(target) + ".lock"):
            if not target.exists():
                _build(target)
    with gzip.open(target, "rt", encoding="utf-8") as fh:
        parts = fh.read().split(_SEPARATOR)
    if len(parts) != len(_SECTIONS):
        raise GovernError(f"name lexicon cache {target} is damaged: delete it and it is rebuilt")
    first_common, first_known, last_common, last_known = (frozenset(part.split("\n")) - {""} for part in parts)
    return NameLexicon(first_common, first_known, last_common, last_known, source=f"names-dataset {version}")
