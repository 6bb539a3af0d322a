"""The ``govern`` command line: parse arguments, call :mod:`govern.api`, render with rich. No logic here.

Exit codes everywhere: 0 pass/verified/clean, 1 blocked/failed verification/findings the policy
blocks, 2 error (bad input, missing file, unreachable DB).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from govern.errors import GovernError

app = typer.Typer(
    name="govern",
    help="Governed, auditable fine-tuning: PII, DP training, audits, signing, lineage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
runs_app = typer.Typer(help="List and inspect runs in the lineage DB.", no_args_is_help=True)
policy_app = typer.Typer(help="Lint policies and print their JSON Schema.", no_args_is_help=True)
config_app = typer.Typer(help="Validate run configs.", no_args_is_help=True)
lineage_app = typer.Typer(help="Check the lineage DB's integrity.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit a model trained elsewhere (recorded in the lineage DB).", no_args_is_help=True)
privacy_app = typer.Typer(help="Plan differential-privacy budgets.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage signing keys.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(policy_app, name="policy")
app.add_typer(config_app, name="config")
app.add_typer(lineage_app, name="lineage")
app.add_typer(audit_app, name="audit")
app.add_typer(privacy_app, name="privacy")
app.add_typer(keys_app, name="keys")

console = Console()
err_console = Console(stderr=True)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Lineage DB URL (default: GOVERN_DB_URL or sqlite:///.govern/lineage.db).")
]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="table or json.")]


def emit_json(obj: Any) -> None:
    """Print JSON to stdout without rich markup (scripts parse it)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def exit_with(code: int) -> None:
    raise typer.Exit(code)


class RichStageProgress:
    """Adapts :class:`govern.stage.Progress` to a rich progress bar (records/s, ETA)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def task(self, description: str, total: float | None = None, unit: str = "") -> _RichTask:
        task_id = self._progress.add_task(description, total=total, unit=unit)
        return _RichTask(self._progress, task_id)


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: float = 1) -> None:
        self._progress.advance(self._id, n)

    def close(self) -> None:
        task = self._progress.tasks[self._id] if isinstance(self._id, int) else None
        if task is not None and task.total is None:
            self._progress.update(self._id, total=task.completed)
        self._progress.refresh()


class RateColumn(ProgressColumn):
    """Items per second with the task's unit (records/s, steps/s)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit") or "it"
        return Text("" if speed is None else f"{speed:,.1f} {unit}/s", style="progress.data.speed")


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[RichStageProgress]:
    """Rich progress on stderr (stdout stays clean for --format json)."""
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, disable=not enabled, transient=False) as p:
        yield RichStageProgress(p)


def main() -> None:
    """Console-script entry point: turn govern's own errors into a message and exit code 2."""
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    try:
        app()
    except GovernError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        sys.exit(exc.exit_code)


# ===================================================================================== spine (lead)
# (run, runs, check, report, policy, waive, lineage, config commands are defined below by the lead)

# ============================================================================== pii (issue 3 helper)

# ========================================================================= training (issue 4 helper)

# ========================================================================= fairness (issue 5 helper)

# ======================================================================= membership (issue 6 helper)

# ========================================================================== signing (issue 7 helper)

# =========================================================================== reports (issue 8 helper)


if __name__ == "__main__":  # pragma: no cover
    main()
