"""Train/eval leakage: eval records whose text also occurs, exactly or nearly, in the training data.

An eval set that overlaps the training set overstates accuracy and understates memorisation (the
membership audit uses eval records as non-members), so the overlap is measured and put in evidence
for the policy to gate on.

* **Exact** duplicates compare texts after :func:`normalise_text` (Unicode NFKC, case-folded,
  whitespace collapsed, punctuation stripped at both ends), so ``"Hello  World!"`` equals
  ``"hello world"``.
* **Near** duplicates compare sets of word 3-shingles (consecutive word triples of the normalised
  text; a text shorter than three words is one shingle) with MinHash (128 permutations) and a
  MinHash LSH index from ``datasketch``; an LSH candidate counts when its MinHash-estimated Jaccard
  similarity is at least the threshold (the estimate's standard error is about 0.03 at 128
  permutations, so pairs within a few hundredths of the threshold may fall either side). An exact duplicate is also a near duplicate (Jaccard 1), so
  ``near_duplicates >= exact_duplicates``.

Evidence holds counts and id pairs only, never text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from govern.evidence import LeakageEvidence

NUM_PERM = 128
SHINGLE_WORDS = 3
MAX_EXAMPLE_PAIRS = 20
LSH_MARGIN = 0.1
_SEED = 1
_CHUNK = 100_000
_CACHE_LIMIT = 1_000_000
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def _is_edge_junk(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category[0] in ("P", "Z", "C") or category in ("Sk", "Sm", "So") or ch.isspace()


def normalise_text(text: str) -> str:
    """The form exact-duplicate matching compares: NFKC, casefold, one space, no edge punctuation."""
    text = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold())
    start, end = 0, len(text)
    while start < end and _is_edge_junk(text[start]):
        start += 1
    while end > start and _is_edge_junk(text[end - 1]):
        end -= 1
    return text[start:end]


def shingles(normalised: str, size: int = SHINGLE_WORDS) -> set[bytes]:
    """Word ``size``-shingles of a normalised text (punctuation inside the text is ignored)."""
    words = _WORD.findall(normalised)
    if not words:
        return set()
    if len(words) <= size:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(len(words) - size + 1)}


def minhashes(shingle_sets: Sequence[set[bytes]], num_perm: int = NUM_PERM) -> list[LeanMinHash | None]:
    """MinHash signatures for many shingle sets (``None`` for an empty set, which matches nothing).

    The result equals ``MinHash.bulk(shingle_sets, num_perm=num_perm, seed=1)`` (a test checks it),
    but the permutations are applied to all shingles of many texts in one numpy operation instead of
    one small operation per text, which is ~10x faster on tens of thousands of short texts.
    ``LeanMinHash`` drops the permutation state so that the LSH index stays small.
    """
    template = MinHash(num_perm=num_perm, seed=_SEED)
    result: list[LeanMinHash | None] = [None] * len(shingle_sets)
    non_empty = [i for i, s in enumerate(shingle_sets) if s]
    fmix = _datasketch_fmix()
    if fmix is None or template.scheme not in ("affine32", "affine64"):  # pragma: no cover - other versions
        computed = MinHash.bulk((shingle_sets[i] for i in non_empty), num_perm=num_perm, seed=_SEED)
        for i, mh in zip(non_empty, computed, strict=True):
            result[i] = LeanMinHash(mh)
        return result

    dtype = template.hashvalues.dtype
    width = np.iinfo(dtype).bits
    a, b = template.permutations
    hashfunc = template.hashfunc
    # Templated and real text repeat shingles a lot; hashing each distinct one once saves most sha1s.
    known: dict[bytes, int] = {}
    # Work through the texts in chunks of about _CHUNK shingles to bound memory (chunk x num_perm).
    position = 0
    while position < len(non_empty):
        chunk: list[int] = []
        total = 0
        while position < len(non_empty) and (not chunk or total + len(shingle_sets[non_empty[position]]) <= _CHUNK):
            chunk.append(non_empty[position])
            total += len(shingle_sets[non_empty[position]])
            position += 1
        sizes = np.fromiter((len(shingle_sets[i]) for i in chunk), dtype=np.int64, count=len(chunk))
        if len(known) > _CACHE_LIMIT:
            known.clear()
        hv = np.fromiter(
            (known[sh] if sh in known else known.setdefault(sh, hashfunc(sh))
             for i in chunk for sh in shingle_sets[i]),
            dtype=dtype, count=int(sizes.sum()),
        )
        # (num_perm, shingles), C-contiguous, so the per-text minimum runs along contiguous memory.
        permuted = a[:, None] * fmix(hv, width)[None, :] + b[:, None]
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        signatures = np.minimum.reduceat(permuted, starts, axis=1)
        for column, i in enumerate(chunk):
            result[i] = LeanMinHash(seed=_SEED, hashvalues=signatures[:, column], scheme=template.scheme)
    return result


def _datasketch_fmix() -> Callable[[np.ndarray, int], np.ndarray] | None:
    """datasketch's own pre-mix (private in 2.x); ``None`` makes :func:`minhashes` use the slow path."""
    try:
        from datasketch.minhash import _fmix
    except ImportError:  # pragma: no cover - depends on the datasketch version
        return None
    return _fmix  # type: ignore[no-any-return]  # datasketch is untyped


