"""The shape every regulatory document shares: sections of labelled fields and tables, each value with its source.

A document is a view of :class:`~govern.report.data.ReportData` (itself built from the lineage DB alone),
so it can be regenerated after the run folder is gone. A field govern cannot know and the run config's
``documentation:`` section does not give has no value and is listed in ``to_be_completed``: a reader
sees what is missing rather than a blank that looks like an answer. The JSON rendering *is*
``Document.model_dump_json()``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

DocumentKind = Literal["gpai-form", "training-summary", "annex-iv"]
DOCUMENT_KINDS: tuple[DocumentKind, ...] = ("gpai-form", "training-summary", "annex-iv")

DISCLAIMER = ("An aid, not legal advice: govern drafted this document from the evidence its lineage DB holds. "
              "It does not establish that any obligation of Regulation (EU) 2024/1689 is met; the provider "
              "remains responsible for its content, and must review and complete it.")

#: The value shown (and counted) for a field nobody has filled.
TO_BE_COMPLETED = "to be completed"

Source = Literal["lineage DB", "run config (documentation)", "govern"]


class DocumentModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentField(DocumentModel):
    key: str = Field(description="Stable dotted id (e.g. model.digest), for tools and tests.")
    label: str
    value: str | None = Field(default=None, description="None: to be completed by the provider.")
    source: Source | None = Field(default=None, description="Where the value comes from (None when absent).")


class DocumentTable(DocumentModel):
    key: str
    title: str
    columns: list[str]
    rows: list[list[str]] = Field(default_factory=list)


class DocumentSection(DocumentModel):
    title: str
    fields: list[DocumentField] = Field(default_factory=list)
    tables: list[DocumentTable] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Document(DocumentModel):
    schema_version: Literal["govern.document/v1"] = "govern.document/v1"
    kind: DocumentKind
    title: str
    basis: str = Field(description="The template or legal text the document follows.")
    disclaimer: str = DISCLAIMER
    run_id: str
    run_name: str
    generated_at: datetime
    generator: str
    db: str
    sections: list[DocumentSection] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented pattern: in the JSON too
    @property
    def to_be_completed(self) -> list[str]:
        """Labels (``section: field``) of every field without a value, in document order."""
        return [f"{s.title}: {f.label}" for s in self.sections for f in s.fields if f.value is None]


class FieldBuilder:
    """Collects a section's fields; ``None``/empty values become "to be completed" entries."""

    def __init__(self, title: str) -> None:
        self.section = DocumentSection(title=title)

    def db(self, key: str, label: str, value: object) -> FieldBuilder:
        return self._add(key, label, value, "lineage DB")

    def config(self, key: str, label: str, value: object) -> FieldBuilder:
        return self._add(key, label, value, "run config (documentation)")

    def add(self, key: str, label: str, value: object, source: Source) -> FieldBuilder:
        return self._add(key, label, value, source)

    def table(self, key: str, title: str, columns: list[str], rows: list[list[str]]) -> FieldBuilder:
        self.section.tables.append(DocumentTable(key=key, title=title, columns=columns, rows=rows))
        return self

    def note(self, text: str) -> FieldBuilder:
        self.section.notes.append(text)
        return self

    def _add(self, key: str, label: str, value: object, source: Source) -> FieldBuilder:
        text = _text(value)
        self.section.fields.append(DocumentField(key=key, label=label, value=text,
                                                 source=source if text is not None else None))
        return self


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        parts = [str(v) for v in value if v not in (None, "")]
        return "; ".join(parts) if parts else None
    text = str(value).strip()
    return text or None
