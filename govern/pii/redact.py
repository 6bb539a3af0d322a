"""Redacted copies of data files, with presidio-anonymizer.

The scan already holds every finding's location and span, so redaction re-reads the file once and
replaces those spans — it does not analyse again (same findings by construction, half the work).
Modes:

* ``entity_type``: ``<EMAIL_ADDRESS>``;
* ``pseudonym``: ``<EMAIL_ADDRESS_3>`` — the same value gets the same token everywhere in the data
  set (train and eval share one :class:`PseudonymTable`), so a model can still learn that two
  mentions are the same person without seeing who. Tokens are numbered by first appearance, keyed by
  the value's HMAC, so the table never holds values. **Names** (PERSON) get realistic fake names
  instead (:class:`~govern.pii.pseudonyms.NamePseudonyms`): "Aaliyah Vorster" → "Mireille Okonjo",
  and "Ms. Vorster" later → "Ms. Okonjo", so text stays natural for training.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

from govern.data.io import iter_records, write_records
from govern.pii.keys import PIIKey
from govern.pii.scanner import KeyHits, iter_field_texts
from govern.stage import PIIFindingRow


class PseudonymTable:
    """HMAC of a value → stable per-entity number; PERSON values → consistent fake names.

    ``seed`` names the data set (the stage passes the training data's fingerprint): the same data set
    always gets the same fake names, another data set (or seed) other ones."""

    def __init__(self, key: PIIKey, seed: str = "") -> None:
        self._key = key
        self._numbers: dict[str, dict[str, int]] = defaultdict(dict)
        self.seed = seed
        self._names: Any = None

    def token(self, entity_type: str, value: str) -> str:
        if entity_type == "PERSON":
            if self._names is None:
                from govern.pii.pseudonyms import NamePseudonyms

                self._names = NamePseudonyms(self._key, self.seed)
            return str(self._names.pseudonym(value))
        numbers = self._numbers[entity_type]
        digest = self._key.hmac(entity_type, value)
        if digest not in numbers:
            numbers[digest] = len(numbers) + 1
        return f"<{entity_type}_{numbers[digest]}>"

    def reserve(self, entity_type: str, digest: str) -> None:
        """Number the value with HMAC ``digest`` now (first appearance), without the value: lets the
        Ray redaction fix every number in the driver before shards are redacted in parallel."""
        numbers = self._numbers[entity_type]
        numbers.setdefault(digest, len(numbers) + 1)


def _operators(entities: set[str], mode: str, table: PseudonymTable | None) -> dict[str, OperatorConfig]:
    ops: dict[str, OperatorConfig] = {}
    for entity in entities:
        if mode == "pseudonym":
            assert table is not None
            ops[entity] = OperatorConfig("custom", {"lambda": lambda value, e=entity: table.token(e, value)})
        else:
            ops[entity] = OperatorConfig("replace", {"new_value": f"<{entity}>"})
    return ops


def redact_file(source: Path, target: Path, fmt: str, findings: list[tuple[int, PIIFindingRow]], *,
                mode: str, key: PIIKey, table: PseudonymTable | None = None,
                columns: list[str] | None = None, exclude_columns: list[str] | None = None,
                pseudonym_fields: set[str] | None = None,
                key_findings: list[tuple[int, PIIFindingRow]] | None = None) -> int:
    """Write ``source`` to ``target`` (same format) with every finding's span replaced.

    ``findings`` are ``(location, row)`` pairs for this file, ``location`` as the reader yields it.
    ``columns``/``exclude_columns`` must be those of the scan, so field paths resolve identically.
    ``pseudonym_fields`` (the id column) are always pseudonymised, so ids stay unique.

    Object keys: ``key_findings`` are *all* findings in keys of this file (any action), because a key
    with personal data is named by its redacted form in the paths of everything below it, whatever its
    action. A key with a ``redact`` finding is renamed in the copy to exactly that redacted name
    (``<EMAIL_ADDRESS>``, made unique as in :func:`~govern.pii.scanner.key_names`, so no two values
    merge); keys are always replaced by entity type, even in pseudonym mode, because the name must be
    the one the field paths show. A finding is matched to its raw key by its keyed hash.
    Returns the number of records written (all of them, redacted or not).
    """
    located = iter_records(source, fmt)
    return write_records(target, redact_records(located, findings, mode=mode, key=key, table=table, columns=columns,
                                                exclude_columns=exclude_columns, pseudonym_fields=pseudonym_fields,
                                                key_findings=key_findings), fmt)


def redact_records(located: Iterable[tuple[int, dict[str, Any]]], findings: list[tuple[int, PIIFindingRow]], *,
                   mode: str, key: PIIKey, table: PseudonymTable | None = None,
                   columns: list[str] | None = None, exclude_columns: list[str] | None = None,
                   pseudonym_fields: set[str] | None = None,
                   key_findings: list[tuple[int, PIIFindingRow]] | None = None) -> Iterator[dict[str, Any]]:
    """The records of ``located`` (``(location, record)`` pairs, as the reader yields them) with every
    finding's span replaced: the body of :func:`redact_file`, for callers that read and write
    elsewhere (a shard of a Ray redaction). Arguments as there."""
    if table is None:
        table = PseudonymTable(key)
    by_location: dict[int, dict[str, list[PIIFindingRow]]] = defaultdict(lambda: defaultdict(list))
    for location, row in findings:
        by_location[location][row.field].append(row)
    keys_at: dict[int, list[PIIFindingRow]] = defaultdict(list)
    for location, row in key_findings or []:
        keys_at[location].append(row)
    engine = AnonymizerEngine()
    entities = {row.entity_type for _, row in findings}
    operators = _operators(entities, mode, table)
    pseudonyms = _operators(entities, "pseudonym", table)
    keep_unique = pseudonym_fields or set()

    def key_hits_for(rows: list[PIIFindingRow]) -> KeyHits:
        def hits(path: str, raw_key: str) -> list[PIIFindingRow]:
            prefix = f"{path}." if path else ""
            matched: dict[tuple[str, int, int], PIIFindingRow] = {}
            for r in rows:
                if (r.field.startswith(prefix) and r.end <= len(raw_key)
                        and key.hmac(r.entity_type, raw_key[r.start:r.end]) == r.value_hmac):
                    matched.setdefault((r.entity_type, r.start, r.end), r)
            return list(matched.values())
        return hits

    def records() -> Iterator[dict[str, Any]]:
        for location, record in located:
            fields = by_location.get(location)
            if fields:
                # Collect first, then write: replacing while walking would shift list/dict iteration.
                edits = []
                renames: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
                for leaf in iter_field_texts(record, columns, exclude_columns or [],
                                             key_hits_for(keys_at.get(location, []))):
                    if leaf.is_key:
                        if any(isinstance(h, PIIFindingRow) and h.action == "redact" for h in leaf.hits):
                            renames.setdefault(id(leaf.container), (leaf.container, {}))[1][leaf.key] = leaf.text
                        continue
                    rows = fields.get(leaf.path)
                    if rows:
                        results = [RecognizerResult(r.entity_type, r.start, r.end, r.score) for r in rows]
                        ops = pseudonyms if leaf.path in keep_unique else operators
                        edits.append((leaf.container, leaf.key,
                                      engine.anonymize(text=leaf.text, analyzer_results=results, operators=ops).text))
                for container, leaf_key, new_text in edits:
                    container[leaf_key] = new_text
                for container, names in renames.values():  # in place, order kept: parents hold these objects
                    items = list(container.items())
                    container.clear()
                    container.update((names.get(k, k), v) for k, v in items)
            yield record

    return records()
