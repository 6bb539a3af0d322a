"""The ``govern`` command line: parse arguments, call :mod:`govern.api`, render with rich. No logic here.

Exit codes everywhere: 0 pass/verified/clean, 1 blocked/failed verification/findings the policy
blocks, 2 error (bad input, missing file, unreachable DB).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

import typer
from rich.console import Console
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
from rich.text import Text

from govern.config import ExtractionAuditConfig
from govern.errors import GovernError
from govern.registry_cli import model_app
from govern.ui_cli import ui_command, users_app

#: Exit status of a command whose reader closed the pipe (``govern scan … | head -1``): 128 + SIGPIPE, what a
#: shell reports for a process killed by it, so `set -o pipefail` sees a broken pipe, not a policy block (1).
BROKEN_PIPE_EXIT = 128 + int(getattr(signal, "SIGPIPE", 13))


def _exit_broken_pipe() -> None:
    """The reader is gone: point stdout at /dev/null (so the interpreter's last flush cannot raise again,
    see the Python docs' "Note on SIGPIPE") and exit with the pipe's status, without a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed or not a real file
        pass
    raise SystemExit(BROKEN_PIPE_EXIT)


class _GovernGroup(typer.core.TyperGroup):
    """Catches a broken pipe before click does: click and typer turn it into exit 1, a policy block."""

    def invoke(self, ctx: Any) -> Any:  # typer.core passes its own vendored click Context
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _exit_broken_pipe()


app = typer.Typer(
    name="govern",
    help="Governed, auditable fine-tuning: PII, DP training, audits, signing, lineage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=_GovernGroup,
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
app.add_typer(model_app, name="model")
app.add_typer(users_app, name="users")
app.command("ui")(ui_command)
export_app = typer.Typer(help="Export a run's evidence for other tools (AI bill of materials).", no_args_is_help=True)
app.add_typer(export_app, name="export")

class _GovernConsole(Console):
    def on_broken_pipe(self) -> None:
        # rich's default exits 1, which reads as "blocked by the policy".
        self.quiet = True
        _exit_broken_pipe()


def _console(stderr: bool = False) -> Console:
    # Piped output (CI logs) gets 120 columns instead of rich's 80, so rule ids and findings stay on one line;
    # COLUMNS, when set, wins (COLUMNS=80 gives tables that fold to 80 columns).
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal or os.environ.get("COLUMNS") else 120
    return _GovernConsole(stderr=stderr, width=width)


console = _console()
err_console = _console(stderr=True)
#: The final verdict (decision, ok/BROKEN) and errors: printed even under -q, which silences the rest.
verdict_console = _console()
error_console = _console(stderr=True)

DbOption = Annotated[
    str | None, typer.Option("--db", help="Lineage DB URL (default: GOVERN_DB_URL or sqlite:///.govern/lineage.db).")
]
RunIdArgument = Annotated[str, typer.Argument(help="Run id or 'latest'.")]
#: What the commands that write a file from the lineage DB (report, docs, export bom) share.
OutFolderOption = Annotated[Path, typer.Option("--out", help="Output folder (-: write the file to stdout).")]
SignKeyOption = Annotated[Path | None, typer.Option(
    "--sign-key", help="Sign the file written with this ECDSA private key (PEM).")]
FormatOption = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")]


def _is_stdout(path: Path | None) -> bool:
    """``--out -`` means standard output, as everywhere on the command line."""
    return path is not None and str(path) == "-"


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
        from rich.markup import escape

        error_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        _exit_broken_pipe()


# ------------------------------------------------------------------ runs, checks, policies, lineage

STATUS_STYLE = {"pass": "green", "completed": "green", "reused": "cyan", "warn": "yellow", "waived": "yellow",
                "skipped": "dim", "info": "blue", "fail": "red", "error": "red", "block": "bold red",
                "blocked": "bold red", "failed": "bold red", "running": "yellow", "interrupted": "magenta"}


def _styled(value: str | None) -> str:
    if value is None:
        return "-"
    return f"[{STATUS_STYLE.get(value.split('/')[0], 'white')}]{value}[/]"


def results_table(results: list[dict[str, Any]], title: str, *, show_passed: bool = True) -> Any:
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    table.add_column("rule")
    table.add_column("severity")
    table.add_column("status")
    table.add_column("finding")
    order = {"error": 0, "fail": 1, "waived": 2, "pass": 3, "skipped": 4}
    for r in sorted(results, key=lambda r: (order.get(r["status"], 9), r["rule_id"])):
        if not show_passed and r["status"] in ("pass", "skipped"):
            continue
        table.add_row(r["rule_id"], r["severity"], _styled(r["status"]), r["message"])
    return table


class ConsoleListener:
    """Prints one line per stage as the run goes (stderr, so --format json keeps stdout clean)."""

    def run_started(self, run_id: str, resumed: bool) -> None:
        err_console.print(f"[bold]{'resuming' if resumed else 'run'}[/] {run_id}")

    def stage_started(self, name: str) -> None:
        err_console.print(f"  [bold]▶ {name}[/]")

    def stage_finished(self, name: str, status: str, seconds: float, note: str = "") -> None:
        extra = f" — {note}" if note else ""
        err_console.print(f"  {_styled(status)} {name} ({seconds:.1f}s){extra}", highlight=False)

    def gate(self, name: str, decision: Any) -> None:
        failed = [r for r in decision.results if r.status in ("fail", "error", "waived")]
        for r in failed:
            err_console.print(f"    {_styled(r.status)} {r.rule_id} [{r.severity}]: {r.message}", highlight=False)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("govern")
        except PackageNotFoundError:  # running from a checkout that was never installed
            number = "0+unknown"
        sys.stdout.write(f"govern {number}\n")
        raise typer.Exit(0)


@app.callback()
def global_options(
    actor: Annotated[str | None, typer.Option(
        "--actor", envvar="GOVERN_ACTOR",
        help="Who is acting, recorded on every audit event (default: the CI identity, else user@host).")] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print only errors and the final verdict (exit codes are unchanged).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging of govern to stderr.")] = False,
    _version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """Governed, auditable fine-tuning: PII, DP training, audits, signing, lineage."""
    if quiet and verbose:
        raise typer.BadParameter("give --quiet or --verbose, not both", param_hint="-q/-v")
    # Set (not only switched on) every time: the API and tests may call the app more than once per process.
    console.quiet = err_console.quiet = quiet
    logger = logging.getLogger("govern")
    for old in [h for h in logger.handlers if getattr(h, "govern_verbose", False)]:
        logger.removeHandler(old)
    logger.setLevel(logging.DEBUG if verbose else logging.NOTSET)
    if verbose:
        # Only govern's own loggers: third-party debug output (a PII analyzer's) could carry record text.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.govern_verbose = True  # type: ignore[attr-defined]  # a marker attribute on our own handler
        logger.addHandler(handler)
        logger.debug("govern %s", " ".join(sys.argv[1:]))
    if actor is not None:
        if not actor.strip():
            raise GovernError("--actor must name someone")
        # Read by govern.actor.current_actor wherever a lineage store is opened (also in worker processes).
        os.environ["GOVERN_ACTOR"] = actor.strip()


@app.command("run")
def run_command(
    config: Annotated[Path | None, typer.Argument(help="Run config (govern.yaml).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Resume RUN_ID (or 'latest') after a crash.")] = None,
    db: DbOption = None,
    output_format: FormatOption = "table",
) -> None:
    """Run a governed fine-tune: data → PII → DP training → audits → signing, gated by the policy.

    Exit code 0 when the policy passes (or warns), 1 when it blocks, 2 on error (the run is recorded as failed).
    """
    from govern import api
    from govern.training.distributed import is_worker, worker_main

    if is_worker():  # under torchrun, ranks > 0 only train (rank 0 governs and records the run)
        exit_with(worker_main())
    if config is None and resume is None:
        raise GovernError("give a config file, or --resume RUN_ID")
    with progress_bars(enabled=output_format != "json") as bars:
        outcome = api.run(config or Path("."), db_url=db, resume=resume, progress=bars,
                          listener=ConsoleListener() if output_format != "json" else None)
    if output_format == "json":
        emit_json({"run_id": outcome.run_id, "status": outcome.status, "decision": outcome.decision,
                   "stages": [s.__dict__ for s in outcome.stages], "results": outcome.results,
                   "run_dir": outcome.run_dir, "error": outcome.error})
    else:
        console.print(results_table(outcome.results, f"Policy decision for {outcome.run_id}"))
        verdict_console.print(f"decision: {_styled(outcome.decision)}   status: {_styled(outcome.status)}   "
                              f"run dir: {outcome.run_dir}")
        console.print(f"report:   govern report {outcome.run_id} --format html", highlight=False)
    exit_with(1 if outcome.status == "blocked" else 0 if outcome.status == "completed" else 2)


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="How many (newest first).")] = 20,
    status: Annotated[Literal["running", "completed", "blocked", "failed"] | None, typer.Option(
        help="Only runs with this status.")] = None,
    kind: Annotated[Literal["run", "scan", "audit-fairness", "audit-membership", "sign", "verify"] | None,
                    typer.Option(help="Only runs of this kind.")] = None,
    db: DbOption = None,
    output_format: FormatOption = "table",
) -> None:
    """List recorded runs, newest first."""
    from rich.table import Table

    from govern import api

    runs = api.list_runs(db_url=db, limit=limit, status=status, kind=kind)
    shown = {r.id: api.shown_status(r) for r in runs}
    if output_format == "json":
        emit_json([{**r.model_dump(mode="json", exclude={"policy_document", "config", "versions"}),
                    "shown_status": shown[r.id]} for r in runs])
        return
    if console.width < 100:
        # An 80-column terminal: seven boxed columns would squeeze every cell to "st…". Fewer, borderless
        # columns keep the run id whole and the status readable; the name and policy fold into one cell.
        from rich import box

        narrow = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for col in ("run id", "status/decision", "kind", "started", "name, policy"):
            narrow.add_column(col, no_wrap=col in ("run id", "status/decision", "started"), overflow="fold")
        for r in runs:
            narrow.add_row(r.id, f"{_styled(shown[r.id])}/{_styled(r.decision)}", r.kind,
                           r.started_at.strftime("%m-%d %H:%M"),
                           f"{r.name}, {r.policy_name or '-'} {r.policy_version or ''}".strip())
        console.print(narrow)
        return
    table = Table(header_style="bold")
    for col in ("run id", "name", "kind", "status", "decision", "policy", "started"):
        table.add_column(col, no_wrap=col in ("run id", "started"))
    for r in runs:
        table.add_row(r.id, r.name, r.kind, _styled(shown[r.id]), _styled(r.decision),
                      f"{r.policy_name or '-'} {r.policy_version or ''}", r.started_at.strftime("%Y-%m-%d %H:%M:%S"))
    console.print(table)


