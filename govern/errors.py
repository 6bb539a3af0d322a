"""Error types of govern.

Every error a user can cause derives from :class:`GovernError`. The CLI turns them into a message and
exit code 2; the pipeline records them as the reason a run failed. Messages must tell the user where the
problem is (file, line/record, field) and what was expected — and must never contain raw PII, keys or
tokens: callers pass locations and types, not values.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from govern.decisions import PolicyDecision


class GovernError(Exception):
    """Base class for errors caused by input or environment (exit code 2)."""

    exit_code: int = 2


class ConfigError(GovernError):
    """A run config or policy file is invalid."""

    def __init__(self, file: str | Path, problems: list[str]) -> None:
        self.file = str(file)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{self.file}: invalid configuration\n{lines}")


class PolicyError(ConfigError):
    """A policy file is invalid (schema, CEL syntax, unknown rule)."""


class DataError(GovernError):
    """A data file cannot be read or fails validation.

    ``record`` is the 1-based line for JSONL/CSV and the 0-based row index for Parquet; ``field`` is the
    column. The message never includes cell values (they may be personal data).
    """

    def __init__(
        self,
        file: str | Path,
        message: str,
        *,
        line: int | None = None,
        record: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = str(file)
        self.line = line
        self.record = record
        self.field = field
        self.reason = message
        where = self.file
        if line is not None:
            where += f", line {line}"
        if record is not None:
            where += f", record {record}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class StageError(GovernError):
    """A stage failed for a reason the user can act on (bad model path, impossible DP settings...)."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(f"stage '{stage}': {message}")


class LineageError(GovernError):
    """The lineage database is unreachable, corrupt or inconsistent."""


class RecordIntegrityError(LineageError):
    """The lineage record a command was about to judge or show does not match its hash-chained events.

    Raised instead of deciding on it: a gate that reads an edited row would pass what the record says,
    not what happened (fail closed)."""

    def __init__(self, subject: str, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"the lineage record of {subject} is broken ({len(problems)} problem(s)); nothing was "
                         f"judged:\n{shown}{more}\nRun `govern lineage verify` for the whole DB.")


class NotFoundError(GovernError):
    """A run, dataset or artifact id does not exist in the lineage DB."""


class RunBlocked(GovernError):
    """A policy gate blocked a governed session (exit code 1, as ``govern run`` exits on a block).

    Raised by :func:`govern.session` on entry — before any of the user's training code runs — when a
    pre-training gate (data, PII) blocks, and by ``run.finish`` when the training gate (integrity, DP) or
    a later one blocks. The run is already recorded ``blocked``; ``decision`` is the gate's decision (rule
    results name rules, counts and locations, never record text)."""

    exit_code = 1

    def __init__(self, run_id: str, gate: str, decision: PolicyDecision) -> None:
        self.run_id = run_id
        self.gate = gate
        self.decision = decision
        failed = [r for r in decision.results if r.status in ("fail", "error") and r.severity == "block"]
        lines = "\n".join(f"  - {r.rule_id}: {r.message}" for r in failed[:20])
        super().__init__(f"run {run_id} blocked at the {gate} gate:\n{lines}")


class SessionError(GovernError):
    """A governed session was used out of order (e.g. the block ended without ``run.finish``)."""