def check_leakage(
    train_texts: Sequence[str],
    train_ids: Sequence[str],
    eval_texts: Sequence[str],
    eval_ids: Sequence[str],
    *,
    threshold: float = 0.9,
    num_perm: int = NUM_PERM,
) -> LeakageEvidence:
    """Count eval records that duplicate (exactly, or nearly) a training record.

    Each eval record is counted at most once per kind. ``example_pairs`` lists up to 20
    ``(eval id, train id)`` pairs, exact matches first.
    """
    train_norm = [normalise_text(t) for t in train_texts]
    eval_norm = [normalise_text(t) for t in eval_texts]

    first_train_id: dict[str, str] = {}
    for text, record_id in zip(train_norm, train_ids, strict=True):
        if text:
            first_train_id.setdefault(text, record_id)

    pairs: list[tuple[str, str]] = []
    exact = 0
    exact_eval: set[int] = set()
    for i, (text, record_id) in enumerate(zip(eval_norm, eval_ids, strict=True)):
        match = first_train_id.get(text) if text else None
        if match is not None:
            exact += 1
            exact_eval.add(i)
            if len(pairs) < MAX_EXAMPLE_PAIRS:
                pairs.append((record_id, match))

    near = len(exact_eval)
    near_pairs: list[tuple[str, str]] = []
    remaining = [i for i in range(len(eval_norm)) if i not in exact_eval]
    if remaining and train_norm:
        train_sigs = minhashes([shingles(t) for t in train_norm], num_perm)
        eval_sigs = minhashes([shingles(eval_norm[i]) for i in remaining], num_perm)
        # LSH only proposes candidates; each is then checked against the threshold with the full
        # signature. An index tuned for a lower threshold and weighted against false negatives makes
        # a pair just above the threshold a candidate with ~99% probability (at the threshold itself
        # a plain index finds it only 30-40% of the time); the extra candidates cost a numpy compare.
        lsh = MinHashLSH(threshold=max(0.05, threshold - LSH_MARGIN), num_perm=num_perm, weights=(0.1, 0.9))
        with lsh.insertion_session() as session:
            for index, sig in enumerate(train_sigs):
                if sig is not None:
                    session.insert(index, sig, check_duplication=False)
        train_matrix = _signature_matrix(train_sigs, num_perm)
        for i, sig in zip(remaining, eval_sigs, strict=True):
            if sig is None:
                continue
            candidates = lsh.query(sig)
            if not candidates:
                continue
            candidate_rows = np.fromiter(candidates, dtype=np.int64)
            # MinHash-estimated Jaccard = share of permutations whose minimum agrees.
            similarity = (train_matrix[candidate_rows] == sig.hashvalues).mean(axis=1)
            best = int(np.argmax(similarity))
            if similarity[best] >= threshold:
                near += 1
                if len(near_pairs) < MAX_EXAMPLE_PAIRS:
                    near_pairs.append((eval_ids[i], train_ids[int(candidate_rows[best])]))

    pairs.extend(near_pairs[: MAX_EXAMPLE_PAIRS - len(pairs)])
    n_eval = len(eval_texts)
    return LeakageEvidence(
        exact_duplicates=exact,
        exact_fraction=exact / n_eval if n_eval else 0.0,
        near_duplicates=near,
        near_fraction=near / n_eval if n_eval else 0.0,
        threshold=threshold,
        num_perm=num_perm,
        example_pairs=pairs,
    )


def _signature_matrix(signatures: Sequence[LeanMinHash | None], num_perm: int) -> np.ndarray:
    """Rows of hash values (an empty signature gets a row that matches nothing real)."""
    dtype = next((s.hashvalues.dtype for s in signatures if s is not None), np.uint64)
    matrix = np.full((len(signatures), num_perm), np.iinfo(dtype).max, dtype=dtype)
    for index, sig in enumerate(signatures):
        if sig is not None:
            matrix[index] = sig.hashvalues
    return matrix