@runs_app.command("show")
def runs_show(
    run_id: RunIdArgument,
    db: DbOption = None,
    output_format: FormatOption = "table",
) -> None:
    """Show one run: stages, artifacts with digests, the latest decision and its findings."""
    from rich.table import Table

    from govern import api

    details = api.show_run(run_id, db_url=db)
    if output_format == "json":
        emit_json(details.to_json())
        return
    r = details.run
    latest = details.decision  # the header states the same (latest) decision and policy as the table below
    shown = api.shown_status(r)
    if shown != r.status:  # killed: the DB still says running, and --resume continues it
        console.print(f"[magenta]interrupted[/]: no process executes {r.id} any more; `govern run --resume {r.id}` "
                      "continues it", highlight=False)
    console.print(f"[bold]{r.id}[/]  {r.name}  kind={r.kind}  status={_styled(shown)}  "
                  f"decision={_styled(latest.decision if latest else r.decision)}"
                  + (f"  ({latest.kind}, {latest.created_at:%Y-%m-%d %H:%M})" if latest else ""))
    if latest:
        console.print(f"policy {latest.policy_name} {latest.policy_version} {latest.policy_digest}", highlight=False)
    if not latest or (latest.decision, latest.policy_digest) != (r.decision, r.policy_digest):
        console.print(f"{'at run time: decision=' + str(r.decision) + ', ' if latest else ''}run policy "
                      f"{r.policy_name} {r.policy_version} {r.policy_digest}", highlight=False)
    console.print(f"config {r.config_path} {r.config_digest}\nrun dir {r.run_dir}", highlight=False)
    if r.error:
        console.print(f"[red]error:[/] {r.error}", highlight=False)
    stages = Table(title="stages", header_style="bold")
    for col in ("stage", "status", "started", "seconds", "input digest"):
        stages.add_column(col)
    for s in details.stages:
        secs = (s.ended_at - s.started_at).total_seconds() if s.ended_at else None
        stages.add_row(s.stage, _styled(s.status), s.started_at.strftime("%H:%M:%S"),
                       f"{secs:.1f}" if secs is not None else "-", (s.input_digest or "")[:23])
    console.print(stages)
    if details.artifacts:
        arts = Table(title="artifacts", header_style="bold")
        for col in ("name", "kind", "role", "sha256", "path"):
            arts.add_column(col)
        for a in details.artifacts:
            arts.add_row(a["name"], a["kind"], a["role"], a["sha256"][:16], a["path"])
        console.print(arts)
    if details.ancestry is not None:
        g = details.ancestry
        base = f"{g.base_model.name} {g.base_model.digest}" if g.base_model else "not recorded"
        console.print(f"[bold]model ancestry[/] {g.artifact.name} sha256 {g.artifact.sha256[:16]}…: base model {base}; "
                      f"data sets {', '.join(d.fingerprint[:19] + '…' for d in g.datasets) or 'none'}; "
                      f"parent runs {', '.join(p.id for p in g.parents) or 'none'}; "
                      f"signatures {len(g.signatures)}", highlight=False)
    if details.decision:
        console.print(results_table([f.model_dump(mode="json") for f in details.decision.results],
                                    f"{details.decision.kind} decision: {details.decision.decision}"))
    for w in details.waivers:
        console.print(f"waiver #{w['id']} {w['rule_id']} by {w['by']} until {w['until']}: {w['reason']}")


