"""The shapes of a policy verdict: one rule's result, a waiver, a decision.

One definition each, used by everyone who holds a verdict: the policy engine produces them, the lineage
store records and returns them (its records add row ids), and the reports render them (the report's JSON
schema derives from these classes). They live here, not in ``govern.policy``, because that package
imports the CEL interpreter (most of a second) and the lineage store and reports must not pay for it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["block", "warn", "info"]
Status = Literal["pass", "fail", "waived", "skipped", "error"]
Decision = Literal["pass", "warn", "block"]


class RuleResult(BaseModel):
    """One policy rule's verdict on one evidence document."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str
    severity: Severity
    status: Status
    message: str = ""
    evidence_path: str | None = None
    observed: Any = None
    threshold: Any = None
    waiver_id: int | None = Field(default=None, description="The waiver that turned a fail into waived.")


class WaiverRef(BaseModel):
    """A waiver as the engine applies it: which rule, for which run or data-set fingerprint, until when."""

    model_config = ConfigDict(extra="forbid")

    id: int
    target: str = Field(description="A run id or a data-set fingerprint.")
    rule_id: str
    by: str
    reason: str
    until: date = Field(description="Valid through that day, inclusive.")
    ended_at: datetime | None = Field(default=None, description="When someone ended it early; it waives "
                                                                "nothing from that day on.")
    ended_by: str | None = None
    end_reason: str | None = None

    def active_on(self, day: date) -> bool:
        """Whether it lets its rule pass on ``day``: through ``until``, and not on or after the day it was ended
        (ending a waiver takes effect at once, for the rest of its last day too)."""
        return day <= self.until and (self.ended_at is None or day < self.ended_at.date())


class PolicyDecision(BaseModel):
    decision: Decision
    results: list[RuleResult] = Field(default_factory=list)

    @property
    def blocking(self) -> list[RuleResult]:
        return [r for r in self.results if r.severity == "block" and r.status in ("fail", "error")]

    @property
    def failed(self) -> list[RuleResult]:
        return [r for r in self.results if r.status in ("fail", "error", "waived")]
