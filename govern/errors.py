"""Error types of govern.

Every error a user can cause derives from :class:`GovernError`. The CLI turns them into a message and
exit code 2; the pipeline records them as the reason a run failed. Messages must tell the user where the
problem is (file, line/record, field) and what was expected — and must never contain raw PII, keys or
tokens: callers pass locations and types, not values.
"""

from __future__ import annotations

from pathlib import Path


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