@app.command("check")
def check_command(
    run_id: RunIdArgument,
    policy: Annotated[str | None, typer.Option("--policy", help="Policy file or shipped name (default: the run's own).")] = None,
    db: DbOption = None,
    output_format: FormatOption = "table",
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one test case per rule).")] = None,
    summary: Annotated[Path | None, typer.Option("--summary", help="Append a Markdown summary (e.g. $GITHUB_STEP_SUMMARY).")] = None,
) -> None:
    """Re-evaluate a run's recorded evidence under its policy or a newer one. Exit 0 pass, 1 blocked, 2 error."""
    from govern import api

    try:
        outcome = api.check(run_id, policy=policy, db_url=db)
    except GovernError as exc:
        # The CI test report and job summary must say why the gate failed, not just go missing.
        _write_check_outputs(junit, summary, [], {"run_id": run_id, "decision": "block", "check_error": str(exc)})
        raise
    results = [r.model_dump(mode="json") for r in outcome.decision.results]
    meta = {"run_id": outcome.run_id, "run_status": outcome.run_status, "decision": outcome.decision.decision,
            "policy": {"name": outcome.policy.name, "version": outcome.policy.version, "digest": outcome.policy.digest},
            "run_error": outcome.run_error}
    _write_check_outputs(junit, summary, results, meta)
    if output_format == "json":
        emit_json({**meta, "results": results})
    else:
        console.print(results_table(results, f"govern check {outcome.run_id} under {outcome.policy.name} "
                                             f"{outcome.policy.version}"))
        note = "" if outcome.run_status == "completed" else f" (run status: {outcome.run_status})"
        verdict_console.print(f"decision: {_styled(outcome.decision.decision)}{note}")
    exit_with(outcome.exit_code)


def _write_check_outputs(junit: Path | None, summary: Path | None, results: list[dict[str, Any]],
                         meta: dict[str, Any]) -> None:
    if junit is None and summary is None:
        return
    from govern.report import ci as ci_outputs

    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text(ci_outputs.to_junit(results, meta))
    if summary is not None:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(ci_outputs.to_markdown_summary(results, meta))


@policy_app.command("lint")
def policy_lint(files: Annotated[list[str], typer.Argument(help="Policy files or shipped names.")]) -> None:
    """Validate policies (schema, CEL syntax) and list advisories. Exit 2 on the first invalid file."""
    from govern.policy import lint_policy

    for f in files:
        loaded, notes = lint_policy(f)
        verdict_console.print(f"[green]ok[/] {loaded.path}: {loaded.name} {loaded.version} {loaded.digest}",
                              highlight=False)
        for n in notes:
            console.print(f"  [yellow]note:[/] {n}", highlight=False)


@policy_app.command("schema")
def policy_schema(
    evidence: Annotated[bool, typer.Option(
        "--evidence", help="Print the schema of the evidence document CEL rules read as `evidence` instead.")] = False,
) -> None:
    """Print the policy JSON Schema (for editor validation of policies/*.yaml), or with --evidence the
    evidence document's (every path a custom rule can name)."""
    from govern.policy import policy_json_schema
    from govern.policy.paths import evidence_json_schema

    emit_json(evidence_json_schema() if evidence else policy_json_schema())


@policy_app.command("test")
def policy_test(
    policy: Annotated[str, typer.Argument(help="Policy file or shipped name.")],
    evidence: Annotated[Path, typer.Argument(help="Evidence document (JSON), e.g. a fixture of the case to test.")],
    expect: Annotated[Literal["pass", "warn", "block"] | None, typer.Option(
        "--expect", help="Assert this decision: exit 0 when it is the decision, 1 when not.")] = None,
    output_format: FormatOption = "table",
) -> None:
    """Unit-test a policy: evaluate it on an evidence document (the final decision) and print every result.

    Exit 0 pass or warn, 1 block (with --expect: 0 when the decision is the expected one, else 1), 2 on a
    policy or evidence document that is not valid."""
    from govern import api

    outcome = api.policy_test(policy, evidence)
    results = [r.model_dump(mode="json") for r in outcome.decision.results]
    decision = outcome.decision.decision
    if output_format == "json":
        emit_json({"policy": {"name": outcome.policy.name, "version": outcome.policy.version,
                              "digest": outcome.policy.digest},
                   "evidence": str(evidence), "decision": decision, "expected": expect, "results": results})
    else:
        console.print(results_table(results, f"{outcome.policy.name} {outcome.policy.version} on {evidence.name}"))
        line = f"decision: {_styled(decision)}"
        if expect is not None:
            line += "   expected: " + _styled(expect) + ("  [green]✓[/]" if decision == expect else "  [red]✗[/]")
        verdict_console.print(line, highlight=False)
    if expect is not None:
        exit_with(0 if decision == expect else 1)
    exit_with(1 if decision == "block" else 0)


