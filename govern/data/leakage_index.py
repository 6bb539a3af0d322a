"""The train/eval leakage check for corpora of millions of records: streamed, in compact arrays.

:func:`govern.data.leakage.check_leakage` takes every text as a list and builds a Python object per
record (normalised text, shingle set, ``LeanMinHash``, datasketch LSH entries): about 8 KB per training
record at peak, so 2M records need ~17 GB. :class:`LeakageIndex` computes the same evidence from
*streams* of ``(text, id)`` pairs, a chunk at a time, and keeps per training record only numpy rows:

* an 8-byte key of its normalised text (exact duplicates; the first train record of a text wins);
* its MinHash signature (``num_perm`` × uint32: the candidate check needs it);
* one 8-byte key per LSH band (the same bands and rows datasketch's ``MinHashLSH`` picks for the
  threshold), sorted once, so a query is a binary search per band — never a pass over all train
  records: the check is O(n log n), not quadratic;
* its id (for the ≤ 20 example pairs).

That is ~0.8 KB per training record, and nothing per eval record beyond its chunk. Results equal
``check_leakage``'s: same normalisation, shingles and signatures (its :func:`minhashes`), same LSH
banding, same verification of a candidate by the full signature. Band keys are 64-bit hashes of a
band's values, so a collision can only add a candidate, which the full-signature check then rejects;
an exact-text key collision (probability ~n²/2⁶⁵, 10⁻⁷ at 2M records) would count one false exact
duplicate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from itertools import islice

import numpy as np
from datasketch import MinHashLSH

from govern.data.leakage import (
    LSH_MARGIN,
    MAX_EXAMPLE_PAIRS,
    NUM_PERM,
    minhashes,
    normalise_text,
    shingles,
)
from govern.evidence import LeakageEvidence

#: records normalised, shingled and hashed at a time (bounds the per-chunk Python objects)
CHUNK = 20_000
_EMPTY = np.uint64(0)  # the key of an empty normalised text: matches nothing


def _text_key(normalised: str) -> int:
    return int.from_bytes(hashlib.blake2b(normalised.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little") | 1  # never 0 (_EMPTY)


def _chunks(pairs: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    it = iter(pairs)
    while chunk := list(islice(it, size)):
        yield chunk


class LeakageIndex:
    """Train texts in, eval texts against them: see the module docstring."""

    def __init__(self, threshold: float = 0.9, num_perm: int = NUM_PERM) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_MARGIN), num_perm=num_perm, weights=(0.1, 0.9))
        self._bands: list[tuple[int, int]] = list(lsh.hashranges)
        rng = np.random.default_rng(20261201)
        # odd 64-bit multipliers: a band's key is sum(value × multiplier) mod 2⁶⁴ (collisions only add candidates)
        self._mult = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._text_keys: list[np.ndarray] = []
        self._sigs: list[np.ndarray] = []
        self._band_chunks: list[np.ndarray] = []
        self._ids: list[str] = []
        self._frozen = False

    # ---------------------------------------------------------------------------------------- build
    def _signatures(self, normalised: list[str]) -> np.ndarray:
        """(len, num_perm) uint32 rows; an empty shingle set gets all-max (matches nothing real)."""
        out = np.full((len(normalised), self.num_perm), np.iinfo(np.uint32).max, dtype=np.uint32)
        for row, sig in enumerate(minhashes([shingles(t) for t in normalised], self.num_perm)):
            if sig is not None:
                out[row] = sig.hashvalues
        return out

    def _band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """(len, bands) uint64: one key per LSH band of each signature (a chunk at a time: the uint64
        copy of a band is the largest temporary)."""
        keys = np.empty((len(sigs), len(self._bands)), dtype=np.uint64)
        with np.errstate(over="ignore"):  # wrap-around is the point (mod 2⁶⁴)
            for j, (lo, hi) in enumerate(self._bands):
                keys[:, j] = (sigs[:, lo:hi].astype(np.uint64) * self._mult[lo:hi]).sum(
                    axis=1, dtype=np.uint64) + np.uint64(j)
        return keys

    def add_train(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add ``(text, id)`` training pairs, streamed (any iterable, read once)."""
        assert not self._frozen, "add every training record before the first query"
        for chunk in _chunks(pairs, CHUNK):
            normalised = [normalise_text(t) for t, _ in chunk]
            self._text_keys.append(np.fromiter((_text_key(t) if t else 0 for t in normalised), dtype=np.uint64,
                                               count=len(chunk)))
            sigs = self._signatures(normalised)
            self._sigs.append(sigs)
            self._band_chunks.append(self._band_keys(sigs))
            self._ids.extend(i for _, i in chunk)

    def _freeze(self) -> None:
        if self._frozen:
            return
        self._frozen = True
        keys = np.concatenate(self._text_keys) if self._text_keys else np.empty(0, np.uint64)
        self._text_keys = []
        # exact: unique text keys, each with its first train index (np.unique returns first occurrences)
        self._exact_keys, self._exact_first = np.unique(keys, return_index=True)
        del keys
        self._sig = _concatenate(self._sigs, (0, self.num_perm), np.uint32)
        bands = _concatenate(self._band_chunks, (0, len(self._bands)), np.uint64)
        rows = np.flatnonzero(~(self._sig == np.iinfo(np.uint32).max).all(axis=1))
        self._band_sorted: list[tuple[np.ndarray, np.ndarray]] = []
        for j in range(bands.shape[1]):
            column = bands[rows, j]
            order = np.argsort(column, kind="stable")
            self._band_sorted.append((column[order], rows[order]))
        del bands

    # ---------------------------------------------------------------------------------------- query
    def check(self, eval_pairs: Iterable[tuple[str, str]]) -> LeakageEvidence:
        """The leakage evidence of the ``(text, id)`` eval pairs against the training records."""
        self._freeze()
        exact = near = n_eval = 0
        pairs: list[tuple[str, str]] = []
        near_pairs: list[tuple[str, str]] = []
        have_train = len(self._ids) > 0
        for chunk in _chunks(eval_pairs, CHUNK):
            n_eval += len(chunk)
            normalised = [normalise_text(t) for t, _ in chunk]
            remaining: list[int] = []
            for i, text in enumerate(normalised):
                match = self._exact_match(text) if text else None
                if match is not None:
                    exact += 1
                    near += 1
                    if len(pairs) < MAX_EXAMPLE_PAIRS:
                        pairs.append((chunk[i][1], self._ids[match]))
                else:
                    remaining.append(i)
            if not remaining or not have_train:
                continue
            sigs = self._signatures([normalised[i] for i in remaining])
            bands = self._band_keys(sigs)
            empty = (sigs == np.iinfo(np.uint32).max).all(axis=1)
            for row, i in enumerate(remaining):
                if empty[row]:
                    continue
                candidates = self._candidates(bands[row])
                if candidates.size == 0:
                    continue
                similarity = (self._sig[candidates] == sigs[row]).mean(axis=1)
                best = int(np.argmax(similarity))
                if similarity[best] >= self.threshold:
                    near += 1
                    if len(near_pairs) < MAX_EXAMPLE_PAIRS:
                        near_pairs.append((chunk[i][1], self._ids[int(candidates[best])]))
        pairs.extend(near_pairs[: MAX_EXAMPLE_PAIRS - len(pairs)])
        return LeakageEvidence(
            exact_duplicates=exact,
            exact_fraction=exact / n_eval if n_eval else 0.0,
            near_duplicates=near,
            near_fraction=near / n_eval if n_eval else 0.0,
            threshold=self.threshold,
            num_perm=self.num_perm,
            example_pairs=pairs,
        )

    def _exact_match(self, normalised: str) -> int | None:
        key = np.uint64(_text_key(normalised))
        pos = int(np.searchsorted(self._exact_keys, key))
        if pos < len(self._exact_keys) and self._exact_keys[pos] == key:
            return int(self._exact_first[pos])
        return None

    def _candidates(self, band_keys: np.ndarray) -> np.ndarray:
        """Train rows sharing at least one band key with the query, ascending."""
        found: list[np.ndarray] = []
        for j, (keys, order) in enumerate(self._band_sorted):
            lo = int(np.searchsorted(keys, band_keys[j], side="left"))
            hi = int(np.searchsorted(keys, band_keys[j], side="right"))
            if hi > lo:
                found.append(order[lo:hi])
        if not found:
            return np.empty(0, dtype=np.int64)
        return np.unique(np.concatenate(found))


def _concatenate(chunks: list[np.ndarray], empty: tuple[int, int], dtype: type) -> np.ndarray:
    """The chunks as one array, emptying the list as it goes (peak: the result plus one chunk)."""
    out: np.ndarray = np.empty((sum(len(c) for c in chunks), empty[1]), dtype=dtype)
    at = 0
    while chunks:
        chunk = chunks.pop(0)
        out[at:at + len(chunk)] = chunk
        at += len(chunk)
    return out


def check_leakage_streaming(train: Iterable[tuple[str, str]], eval_: Iterable[tuple[str, str]], *,
                            threshold: float = 0.9, num_perm: int = NUM_PERM) -> LeakageEvidence:
    """:func:`govern.data.leakage.check_leakage` over streams of ``(text, id)`` pairs, in bounded memory
    per eval record and ~0.8 KB per training record."""
    index = LeakageIndex(threshold, num_perm)
    index.add_train(train)
    return index.check(eval_)
