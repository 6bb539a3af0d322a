"""``govern model …``: the registry on the command line (registered in :mod:`govern.cli` with one line).

Outside :mod:`govern.registry` so that building the CLI imports nothing heavy: the registry, the lineage
store and signing load only when a command runs.

Exit codes: 0 done / the model meets ``--require``; 1 refused by the policy or the model's state (four eyes,
unsigned, not approved, revoked); 2 bad input, unknown model or a record that does not verify.
"""

from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from govern.lineage import LineageStore, ModelVersionRecord

model_app = typer.Typer(help="Model registry: list, approve, promote, revoke and roll back model versions; "
                             "`model status` is the deploy gate.", no_args_is_help=True)

_console = Console(highlight=False)
DbOption = Annotated[str | None, typer.Option("--db", help="Lineage DB URL (default: GOVERN_DB_URL or "
                                                            "sqlite:///.govern/lineage.db).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (recorded with your name on the audit log).")]
FormatOption = Annotated[Literal["table", "json"], typer.Option("--format", "-f", help="table or json.")]
PolicyOption = Annotated[str | None, typer.Option(
    "--policy", help="Apply this policy's approval: section (default: the policy the run was judged under).")]


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _version_json(v: ModelVersionRecord) -> dict[str, Any]:
    return v.model_dump(mode="json")  # with its computed ref and approvers


def _say(versions: list[ModelVersionRecord], verb: str) -> None:
    for v in versions:
        _console.print(f"{escape(v.ref)} {verb}: now [bold]{v.status}[/] (sha256:{v.digest[:12]}…, run {v.run_id})")


def _store(db: str | None, *, read_only: bool = False) -> LineageStore:
    from govern.lineage import LineageStore

    return LineageStore.open(db, read_only=read_only)


@model_app.command("list")
def list_command(
    model: Annotated[str | None, typer.Option("--model", help="Only this registered model.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only versions with this status.")] = None,
    db: DbOption = None, output_format: FormatOption = "table",
) -> None:
    """Registered models and their versions, newest first."""
    with closing(_store(db, read_only=True)) as store:
        versions = store.model_versions(model=model, statuses=[status] if status else None)
    if output_format == "json":
        _emit([_version_json(v) for v in versions])
        return
    table = Table("version", "status", "digest", "run", "trained by", "approved by")
    for v in versions:
        table.add_row(escape(v.ref), v.status, f"sha256:{v.digest[:12]}…", v.run_id, escape(v.initiator),
                      escape(", ".join(v.approvers)) or "-")
    _console.print(table)


@model_app.command("show")
def show_command(ref: Annotated[str, typer.Argument(help="NAME@vN, sha256:DIGEST or a run id.")],
                 db: DbOption = None, output_format: FormatOption = "table") -> None:
    """One version: status, digest, run, and every action on it (who, when, why)."""
    from govern.registry import resolve

    with closing(_store(db)) as store:
        version = resolve(store, ref)
    if output_format == "json":
        _emit(_version_json(version))
        return
    _console.print(f"[bold]{escape(version.ref)}[/] {version.status}  sha256:{version.digest}")
    _console.print(f"run {version.run_id}, trained by {escape(version.initiator)} ({version.initiator_source}), "
                   f"model at {escape(version.path)}")
    for a in version.actions:
        _console.print(f"  {a.created_at:%Y-%m-%d %H:%M:%S} {a.action}: {a.from_status} → {a.to_status} by "
                       f"{escape(a.actor)} — {escape(a.reason)}")


@model_app.command("register")
def register_command(run_id: Annotated[str, typer.Argument(help="Run id or 'latest'.")],
                     model: Annotated[str | None, typer.Option("--model", help="Registered model name "
                                                                              "(default: the run's name).")] = None,
                     db: DbOption = None) -> None:
    """Register the model a run produced as a candidate version (done on demand by the other commands)."""
    from govern.registry import register_run

    with closing(_store(db)) as store:
        version = register_run(store, run_id, model=model)
    _say([version], "registered")