@config_app.command("validate")
def config_validate(file: Annotated[Path, typer.Argument(help="Run config (govern.yaml).")]) -> None:
    """Validate a run config and the policy it names."""
    from rich.markup import escape

    from govern import api

    config, policy = api.validate_config(file)
    checks = api.check_config(file, config, policy)
    for warning in checks.warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    if checks.errors:
        from govern.errors import ConfigError

        raise ConfigError(file, checks.errors)
    verdict_console.print(f"[green]ok[/] {file}: task {config.task}, policy {policy.name} {policy.version} "
                          f"({policy.path}), config digest {config.digest()}"
                          + (f", {len(checks.warnings)} warning(s)" if checks.warnings else ""), highlight=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the run-config JSON Schema."""
    from govern.config import RunConfig

    emit_json(RunConfig.model_json_schema())


@app.command("waive")
def waive_command(
    target: Annotated[str, typer.Argument(help="Run id, 'latest', or a data-set fingerprint (sha256:...).")],
    rule: Annotated[str, typer.Argument(help="Rule id, e.g. fairness.min_ratio.demographic_parity_ratio.")],
    by: Annotated[str, typer.Option("--by", help="Who takes responsibility.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the block is acceptable.")],
    until: Annotated[str, typer.Option("--until", help="Expiry date, YYYY-MM-DD.")],
    policy: Annotated[str | None, typer.Option(
        "--policy", help="Also accept the custom rules of this policy (file or shipped name).")] = None,
    db: DbOption = None,
) -> None:
    """Record a waiver: the only way past a block. It is shown wherever the rule is.

    RULE must be a rule some policy produces (a built-in rule, or a custom rule of the run's policy or of
    --policy): a misspelt id would waive nothing."""
    from datetime import date

    from govern import api

    try:
        until_date = date.fromisoformat(until)
    except ValueError:
        raise GovernError(f"--until '{until}' is not a date (YYYY-MM-DD)") from None
    waiver = api.waive(target, rule, by=by, reason=reason, until=until_date, db_url=db, policy=policy)
    verdict_console.print(f"waiver #{waiver.id} recorded: {waiver.rule_id} for {waiver.target} until "
                          f"{until_date.isoformat()}", highlight=False)


@app.command("end-waiver")
def end_waiver_command(
    waiver_id: Annotated[int, typer.Argument(help="The waiver's number (#N in reports and `govern runs show`).")],
    by: Annotated[str, typer.Option("--by", help="Who ends it.")],
    reason: Annotated[str, typer.Option("--reason", help="Why it no longer applies.")],
    db: DbOption = None,
) -> None:
    """End a waiver before it expires: from today on, the rule it waived blocks again."""
    from govern import api

    ended = api.end_waiver(waiver_id, by=by, reason=reason, db_url=db)
    verdict_console.print(f"waiver #{ended.id} ({ended.rule_id} for {ended.target}) ended by {by}", highlight=False)


@lineage_app.command("verify")
def lineage_verify_command(
    db: DbOption = None,
    output_format: FormatOption = "table",
    witness: Annotated[list[str] | None, typer.Option(
        "--witness", help="Witness statement file, folder of them, or second lineage DB URL: prove the DB still "
                          "extends every witnessed chain head (catches deleted tails and re-hashed chains).")] = None,
    witness_key: Annotated[Path | None, typer.Option(
        "--witness-key", help="Public key (PEM) that signed the witnesses: their signatures are checked.")] = None,
) -> None:
    """Check the audit log and every recorded row: any edited, inserted or deleted row is named. Exit 1 if broken."""
    from govern import api

    report = api.lineage_verify(db_url=db, witnesses=list(witness or []), witness_key=witness_key)
    if output_format == "json":
        emit_json(report.model_dump(mode="json"))
        exit_with(0 if report.ok else 1)
    witnessed = f", {report.witnesses} witness statement(s) extended" if witness else ""
    if report.ok:
        verdict_console.print(f"[green]ok[/] audit log intact: {report.events} events, hash chain verified, every "
                              f"recorded row matches its event{witnessed}", highlight=False)
        if not witness:
            console.print("  (without --witness, a deleted tail or a re-hashed chain cannot be detected)",
                          highlight=False)
    else:
        verdict_console.print(f"[bold red]BROKEN[/] audit log: {len(report.problems)} problem(s) in {report.events} "
                              "events")
        for p in report.problems:
            console.print(f"  - {p}", highlight=False, markup=False, soft_wrap=True)
    for n in report.notes:
        console.print(f"  note: {n}", highlight=False, markup=False, soft_wrap=True)
    exit_with(0 if report.ok else 1)

# --------------------------------------------------------------------------------------------- pii

@app.command("scan")
def scan_command(
    paths: Annotated[list[Path], typer.Argument(help="JSONL, CSV or Parquet files to scan.")],
    policy: Annotated[str, typer.Option("--policy", "-p", help="Policy file or shipped policy name.")] = "default",
    engine: Annotated[Literal["patterns", "spacy"] | None, typer.Option(
        "--engine", help="patterns or spacy (default: the policy's).")] = None,
    output_format: Annotated[Literal["table", "json", "sarif"], typer.Option(
        "--format", "-f", help="table, json or sarif.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report here instead of stdout (-: stdout).")] = None,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Scanner processes (default: all cores).")] = None,
    max_record_bytes: Annotated[int | None, typer.Option(
        "--max-record-bytes", min=1, help="Largest record (JSONL line, CSV record, Parquet row) in bytes; "
        "a larger one is an error (default 1 MiB).")] = None,
    db: DbOption = None,
    no_record: Annotated[bool, typer.Option(
        "--no-record", help="Record nothing: no lineage DB, no key file (pre-commit hooks, quick checks).")] = False,
    fingerprint_key_file: Annotated[Path | None, typer.Option(
        "--fingerprint-key-file", help="Key (hex, mode 0600) for SARIF fingerprints that stay stable across "
        "lineage DBs (default: $GOVERN_SARIF_KEY).")] = None,
    ray: Annotated[bool, typer.Option("--ray", help="Scan on a Ray cluster (the govern[ray] extra); "
                                      "--workers is then the number of scanner actors.")] = False,
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", help="Ray cluster for --ray (ray://head:10001, auto; default $RAY_ADDRESS, "
        "else a Ray instance started on this machine).")] = None,
    quality: Annotated[Path | None, typer.Option(
        "--quality", help="Labeled sample (JSONL text+spans, or presidio-research JSON): print precision, recall "
        "and F2 per entity with 95% intervals (overrides the policy's pii.quality.sample).")] = None,
) -> None:
    """Scan data files (a folder: every data file under it) for personal data (the pre-merge gate).
    Exit 0 clean, 1 findings the policy blocks, 2 error. Findings hold types, locations and keyed
    hashes — never the values."""
    from govern.pii import report_json, to_sarif
    from govern.pii.keys import load_fingerprint_key
    from govern.pii.report import locations_table, quality_table, summary_table

    if output_format not in ("table", "json", "sarif"):
        raise GovernError(f"--format must be table, json or sarif, not '{output_format}'")
    if engine is not None and engine not in ("patterns", "spacy"):
        raise GovernError(f"--engine must be patterns or spacy, not '{engine}'")
    fingerprint_key = load_fingerprint_key(fingerprint_key_file)
    if _is_stdout(out):
        out = None
    with progress_bars(enabled=err_console.is_terminal) as progress:
        report = _scan_report(paths, policy, engine, progress, workers, db, max_record_bytes,
                              record=not no_record, fingerprint_key=fingerprint_key,
                              ray_address=_ray_target(ray, ray_address), quality_sample=quality)
    if output_format == "table":
        if out is not None:
            with open(out, "w", encoding="utf-8") as fh:
                file_console = Console(file=fh, width=160)
                file_console.print(summary_table(report))
                file_console.print(locations_table(report))
                file_console.print(quality_table(report))
        else:
            if report.findings:
                console.print(summary_table(report))
                console.print(locations_table(report))
            else:  # an empty table reads like a failure to scan
                console.print("[green]no personal data found[/]")
            ev = report.evidence
            console.print(f"{ev.records_scanned:,} of {ev.records_total:,} records scanned, "
                          f"{ev.records_affected:,} with findings, {ev.duration_s:.1f} s "
                          f"({ev.workers} process{'es' if ev.workers > 1 else ''}); hash key id {report.key_id}")
            console.print(quality_table(report))
    else:
        document = report_json(report) if output_format == "json" else to_sarif(report)
        if out is not None:
            out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        else:
            emit_json(document)
    if report.blocked:
        blocked = ", ".join(f"{e} ({n})" for e, n in report.evidence.blocked.items())
        error_console.print(f"[bold red]blocked:[/] the policy blocks {blocked}")
        exit_with(1)


def _scan_report(paths: list[Path], policy_ref: str, engine: str | None, progress: Any, workers: int | None,
                 db: str | None, max_record_bytes: int | None = None, *, record: bool = True,
                 fingerprint_key: Any = None, ray_address: str | None = None,
                 quality_sample: Path | None = None) -> Any:
    """The scan, recorded in the lineage DB as a run of kind ``scan`` (unless ``record`` is false)."""
    from govern import api

    run_id, report = api.scan(paths, policy=policy_ref, engine=engine, progress=progress, workers=workers, db_url=db,
                              max_record_bytes=max_record_bytes, record=record, fingerprint_key=fingerprint_key,
                              ray_address=ray_address, quality_sample=quality_sample)
    if run_id is not None:
        err_console.print(f"recorded as {run_id}", highlight=False)
    return report


def _ray_target(ray: bool, address: str | None) -> str | None:
    """The Ray address for ``--ray``/``--ray-address`` (None: the local process pool)."""
    if not ray and address is None:
        return None
    from govern.pii.ray_backend import import_ray, ray_address

    import_ray()  # without the extra: a clear message naming it, before any file or DB work
    return ray_address(address)


# ---------------------------------------------------------------------------------------- training

@privacy_app.command("plan")
def privacy_plan_command(
    sample_rate: Annotated[float | None, typer.Option("--sample-rate", "-q", help="Poisson sample rate q.")] = None,
    dataset_size: Annotated[int | None, typer.Option("--dataset-size", "-n", help="Training records n.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", "-b", help="Expected (global) batch size.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Epochs (steps = epochs · ⌊1/q⌋).")] = None,
    delta: Annotated[float | None, typer.Option("--delta", help="δ (default 1/(10·n) with --dataset-size).")] = None,
    noise_multiplier: Annotated[float | None, typer.Option("--noise-multiplier", "--sigma", help="σ: print ε.")] = None,
    target_epsilon: Annotated[float | None, typer.Option("--target-epsilon", "--epsilon", help="ε: print σ.")] = None,
    policy: Annotated[str, typer.Option("--policy", help="Policy file or shipped name whose max_delta caps the "
                                        "default δ, as in a run (default: default).")] = "default",
    output_format: FormatOption = "table",
) -> None:
    """Plan a DP-SGD budget: ε for a given σ, or σ for a target ε, under RDP, PRV (Opacus) and
    dp-accounting's RDP and PLD — the same accountants the training stage records."""
    from rich.table import Table

    from govern.policy import load_policy
    from govern.training.accounting import plan

    if output_format not in ("table", "json"):
        raise GovernError(f"--format must be table or json, not '{output_format}'")
    loaded = load_policy(policy)
    result = plan(sample_rate=sample_rate, dataset_size=dataset_size, batch_size=batch_size, steps=steps,
                  epochs=epochs, delta=delta, noise_multiplier_value=noise_multiplier, target_epsilon=target_epsilon,
                  max_delta=loaded.policy.privacy.max_delta, policy=f"{loaded.name} {loaded.version}")
    if output_format == "json":
        emit_json(result.model_dump(mode="json"))
        return
    given = (f"σ = {result.noise_multiplier:g}" if result.given == "noise_multiplier"
             else f"target ε = {result.target_epsilon:g}")
    table = Table(title=f"DP-SGD plan: q = {result.sample_rate:.5g}, {result.steps:,} steps, δ = {result.delta:.3g}, "
                        f"{given}")
    table.add_column("accountant")
    table.add_column("ε", justify="right")
    table.add_column("σ (noise multiplier)", justify="right")
    for row in result.rows:
        table.add_row(row.accountant, f"{row.epsilon:.4f}", f"{row.noise_multiplier:.4f}")
    console.print(table)
    console.print(f"δ = {result.delta:.3g}: {result.delta_source}"
                  + (f" (policy {result.policy})" if result.policy else ""), markup=False, highlight=False)

# ---------------------------------------------------------------------------------------- fairness
def _fairness_tables(evidence: Any) -> list[Any]:
    """Disparities, then per-group metrics (binary: every rate; one-vs-rest: n and accuracy)."""
    from rich.table import Table

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    def ci(low: float | None, high: float | None) -> str:
        return "" if low is None or high is None else f"[{low:.3f}, {high:.3f}]"

    level = f"{evidence.ci_level:.0%} CI"
    boot = f", {evidence.bootstrap} bootstrap resamples" if evidence.bootstrap else ", no CIs"
    disparities = Table(title=f"Disparities ({evidence.mode}{boot}; groups < {evidence.min_group_size} rows "
                        "excluded)", header_style="bold")
    for col in ("attribute", "metric", "value", level, "class", "lowest → highest", "groups"):
        disparities.add_column(col, no_wrap=col in ("metric", "value", level))
    for d in evidence.disparities:
        span = f"{d.min_group} → {d.max_group}" if d.min_group and d.max_group else (d.min_group or d.max_group or "")
        disparities.add_row(d.attribute, d.metric, num(d.value), ci(d.ci_low, d.ci_high), d.positive_label or "",
                            span, str(d.groups_compared))
    groups = Table(title="Groups", header_style="bold")
    shown = ["accuracy"] if evidence.mode == "one_vs_rest" else (
        ["loss", "perplexity"] if evidence.mode == "perplexity" else
        ["accuracy", "selection_rate", "true_positive_rate", "false_positive_rate"])
    for col in ("attribute", "group", "n", *shown, "note"):
        groups.add_column(col)
    for g in evidence.groups:
        cells = [f"{num(g.metrics[m].value)} {ci(g.metrics[m].ci_low, g.metrics[m].ci_high)}".strip()
                 if m in g.metrics else "-" for m in shown]
        groups.add_row(g.attribute, g.group, str(g.n), *cells, "insufficient data" if g.insufficient_data else "")
    return [disparities, groups]


def _split_columns(values: list[str]) -> list[str]:
    return [c.strip() for v in values for c in v.split(",") if c.strip()]


@audit_app.command("fairness")
def audit_fairness_command(
    predictions: Annotated[Path, typer.Option("--predictions", help="CSV, JSONL or Parquet file of predictions.")],
    label: Annotated[str, typer.Option("--label", help="Column with the true label.")],
    pred: Annotated[str, typer.Option("--pred", help="Column with the predicted label.")],
    sensitive: Annotated[list[str], typer.Option(
        "--sensitive", help="Sensitive column; repeat the option or separate with commas.")],
    policy: Annotated[str | None, typer.Option("--policy", help="Policy file or shipped name (default: default).")] = None,
    positive_label: Annotated[str | None, typer.Option(
        "--positive-label", help="The favourable class. Default: 1 for 0/1 labels, else every class one-vs-rest.")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for CIs (0: none).")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    intersections: Annotated[bool, typer.Option(
        "--intersections/--no-intersections", help="Also audit combinations of sensitive columns.")] = True,
    max_intersection_size: Annotated[int, typer.Option(
        "--max-intersection-size", min=2, help="Largest combination of sensitive columns audited.")] = 2,
    db: DbOption = None,
    output_format: FormatOption = "table",
) -> None:
    """Fairness of a model trained elsewhere: per-group metrics and disparities (Fairlearn), bootstrap CIs.

    Exit code 0 when the policy passes (or warns), 1 when it blocks, 2 on error.
    """
    from govern import api

    columns = _split_columns(sensitive)
    outcome = api.audit_fairness_recorded(predictions=predictions, label=label, pred=pred, sensitive=columns,
                                          policy=policy, positive_label=positive_label, bootstrap=bootstrap,
                                          seed=seed, intersections=intersections,
                                          max_intersection_size=max_intersection_size, db_url=db)
    evidence, decision, results, run_id = outcome.evidence, outcome.decision, outcome.results, outcome.run_id
    if output_format == "json":
        emit_json({"run_id": run_id, "decision": decision, "results": results,
                   "evidence": evidence.model_dump(mode="json")})
    else:
        for table in _fairness_tables(evidence):
            console.print(table)
        if evidence.insufficient_groups:
            console.print(f"insufficient data (< {evidence.min_group_size} rows, not gated): "
                          + ", ".join(evidence.insufficient_groups[:20]), highlight=False)
        if results:
            console.print(results_table(results, "Policy decision"))
        if decision is not None:
            console.print(f"decision: {_styled(decision)}" + (f"   run: {run_id}" if run_id else ""))
    exit_with(1 if decision == "block" else 0)


