"""The bundled examples: generated deterministically, committed as generated, and fit for their story."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from govern.config import load_run_config
from govern.data.leakage import check_leakage
from govern.data.validate import check_label_sets, load_dataset
from govern.policy.loader import load_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUICKSTART = EXAMPLES / "quickstart"
BLOCKED = EXAMPLES / "blocked-pii"
GENERATED = ("train.jsonl", "eval.jsonl", "planted_pii.json")


def load_script(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_quickstart_generator_is_deterministic_and_matches_the_committed_files(tmp_path: Path) -> None:
    generator = load_script(QUICKSTART / "generate.py", "quickstart_generate_test")
    generator.generate(tmp_path / "a")
    generator.generate(tmp_path / "b")
    for name in GENERATED:
        first = (tmp_path / "a" / name).read_bytes()
        assert first == (tmp_path / "b" / name).read_bytes(), f"{name} differs between two runs"
        assert first == (QUICKSTART / name).read_bytes(), f"committed {name} is stale: run generate.py"


def test_blocked_pii_generator_matches_the_committed_files(tmp_path: Path) -> None:
    generator = load_script(BLOCKED / "generate.py", "blocked_generate_test")
    generator.generate(tmp_path)
    for name in GENERATED:
        assert (tmp_path / name).read_bytes() == (BLOCKED / name).read_bytes(), f"committed {name} is stale"


def test_examples_are_small() -> None:
    total = sum(p.stat().st_size for folder in (QUICKSTART, BLOCKED) for p in folder.iterdir() if p.is_file())
    assert total < 2_000_000


def test_quickstart_passes_the_data_stage_checks_of_the_default_policy() -> None:
    cfg = load_run_config(QUICKSTART / "govern.yaml")
    policy = load_policy(cfg.policy).policy
    assert policy.metadata.name == "default"
    train = load_dataset(cfg.data.train, cfg.data, "train", cfg.task)
    eval_ = load_dataset(cfg.data.eval, cfg.data, "eval", cfg.task)
    check_label_sets(train, eval_, cfg.data)
    assert policy.data.min_train_rows <= len(train) == 3000
    assert policy.data.min_eval_rows <= len(eval_) == 800
    counts = list(train.labels.values())
    assert len(counts) == 5 and max(counts) - min(counts) <= 2, "intents are balanced"
    # ... and balanced within every sensitive group, so a model that learned the task passes the
    # four-fifths rule on selection rates by construction rather than failing it on label noise.
    for column in cfg.data.sensitive_columns:
        for dataset in (train, eval_):
            by_group: dict[str, dict[str, int]] = {}
            for record in dataset.records:
                group = by_group.setdefault(record[column], {})
                group[record["intent"]] = group.get(record["intent"], 0) + 1
            for intent in train.labels:
                rates = [g.get(intent, 0) / sum(g.values()) for g in by_group.values()]
                assert min(rates) / max(rates) >= 0.9, (column, intent)
    leakage = check_leakage(train.texts(cfg.data), train.ids, eval_.texts(cfg.data), eval_.ids,
                            threshold=cfg.data.near_duplicate_threshold)
    assert leakage.exact_duplicates <= (policy.data.max_exact_leakage or 0)
    assert leakage.near_fraction <= (policy.data.max_near_duplicate_fraction or 1.0)
    assert leakage.near_fraction < 0.01


def test_quickstart_intents_are_independent_of_the_sensitive_attributes() -> None:
    records = [json.loads(line) for line in (QUICKSTART / "train.jsonl").read_text().splitlines()]
    overall = Counter(r["intent"] for r in records)
    for attribute in ("age_band", "region", "language_variety"):
        groups = Counter(r[attribute] for r in records)
        assert min(groups.values()) > 500, f"{attribute} has a small group"
        for group, size in groups.items():
            shares = Counter(r["intent"] for r in records if r[attribute] == group)
            for intent, count in overall.items():
                gap = abs(shares[intent] / size - count / len(records))
                assert gap < 0.05, f"{attribute}={group}: {intent} share differs by {gap:.3f}"


def test_planted_pii_is_in_the_texts_and_only_of_redacted_kinds() -> None:
    cfg = load_run_config(QUICKSTART / "govern.yaml")
    actions = load_policy(cfg.policy).policy.pii.entities
    planted = json.loads((QUICKSTART / "planted_pii.json").read_text())
    texts = {json.loads(line)["id"]: json.loads(line)["text"]
             for name in ("train.jsonl", "eval.jsonl") for line in (QUICKSTART / name).read_text().splitlines()}
    assert 150 <= len(planted) <= 230, "about 5% of 3,800 rows"
    assert {p["entity_type"] for p in planted} == {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE",
                                                    "IP_ADDRESS"}
    for p in planted:
        assert p["value"] in texts[p["id"]]
        assert actions[p["entity_type"]] == "redact"
    assert len({p["value"] for p in planted}) == len(planted), "each planted value is unique"


@pytest.fixture(scope="module")
def pattern_analyzer():  # type: ignore[no-untyped-def]
    """Presidio with its pattern recognizers only (offline, no spaCy model): the default engine."""
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    registry.remove_recognizer("SpacyRecognizer")
    return AnalyzerEngine(nlp_engine=nlp, registry=registry, supported_languages=["en"])


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isalnum())


@pytest.mark.parametrize("folder", [QUICKSTART, BLOCKED], ids=["quickstart", "blocked-pii"])
def test_presidio_finds_every_planted_value_as_its_type(folder: Path, pattern_analyzer) -> None:  # type: ignore[no-untyped-def]
    planted = json.loads((folder / "planted_pii.json").read_text())
    texts = {json.loads(line)["id"]: json.loads(line)["text"]
             for name in ("train.jsonl", "eval.jsonl") for line in (folder / name).read_text().splitlines()}
    entities = ["CREDIT_CARD", "US_SSN", "IBAN_CODE", "EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS"]
    for p in planted:
        text = texts[p["id"]]
        found = [r for r in pattern_analyzer.analyze(text, language="en", entities=entities)
                 if r.entity_type == p["entity_type"] and _digits(text[r.start:r.end]) in _digits(p["value"])
                 and len(_digits(text[r.start:r.end])) >= len(_digits(p["value"])) - 1]
        assert found, f"{p['id']}: planted {p['entity_type']} not detected"
    # the quickstart carries nothing the default policy blocks
    if folder == QUICKSTART:
        blocked = [r for t in texts.values() for r in pattern_analyzer.analyze(t, language="en", entities=["US_SSN"])]
        assert blocked == []


def test_blocked_pii_example_plants_ssns_its_policy_blocks() -> None:
    cfg = load_run_config(BLOCKED / "govern.yaml")
    policy = load_policy(cfg.policy).policy
    assert policy.pii.entities["US_SSN"] == "block"
    planted = json.loads((BLOCKED / "planted_pii.json").read_text())
    assert planted and {p["entity_type"] for p in planted} == {"US_SSN"}
    train = load_dataset(cfg.data.train, cfg.data, "train", cfg.task)
    assert len(train) == 300 and policy.data.min_train_rows <= len(train)
