"""The train/eval leakage check for corpora of millions of records: the eval side indexed, train streamed.

:func:`govern.data.leakage.check_leakage` takes every text as a list and builds a Python object per
record (normalised text, shingle set, ``LeanMinHash``, datasketch LSH entries): about 8 KB per training
record at peak, so 2M records need ~17 GB. :class:`LeakageIndex` computes the same evidence with the
*eval* records indexed, in numpy rows, and the *training* records streamed past the index a chunk at
a time, so memory is bounded by the eval set (held out, and small next to a training corpus) and does
not grow with the number of training records at all. Per eval record the index keeps:

* an 8-byte key of its normalised text (exact duplicates), sorted once;
* its MinHash signature (``num_perm`` × uint32: a candidate is verified by the full signature);
* one 8-byte key per LSH band (the same bands and rows datasketch's ``MinHashLSH`` picks for the
  threshold), sorted once per band, so a training record's lookup is a binary search per band —
  never a pass over all eval records: the check is O((n_train + n_eval) log n_eval), not quadratic;
* its id, the first training record with the same text, and its best near match so far (similarity
  and training id).

About 0.8 KB per eval record, and nothing per training record beyond its chunk. Results equal
``check_leakage``'s: same normalisation, shingles and signatures (its :func:`minhashes`), same LSH
banding (the candidate relation "shares a band key" is symmetric, so indexing either side finds the
same pairs), the same verification by the full signature, the same tie rule (the earliest training
record of the highest similarity is the one named). Band keys are 64-bit hashes of a band's values, so
a collision can only add a candidate, which the full-signature check then rejects; an exact-text key
collision (probability ~n_train·n_eval/2⁶⁴) would count one false exact duplicate.
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
#: candidate (train, eval) pairs verified at a time: bounds the pair arrays and the signature compare
#: when templated data makes many records share bands
PAIR_LIMIT = 500_000
_NO_SIG = np.iinfo(np.uint32).max  # an empty shingle set's signature row: matches nothing


def _text_key(normalised: str) -> int:
    return int.from_bytes(hashlib.blake2b(normalised.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little") | 1  # never 0, the key of an empty normalised text (matches nothing)


def _chunks(pairs: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    it = iter(pairs)
    while chunk := list(islice(it, size)):
        yield chunk


class LeakageIndex:
    """Eval texts indexed at construction; training texts streamed past them (:meth:`add_train` or
    :meth:`feed`, any number of times, in file order); :meth:`evidence` at the end. See the module
    docstring."""

    def __init__(self, eval_pairs: Iterable[tuple[str, str]], threshold: float = 0.9,
                 num_perm: int = NUM_PERM) -> None:
        self.threshold = threshold
        self.num_perm = num_perm
        lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_MARGIN), num_perm=num_perm, weights=(0.1, 0.9))
        self._bands: list[tuple[int, int]] = list(lsh.hashranges)
        rng = np.random.default_rng(20261201)
        # odd 64-bit multipliers: a band's key is sum(value × multiplier) mod 2⁶⁴ (collisions only add candidates)
        self._mult = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        self._buffer: list[tuple[str, str]] = []
        self._index_eval(eval_pairs)

    # ------------------------------------------------------------------------------- the eval index
    def _index_eval(self, eval_pairs: Iterable[tuple[str, str]]) -> None:
        self._eval_ids: list[str] = []
        keys: list[np.ndarray] = []
        sigs: list[np.ndarray] = []
        for chunk in _chunks(eval_pairs, CHUNK):
            normalised = [normalise_text(t) for t, _ in chunk]
            keys.append(np.fromiter((_text_key(t) if t else 0 for t in normalised), dtype=np.uint64,
                                    count=len(chunk)))
            sigs.append(self._signatures(normalised))
            self._eval_ids.extend(i for _, i in chunk)
        n = len(self._eval_ids)
        self._sig = np.concatenate(sigs) if sigs else np.empty((0, self.num_perm), np.uint32)
        text_keys = np.concatenate(keys) if keys else np.empty(0, np.uint64)
        rows = np.flatnonzero(text_keys != 0)
        order = np.argsort(text_keys[rows], kind="stable")
        self._exact_keys, self._exact_rows = text_keys[rows][order], rows[order]
        with_sig = np.flatnonzero(~(self._sig == _NO_SIG).all(axis=1))
        bands = self._band_keys(self._sig[with_sig])
        self._band_sorted: list[tuple[np.ndarray, np.ndarray]] = []
        for j in range(bands.shape[1]):
            order = np.argsort(bands[:, j], kind="stable")
            self._band_sorted.append((bands[order, j], with_sig[order]))
        # per eval record: the first train record with its exact text; its best near match so far
        self._exact_train: list[str | None] = [None] * n
        self._best_sim = np.full(n, -1.0)
        self._best_train: list[str | None] = [None] * n

    def _signatures(self, normalised: list[str]) -> np.ndarray:
        """(len, num_perm) uint32 rows; an empty shingle set gets all-max (matches nothing real)."""
        out = np.full((len(normalised), self.num_perm), _NO_SIG, dtype=np.uint32)
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

    # ------------------------------------------------------------------------------ train, streamed
    def feed(self, text: str, record_id: str) -> None:
        """One training record (in file order); processed a chunk at a time."""
        self._buffer.append((text, record_id))
        if len(self._buffer) >= CHUNK:
            self._flush()

    def add_train(self, pairs: Iterable[tuple[str, str]]) -> None:
        """``(text, id)`` training pairs, streamed (any iterable, read once)."""
        for text, record_id in pairs:
            self.feed(text, record_id)

    def _flush(self) -> None:
        chunk, self._buffer = self._buffer, []
        if not chunk or not self._eval_ids:
            return
        normalised = [normalise_text(t) for t, _ in chunk]
        self._match_exact(chunk, normalised)
        if self._band_sorted and self._band_sorted[0][0].size:
            self._match_near(chunk, self._signatures(normalised))

    def _match_exact(self, chunk: list[tuple[str, str]], normalised: list[str]) -> None:
        if not self._exact_keys.size:
            return
        keys = np.fromiter((_text_key(t) if t else 0 for t in normalised), dtype=np.uint64, count=len(chunk))
        lo = np.searchsorted(self._exact_keys, keys, side="left")
        hi = np.searchsorted(self._exact_keys, keys, side="right")
        for t in np.flatnonzero((hi > lo) & (keys != 0)):  # few: only real duplicates get here
            for e in self._exact_rows[lo[t]:hi[t]]:
                if self._exact_train[e] is None:  # the first train record of a text is the one named
                    self._exact_train[e] = chunk[t][1]

    def _match_near(self, chunk: list[tuple[str, str]], sigs: np.ndarray) -> None:
        bands = self._band_keys(sigs)
        empty = (sigs == _NO_SIG).all(axis=1)
        lo = np.empty(bands.shape, dtype=np.int64)
        counts = np.empty(bands.shape, dtype=np.int64)
        for j, (keys, _) in enumerate(self._band_sorted):
            lo[:, j] = np.searchsorted(keys, bands[:, j], side="left")
            counts[:, j] = np.searchsorted(keys, bands[:, j], side="right") - lo[:, j]
        counts[empty] = 0
        per_row = counts.sum(axis=1)
        # groups of train rows with at most PAIR_LIMIT candidate pairs (a heavier row is a group alone)
        start = 0
        while start < len(chunk):
            end, total = start, 0
            while end < len(chunk) and (end == start or total + per_row[end] <= PAIR_LIMIT):
                total += int(per_row[end])
                end += 1
            if total:
                self._verify(chunk, sigs, start, end, lo[start:end], counts[start:end])
            start = end

    def _verify(self, chunk: list[tuple[str, str]], sigs: np.ndarray, start: int, end: int,
                lo: np.ndarray, counts: np.ndarray) -> None:
        """Candidate pairs of train rows ``start:end``: verify by the full signature, keep each eval
        record's best match at or above the threshold (earliest train record on a tie)."""
        train_rows: list[np.ndarray] = []
        eval_rows: list[np.ndarray] = []
        for j, (_, rows) in enumerate(self._band_sorted):
            c = counts[:, j]
            total = int(c.sum())
            if not total:
                continue
            # every (train row, position in the band's sorted run) pair, without a Python loop
            offsets = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            train_rows.append(np.repeat(np.arange(start, end), c))
            eval_rows.append(rows[np.repeat(lo[:, j], c) + offsets])
        n_eval = len(self._eval_ids)
        pair = np.unique(np.concatenate(train_rows) * n_eval + np.concatenate(eval_rows))  # one per pair
        t, e = pair // n_eval, pair % n_eval
        similarity = (sigs[t] == self._sig[e]).mean(axis=1)
        keep = similarity >= self.threshold
        t, e, similarity = t[keep], e[keep], similarity[keep]
        if not t.size:
            return
        order = np.lexsort((t, -similarity, e))  # per eval record: highest similarity, then earliest train
        e_sorted = e[order]
        first = order[np.r_[True, e_sorted[1:] != e_sorted[:-1]]]
        for i in first:  # few: only pairs at or above the threshold get here
            if similarity[i] > self._best_sim[e[i]]:  # strictly: an earlier chunk wins a tie
                self._best_sim[e[i]] = similarity[i]
                self._best_train[e[i]] = chunk[int(t[i])][1]

    # ------------------------------------------------------------------------------------ evidence
    def evidence(self) -> LeakageEvidence:
        """The leakage evidence of the eval records against every training record fed so far."""
        self._flush()
        n_eval = len(self._eval_ids)
        exact = near = 0
        pairs: list[tuple[str, str]] = []
        near_pairs: list[tuple[str, str]] = []
        for e, eval_id in enumerate(self._eval_ids):
            train_id = self._exact_train[e]
            if train_id is not None:
                exact += 1
                near += 1  # an exact duplicate is also a near one (Jaccard 1)
                if len(pairs) < MAX_EXAMPLE_PAIRS:
                    pairs.append((eval_id, train_id))
            elif (near_id := self._best_train[e]) is not None:
                near += 1
                if len(near_pairs) < MAX_EXAMPLE_PAIRS:
                    near_pairs.append((eval_id, near_id))
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


def check_leakage_streaming(train: Iterable[tuple[str, str]], eval_: Iterable[tuple[str, str]], *,
                            threshold: float = 0.9, num_perm: int = NUM_PERM) -> LeakageEvidence:
    """:func:`govern.data.leakage.check_leakage` over streams of ``(text, id)`` pairs: memory bounded by
    the eval records (~0.8 KB each), none per training record."""
    index = LeakageIndex(eval_, threshold, num_perm)
    index.add_train(train)
    return index.evidence()