# -------------------------------------------------------------------------------------- membership
def _membership_table(evidence: Any) -> Any:
    """One row per attack: AUC with its CI, then TPR at each FPR budget (* = not resolvable by the sample)."""
    from rich.table import Table

    fprs = sorted({p.fpr for a in evidence.attacks for p in a.tpr_at_fpr})
    table = Table(title=f"Membership inference ({evidence.n_members} members vs {evidence.n_nonmembers} non-members)",
                  header_style="bold")
    for col in ("attack", "AUC", "95% CI", *[f"TPR@{f:.2%} FPR" for f in fprs]):
        table.add_column(col, no_wrap=True)
    for a in evidence.attacks:
        ci = "" if a.auc_ci_low is None else f"[{a.auc_ci_low:.3f}, {a.auc_ci_high:.3f}]"
        cells = []
        for f in fprs:
            point = next((p for p in a.tpr_at_fpr if p.fpr == f), None)
            cells.append("-" if point is None else f"{point.tpr:.3f}{'' if point.resolvable else '*'}")
        table.add_row(a.name, f"{a.auc:.3f}", ci, *cells)
    return table


def _extraction_table(extraction: Any) -> Any:
    """Members against non-members: prompted, reproduced exactly (with its CI), mean share reproduced."""
    from rich.table import Table

    table = Table(title=f"Verbatim extraction (first {extraction.prefix_tokens} tokens in, next "
                        f"{extraction.suffix_tokens} compared)", header_style="bold")
    for col in ("records", "prompted", "exact", "95% CI", "mean share reproduced"):
        table.add_column(col, no_wrap=True)
    for label, side in (("members", extraction.members), ("non-members", extraction.nonmembers)):
        ci = "-" if side.ci_low is None else f"[{side.ci_low:.3f}, {side.ci_high:.3f}]"
        table.add_row(label, str(side.records), f"{side.exact_matches} ({side.exact_match_rate:.1%})", ci,
                      f"{side.mean_prefix_match:.1%}")
    return table