@model_app.command("approve")
def approve_command(
    ref: Annotated[str, typer.Argument(help="NAME@vN, sha256:DIGEST or a run id.")],
    reason: ReasonOption, policy: PolicyOption = None,
    key: Annotated[Path | None, typer.Option("--key", help="Trusted public key (PEM) for the signature check "
                                                          "(default: the one the signing stage recorded).")] = None,
    cert_chain: Annotated[list[Path] | None, typer.Option("--cert-chain", help="Trusted CA certificates.")] = None,
    identity: Annotated[str | None, typer.Option("--identity", help="Expected Sigstore identity.")] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="Expected OIDC issuer.")] = None,
    db: DbOption = None,
) -> None:
    """Approve a version as yourself (--actor / GOVERN_ACTOR / CI user), under the policy's approval: rules."""
    from govern.registry import approve

    trust = None
    if key is not None or cert_chain or identity or issuer:
        from govern.signing.verifying import Trust

        trust = Trust(public_key=key, certificate_chain=list(cert_chain or []), identity=identity, issuer=issuer)
    with closing(_store(db)) as store:
        version = approve(store, ref, reason=reason, policy=policy, trust=trust)
    _say([version], f"approved by {escape(version.approvers[-1])}")


@model_app.command("promote")
def promote_command(
    ref: Annotated[str, typer.Argument(help="NAME@vN, sha256:DIGEST or a run id.")], reason: ReasonOption,
    to: Annotated[Literal["deployed", "deprecated"], typer.Option("--to", help="deployed or deprecated.")] = "deployed",
    policy: PolicyOption = None, db: DbOption = None,
) -> None:
    """Deploy an approved version (the deployed one becomes deprecated) or deprecate a version."""
    from govern.registry import promote

    with closing(_store(db)) as store:
        changed = promote(store, ref, reason=reason, to=to, policy=policy)
    _say(changed, "promoted" if to == "deployed" else "deprecated")


@model_app.command("revoke")
def revoke_command(
    ref: Annotated[str | None, typer.Argument(help="NAME@vN, sha256:DIGEST or a run id.")] = None,
    reason: ReasonOption = "",
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Revoke every model version trained on this data-set fingerprint (sha256:…).")] = None,
    db: DbOption = None, output_format: FormatOption = "table",
) -> None:
    """Revoke a version, or with --dataset every version trained on a data set (listed)."""
    from govern.errors import GovernError
    from govern.registry import revoke, revoke_dataset

    if (ref is None) == (dataset is None):
        raise GovernError("give a model version (NAME@vN, sha256:DIGEST, run id) or --dataset FINGERPRINT")
    with closing(_store(db)) as store:
        changed = revoke_dataset(store, dataset, reason=reason) if dataset else [revoke(store, ref or "", reason=reason)]
    if output_format == "json":
        _emit([_version_json(v) for v in changed])
        return
    _say(changed, "revoked")


@model_app.command("rollback")
def rollback_command(
    model: Annotated[str, typer.Argument(help="Registered model name.")], reason: ReasonOption,
    revoke_current: Annotated[bool, typer.Option("--revoke", help="Revoke the rolled-back version "
                                                                  "(default: deprecate it).")] = False,
    db: DbOption = None,
) -> None:
    """Deploy the previous approved version again; the current one is deprecated (or --revoke'd)."""
    from govern.registry import rollback

    with closing(_store(db)) as store:
        restored, rolled_back = rollback(store, model, reason=reason, revoke_current=revoke_current)
    _say([rolled_back], "rolled back")
    _say([restored], "restored")


@model_app.command("status")
def status_command(
    digest: Annotated[str | None, typer.Option("--digest", help="Model tree digest, sha256:….")] = None,
    path: Annotated[Path | None, typer.Option("--path", help="Model folder or file (digest computed).")] = None,
    require: Annotated[Literal["registered", "approved", "deployed"] | None, typer.Option(
        "--require", help="Exit 1 unless the model has this status (approved: approved or deployed).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only versions of this registered model.")] = None,
    db: DbOption = None, output_format: FormatOption = "table",
) -> None:
    """The deploy gate: a model's registry status. Exit 0 meets --require, 1 it does not, 2 error."""
    from govern.registry import model_status

    with closing(_store(db, read_only=True)) as store:
        answer = model_status(store, digest=digest, path=path, require=require, model=model)
    if output_format == "json":
        _emit(answer.model_dump(mode="json"))
    else:
        names = ", ".join(f"{v.ref} {v.status}" for v in answer.versions) or "not in the registry"
        verdict = "" if answer.meets is None else (" [green]meets[/]" if answer.meets else " [bold red]does not meet[/]")
        _console.print(f"{answer.digest}: [bold]{answer.status}[/] ({escape(names)})"
                       + (f"{verdict} --require {require}" if require else ""))
    raise typer.Exit(0 if answer.meets is not False else 1)
