"""``pseudonym`` redaction of names: realistic fake names, consistent within a data set, never the original."""

from __future__ import annotations

import re
from pathlib import Path

from govern.config import RunConfig
from govern.data.io import read_records
from govern.data.stage import DataStage
from govern.evidence import Evidence
from govern.pii import PIIKey
from govern.pii.redact import PseudonymTable
from govern.pii.stage import PIIStage
from govern.stage import StageContext
from tests.pii.conftest import make_policy, write_jsonl
from tests.pii.test_person_names import require_name_detector

NAMES = ["Aaliyah Vorster", "Tomasz Wojcik", "Ingrid Halvorsen-Berg"]


def test_same_name_same_pseudonym_other_seed_other_pseudonym(key: PIIKey) -> None:
    require_name_detector()
    table = PseudonymTable(key, seed="dataset-a")
    full = table.token("PERSON", "Aaliyah Vorster")
    assert full == table.token("PERSON", "Aaliyah Vorster")
    assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", full) and "Aaliyah" not in full and "Vorster" not in full
    surname = full.split()[1]
    assert table.token("PERSON", "Vorster") == surname            # "Ms. Vorster" later: the same fake surname
    assert table.token("PERSON", "aaliyah vorster") == full.lower()  # chat casing kept
    hyphen = table.token("PERSON", "Ingrid Halvorsen-Berg")
    assert hyphen.count("-") == 1 and "Halvorsen" not in hyphen and "Berg" not in hyphen
    other = PseudonymTable(key, seed="dataset-b")
    assert other.token("PERSON", "Aaliyah Vorster") != full
    # a different key (another lineage DB) also gives other names; the table holds no originals
    assert PseudonymTable(PIIKey(key=b"\x01" * 32), seed="dataset-a").token("PERSON", "Aaliyah Vorster") != full
    assert all("Vorster" not in k for k in table._numbers.get("PERSON", {}))


def test_pseudonym_run_replaces_every_planted_name_consistently(tmp_path: Path) -> None:
    require_name_detector()
    train = write_jsonl(tmp_path / "train.jsonl", [
        {"id": "t1", "text": f"Defendant {NAMES[0]}, aged 41, was charged with fraud.", "label": "a"},
        {"id": "t2", "text": f"Dear Ms. Vorster, your case with {NAMES[1]} is closed.", "label": "b"},
        {"id": "t3", "text": f"Ticket: {NAMES[2]} reports that the router reboots.", "label": "a"},
    ])
    eval_ = write_jsonl(tmp_path / "eval.jsonl", [
        {"id": "e1", "text": f"Signed in Lisbon by {NAMES[0]}, on behalf of Siemens.", "label": "a"}])
    config = RunConfig.model_validate({"data": {"train": str(train), "eval": str(eval_)}})
    policy = make_policy(engine="spacy", redaction="pseudonym", entities={"EMAIL_ADDRESS": "redact"},
                         ner_entities={"PERSON": "redact"})
    ctx = StageContext(run_id="run-names", config=config, run_dir=tmp_path / "run", policy=policy,
                       evidence=Evidence(), db_url=f"sqlite:///{tmp_path / 'lineage.db'}")
    ctx.outputs["data"] = DataStage().run(ctx).outputs
    result = PIIStage().run(ctx)
    assert result.evidence.redacted and result.evidence.redaction_mode == "pseudonym"
    train_out = [r["text"] for r in read_records(Path(result.outputs.train_path))]
    eval_out = [r["text"] for r in read_records(Path(result.outputs.eval_path))]
    everything = "\n".join(train_out + eval_out)
    for name in NAMES:
        for word in re.split(r"[ -]", name):
            assert word not in everything, (word, everything)
    assert "<PERSON" not in everything  # fake names, not tokens
    fake_full = train_out[0].removeprefix("Defendant ").split(",")[0]
    # a first name and a surname, each a capitalised word (the pseudonym lists hold names such as "Määttänen";
    # which one is drawn depends on the run's random HMAC key)
    words = fake_full.split()
    assert len(words) == 2 and all(w.isalpha() and w[0].isupper() for w in words), fake_full
    assert f"by {fake_full}," in eval_out[0]                         # same person in eval: same pseudonym
    assert f"Ms. {fake_full.split()[1]}," in train_out[1]            # surname alone: the same fake surname
    assert "Lisbon" in eval_out[0] and "Siemens" in eval_out[0]       # the rest of the text is untouched