@audit_app.command("membership")
def audit_membership_command(
    model: Annotated[Path, typer.Option("--model", help="Fine-tuned model folder (full weights or a LoRA adapter).")],
    members: Annotated[Path, typer.Option("--members", help="Records the model was trained on (JSONL/CSV/Parquet).")],
    nonmembers: Annotated[Path, typer.Option(
        "--nonmembers", help="Held-out records of the same distribution, never trained on.")],
    base: Annotated[Path | None, typer.Option(
        "--base", help="The pre-fine-tune base model folder (needed for adapters and the reference attack).")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Policy file or shipped name (default: default).")] = None,
    task: Annotated[Literal["classification", "causal-lm"], typer.Option(
        "--task", help="classification or causal-lm.")] = "classification",
    text_column: Annotated[str, typer.Option("--text-column")] = "text",
    label_column: Annotated[str | None, typer.Option("--label-column", help="classification: the label.")] = "label",
    prompt_column: Annotated[str | None, typer.Option("--prompt-column", help="causal-lm: prompt.")] = None,
    completion_column: Annotated[str | None, typer.Option("--completion-column", help="causal-lm: completion.")] = None,
    gguf_file: Annotated[str | None, typer.Option("--gguf-file", help="GGUF file inside the base folder.")] = None,
    max_records: Annotated[int, typer.Option("--max-records", min=10, help="Members and non-members each.")] = 500,
    max_length: Annotated[int, typer.Option("--max-length", min=8, help="Tokens per record, as in training.")] = 128,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, help="Bootstrap resamples for the AUC CI.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Sampling and bootstrap seed.")] = 0,
    extraction: Annotated[bool, typer.Option(
        "--extraction/--no-extraction", help="causal-lm: also measure verbatim extraction.")] = True,
    extraction_records: Annotated[int, typer.Option(
        "--extraction-records", min=1, help="causal-lm: members and non-members each prompted."
    )] = ExtractionAuditConfig().max_records,
    prefix_tokens: Annotated[int, typer.Option(
        "--prefix-tokens", min=1, help="causal-lm: k, the record's first tokens given as the prompt."
    )] = ExtractionAuditConfig().prefix_tokens,
    suffix_tokens: Annotated[int, typer.Option(
        "--suffix-tokens", min=1, help="causal-lm: m, the tokens greedy-decoded and compared."
    )] = ExtractionAuditConfig().suffix_tokens,
    db: DbOption = None,
    output_format: FormatOption = "table",
) -> None:
    """Membership-inference audit of a model trained elsewhere: loss, reference-calibrated (and for causal
    LMs Min-K% and zlib) attacks; ROC AUC and TPR at 0.1 % / 1 % FPR. Causal LMs are also prompted with
    the first tokens of members and non-members to measure verbatim extraction.

    Exit code 0 when the policy passes (or warns), 1 when it blocks, 2 on error.
    """
    from govern import api

    if task not in ("classification", "causal-lm"):
        raise typer.BadParameter("must be classification or causal-lm", param_hint="--task")
    kwargs: dict[str, Any] = dict(task=task, text_column=text_column,
                                  label_column=label_column if task == "classification" else None,
                                  prompt_column=prompt_column, completion_column=completion_column,
                                  gguf_file=gguf_file, max_records=max_records, seed=seed, bootstrap=bootstrap,
                                  max_length=max_length,
                                  extraction=ExtractionAuditConfig(enabled=extraction, max_records=extraction_records,
                                                                   prefix_tokens=prefix_tokens,
                                                                   suffix_tokens=suffix_tokens))
    outcome = api.audit_membership_recorded(model=model, base=base, members=members, nonmembers=nonmembers,
                                            policy=policy, db_url=db, **kwargs)
    evidence, decision, run_id, results = outcome.evidence, outcome.decision, outcome.run_id, outcome.results
    if output_format == "json":
        emit_json({"run_id": run_id, "decision": decision, "results": results,
                   "evidence": evidence.model_dump(mode="json")})
    else:
        console.print(_membership_table(evidence))
        if evidence.extraction is not None:
            console.print(_extraction_table(evidence.extraction))
        for note in evidence.notes:
            console.print(f"note: {note}", highlight=False)
        if results:
            console.print(results_table(results, "Policy decision"))
        console.print(f"decision: {_styled(decision)}" + (f"   run: {run_id}" if run_id else ""))
    exit_with(1 if decision == "block" else 0)



# ----------------------------------------------------------------------------------------- signing

@keys_app.command("generate")
def keys_generate(
    directory: Annotated[Path, typer.Argument(help="Folder for the key pair (created if missing).")],
    name: Annotated[str, typer.Option(help="File stem: NAME.pem (private, 0600) and NAME.pub.pem.")] = "signing-key",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing key pair.")] = False,
) -> None:
    """Write an ECDSA P-256 signing key pair. The private key is never printed."""
    from govern.signing.keys import generate_key_pair

    pair = generate_key_pair(directory, name=name, overwrite=force)
    console.print(f"private key: {pair.private_key} (mode 0600; keep it secret)", highlight=False)
    console.print(f"public key:  {pair.public_key}", highlight=False)
    console.print(f"fingerprint: {pair.fingerprint}", highlight=False)


@app.command("sign")
def sign_command(
    path: Annotated[Path, typer.Argument(help="Model directory or file to sign.")],
    key: Annotated[Path | None, typer.Option("--key", help="ECDSA private key (PEM).")] = None,
    signing_cert: Annotated[Path | None, typer.Option("--signing-cert", help="Signing certificate (PEM); with --key.")] = None,
    cert_chain: Annotated[list[Path] | None, typer.Option("--cert-chain", help="Intermediate/root certificates (PEM).")] = None,
    sigstore: Annotated[bool, typer.Option("--sigstore", help="Keyless: Fulcio + Rekor with an OIDC token.")] = False,
    identity_token: Annotated[Path | None, typer.Option("--identity-token", help="File holding the OIDC token.")] = None,
    staging: Annotated[bool, typer.Option("--staging", help="Sigstore's staging instance (testing).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Bundle path (default: PATH.sigstore.json).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Refuse a private key that group or others can read (default: warn).")] = False,
    db: DbOption = None,
    output_format: FormatOption = "table",
) -> None:
    """Sign a model trained anywhere into a sigstore bundle (written outside it), recorded in the lineage DB."""
    from govern import api

    if _is_stdout(out):
        raise GovernError("--out -: the bundle is recorded in the lineage DB by its path and verified from it; "
                          "give a file path (the default is PATH.sigstore.json)")
    if sigstore:
        if key or signing_cert or cert_chain:
            raise GovernError("--sigstore is keyless: do not combine it with --key / --signing-cert / --cert-chain")
        method = "sigstore"
    elif signing_cert is not None:
        method = "certificate"
    elif key is not None:
        if cert_chain:
            raise GovernError("--cert-chain needs --signing-cert (the certificate of --key)")
        method = "key"
    else:
        raise GovernError("say how to sign: --key KEY, --signing-cert CERT --key KEY [--cert-chain ...], or --sigstore")
    kwargs: dict[str, Any] = {"private_key": key, "signing_certificate": signing_cert,
                              "certificate_chain": list(cert_chain or []), "identity_token": identity_token,
                              "staging": staging, "out": out, "strict": strict}
    run_id, result = api.sign_recorded(path, method, db_url=db, **kwargs)
    from rich.markup import escape

    for warning in result.warnings:
        err_console.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False)
    if output_format == "json":
        emit_json({"run_id": run_id, **result.model_dump(mode="json")})
        return
    console.print(f"signed {result.subject} ({len(result.files)} files, {result.method}) "
                  f"by {result.signer}", highlight=False)
    console.print(f"bundle: {result.bundle_path}", highlight=False)
    if run_id:
        console.print(f"recorded as {run_id}", highlight=False)


@app.command("verify")
def verify_command(
    path: Annotated[Path, typer.Argument(help="Model directory or file (or any artifact with a sigstore bundle).")],
    signature: Annotated[Path, typer.Option("--signature", help="The sigstore bundle to verify against.")],
    key: Annotated[Path | None, typer.Option("--key", help="Trusted public key (PEM).")] = None,
    cert_chain: Annotated[list[Path] | None, typer.Option("--cert-chain", help="Trusted CA certificates (PEM).")] = None,
    identity: Annotated[str | None, typer.Option("--identity", help="Expected Sigstore certificate identity.")] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="Expected OIDC issuer URL.")] = None,
    staging: Annotated[bool, typer.Option("--staging", help="Use Sigstore's staging trust root.")] = False,
    provenance: Annotated[list[Path] | None, typer.Option("--provenance", help="Signed attestation bundle(s).")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Also check the lineage DB at this URL.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Run id to check in the lineage DB.")] = None,
    record: Annotated[bool, typer.Option(
        "--record/--no-record", help="Record this verification in the lineage DB (--db, else the default).")] = True,
    output_format: FormatOption = "table",
) -> None:
    """Verify files, signer, provenance and lineage. Exit 0 verified, 1 failed (what failed is listed), 2 error."""
    from rich.markup import escape

    from govern import api
    from govern.signing.verifying import Trust

    trust = Trust(public_key=key, certificate_chain=list(cert_chain or []), identity=identity, issuer=issuer,
                  staging=staging)
    verification_id, report = api.verify_recorded(path, signature, trust, provenance=list(provenance or []),
                                                  db_url=db, run_id=run, record=record)
    if output_format == "json":
        emit_json({"verified": report.verified, "verification_run_id": verification_id,
                   **report.model_dump(mode="json")})
    else:
        for c in report.checks:
            mark = "[green]✓[/]" if c.ok else "[red]✗[/]"
            console.print(f"{mark} {escape(c.detail)}", highlight=False)
        verdict = "[bold green]VERIFIED[/]" if report.verified else "[bold red]VERIFICATION FAILED[/]"
        console.print(f"{verdict} {escape(report.subject)}", highlight=False)
        if verification_id:
            console.print(f"recorded as {verification_id}", highlight=False)
    exit_with(0 if report.verified else 1)


# ----------------------------------------------------------------------------------------- reports

@app.command("report")
def report_command(
    run_id: Annotated[str | None, typer.Argument(help="Run id or 'latest' (omit with --since).")] = None,
    output_format: Annotated[Literal["html", "pdf", "md", "json"], typer.Option(
        "--format", "-f", help="html, pdf, md or json (ledger: html, md, json).")] = "html",
    out: OutFolderOption = Path("reports"),
    since: Annotated[str | None, typer.Option("--since", help="YYYY-MM-DD: all runs since then and the per-data-set privacy ledger.")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="Ledger only: take the accountant and ε cap from this policy.")] = None,
    sign_key: SignKeyOption = None,
    db: DbOption = None,
) -> None:
    """Write a run's audit report (from the lineage DB alone), or with --since the cross-run ledger."""
    from govern import api

    if _is_stdout(out):
        _report_problems(_write_to_stdout("report", "govern-report-", sign_key, lambda tmp: api.report(
            run_id, output_format, tmp, since=since, policy=policy, db_url=db)))
        return
    outcome = api.report(run_id, output_format, out, since=since, policy=policy, sign_key=sign_key, db_url=db)
    console.print(f"wrote {outcome.path}", highlight=False, soft_wrap=True)
    _print_signed(outcome)
    _report_problems(outcome)


@app.command("docs")
def docs_command(
    run_id: RunIdArgument,
    kind: Annotated[Literal["gpai-form", "training-summary", "annex-iv"], typer.Option(
        "--kind", "-k", help="gpai-form, training-summary or annex-iv.")] = "gpai-form",
    output_format: Annotated[Literal["md", "html", "pdf", "json"], typer.Option(
        "--format", "-f", help="md, html, pdf or json.")] = "md",
    out: OutFolderOption = Path("reports"),
    sign_key: SignKeyOption = None,
    db: DbOption = None,
) -> None:
    """Draft an EU AI Act document (an aid, not legal advice) from the lineage DB alone; recorded with its digest."""
    from govern import api

    outcome = _write_recorded("document", "govern-docs-", out, sign_key, lambda folder, record: api.docs(
        run_id, kind, output_format, folder, record=record, sign_key=sign_key if record else None, db_url=db))
    if outcome is not None and outcome.to_be_completed:
        console.print(f"to be completed: {len(outcome.to_be_completed)} field(s), listed at the end of the document",
                      highlight=False)


@export_app.command("bom")
def export_bom_command(
    run_id: RunIdArgument,
    output_format: Annotated[Literal["cyclonedx", "spdx"], typer.Option(
        "--format", "-f", help="cyclonedx (1.6 ML-BOM) or spdx (3.0.1 JSON-LD, AI and Dataset profiles).")] = "cyclonedx",
    out: OutFolderOption = Path("reports"),
    sign_key: SignKeyOption = None,
    db: DbOption = None,
) -> None:
    """Write the run's AI bill of materials from the lineage DB alone, validated; recorded with its digest."""
    from govern import api

    _write_recorded("BOM", "govern-bom-", out, sign_key, lambda folder, record: api.export_bom(
        run_id, output_format, folder, record=record, sign_key=sign_key if record else None, db_url=db))


@export_app.command("openlineage")
def export_openlineage_command(
    run_id: RunIdArgument,
    url: Annotated[str | None, typer.Option("--url", help="Send to this OpenLineage HTTP endpoint (e.g. Marquez).")] = None,
    file: Annotated[str | None, typer.Option("--file", help="Append the events (one JSON per line) to this file.")] = None,
    to_console: Annotated[bool, typer.Option("--console", help="Print the events.")] = False,
    db: DbOption = None,
) -> None:
    """Send the run's OpenLineage events (START, then COMPLETE/ABORT/FAIL); default transport: OPENLINEAGE_URL etc."""
    from rich.markup import escape

    from govern import api

    run, sent, problems = api.export_openlineage(run_id, url=url, file=file, console=to_console, db_url=db)
    if problems:
        for p in problems:
            error_console.print(f"[bold red]error:[/] OpenLineage: {escape(p)}", highlight=False)
        error_console.print(f"sent {sent} event(s) for {run}; the failure is recorded in its audit log",
                            highlight=False)
        exit_with(2)
    console.print(f"sent {sent} OpenLineage event(s) for {run}", highlight=False)


@export_app.command("mlflow")
def export_mlflow_command(
    run_id: RunIdArgument,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI).")] = None,
    registry_uri: Annotated[str | None, typer.Option("--registry-uri", help="Model registry URI (default: the tracking URI).")] = None,
    experiment: Annotated[str, typer.Option("--experiment", help="MLflow experiment name.")] = "govern",
    db: DbOption = None,
) -> None:
    """Log the run to MLflow (params, metrics, tags, report/evidence/SARIF); register the model only if it passed."""
    from govern import api

    run, result = api.export_mlflow(run_id, tracking_uri, registry_uri=registry_uri, experiment=experiment, db_url=db)
    console.print(f"logged {run} as MLflow run {result.mlflow_run_id} (experiment {result.experiment_id})",
                  highlight=False)
    if result.model_version is not None:
        console.print(f"registered {result.registered_model} version {result.model_version}", highlight=False)
    else:
        console.print("no model version registered (the decision did not pass)", highlight=False)


class _WrittenFile(Protocol):
    path: Path


_Written = TypeVar("_Written", bound=_WrittenFile)


def _write_to_stdout(what: str, tmp_prefix: str, sign_key: Path | None, write: Callable[[str], _Written]) -> _Written:
    """``--out -`` for a command that writes one file (report, document, BOM): ``write`` makes it in a temporary
    folder, its bytes go to standard output, and its outcome is returned. ``--sign-key`` is refused: a
    signature covers a file, and this one is gone when the command ends."""
    if sign_key is not None:
        raise GovernError(f"--out - with --sign-key: a signature covers a file; write the {what} to a folder")
    import tempfile

    with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
        outcome = write(tmp)
        sys.stdout.buffer.write(outcome.path.read_bytes())
        sys.stdout.flush()
    return outcome


def _write_recorded(what: str, tmp_prefix: str, out: Path, sign_key: Path | None,
                    write: Callable[[Path, bool], _Written]) -> _Written | None:
    """A document or BOM: ``--out -`` to standard output (not recorded: no file is kept), else written to the
    folder, recorded with its digest and signed with ``--sign-key``, and said so. The outcome of the latter."""
    if _is_stdout(out):
        _write_to_stdout(what, tmp_prefix, sign_key, lambda tmp: write(Path(tmp), False))
        return None
    outcome = write(out, True)
    _print_recorded(outcome)
    _print_signed(outcome)
    return outcome


def _print_recorded(outcome: Any) -> None:
    console.print(f"wrote {outcome.path} ({outcome.sha256}, recorded for {outcome.run_id})", highlight=False,
                  soft_wrap=True)


def _print_signed(outcome: Any) -> None:
    if outcome.signed is not None:
        console.print(f"signed: {outcome.signed.bundle_path}", highlight=False, soft_wrap=True)
        console.print(f"verify: {outcome.signed.verify_command}", highlight=False, soft_wrap=True)


def _report_problems(outcome: Any) -> None:
    if outcome.problems:
        error_console.print(f"[bold red]error:[/] the lineage record of {outcome.run_id} is broken "
                            f"({len(outcome.problems)} problem(s)); the report says so on its first screen:",
                            highlight=False)
        for p in outcome.problems[:20]:
            error_console.print(f"  - {p}", highlight=False, markup=False)
        exit_with(2)


if __name__ == "__main__":  # pragma: no cover
    main()
