"""``govern ui`` and ``govern users …`` (registered in :mod:`govern.cli`); the console itself is
:mod:`govern.ui`, imported only when a command runs (it needs the ``ui`` extra)."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

users_app = typer.Typer(help="Console accounts: add, remove, list, set-role; API tokens for CI.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for CI (Authorization: Bearer on /api/v1): create, list, revoke.",
                        no_args_is_help=True)
users_app.add_typer(token_app, name="token")
_console = Console(highlight=False)
_err = Console(stderr=True, highlight=False)
AccountsOption = Annotated[Path | None, typer.Option(
    "--accounts", help="Accounts file (default: GOVERN_UI_ACCOUNTS or .govern/ui-accounts.json).")]
RoleArg = Annotated[str, typer.Option("--role", help="viewer, approver or admin.")]


def _path(accounts: Path | None) -> Path:
    from govern.ui.accounts import default_accounts_path

    return accounts or default_accounts_path()


def _role(role: str) -> str:
    from govern.errors import GovernError
    from govern.ui.accounts import ROLES

    if role not in ROLES:
        raise GovernError(f"--role must be one of {', '.join(ROLES)}, not '{role}'")
    return role


def ui_command(
    db: Annotated[str | None, typer.Option("--db", help="Lineage DB URL.")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback unless behind TLS).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8600,
    read_only: Annotated[bool, typer.Option("--read-only", help="Pages only: no accounts, no actions.")] = False,
    accounts: AccountsOption = None,
) -> None:
    """Serve the compliance console (runs, models, approvals, audit log)."""
    try:
        import uvicorn
    except ImportError:
        from govern.errors import GovernError

        raise GovernError("the console needs the 'ui' extra: pip install 'govern[ui]'") from None
    from govern.ui.app import create_app

    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        _err.print(f"warning: binding {host} serves the console without TLS: put it behind a reverse proxy "
                   "that terminates TLS, or bind 127.0.0.1")
    app = create_app(db, read_only=read_only, accounts_path=_path(accounts))
    _console.print(f"govern console on http://{host}:{port}/ ({'read-only' if read_only else 'accounts'})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@users_app.command("add")
def users_add(name: Annotated[str, typer.Argument(help="User name.")], role: RoleArg = "viewer",
              accounts: AccountsOption = None,
              password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from "
                                                                                   "standard input.")] = False) -> None:
    """Add a console user (the password is prompted for, or read from stdin; never echoed or logged)."""
    from govern.ui.accounts import add_user

    password = sys.stdin.readline().rstrip("\n") if password_stdin else \
        typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    account = add_user(_path(accounts), name, _role(role), password)  # type: ignore[arg-type]  # checked by _role
    _console.print(f"added console user {account.name} ({account.role})")


@users_app.command("remove")
def users_remove(name: Annotated[str, typer.Argument()], accounts: AccountsOption = None) -> None:
    """Remove a console user."""
    from govern.ui.accounts import remove_user

    remove_user(_path(accounts), name)
    _console.print(f"removed console user {name}")


@users_app.command("set-role")
def users_set_role(name: Annotated[str, typer.Argument()], role: Annotated[str, typer.Argument()],
                   accounts: AccountsOption = None) -> None:
    """Change a console user's role."""
    from govern.ui.accounts import set_role

    account = set_role(_path(accounts), name, _role(role))  # type: ignore[arg-type]  # checked by _role
    _console.print(f"{account.name} is now {account.role}")


@users_app.command("list")
def users_list(accounts: AccountsOption = None) -> None:
    """Console users and their roles."""
    from govern.ui.accounts import load_accounts

    for account in load_accounts(_path(accounts)).accounts.values():
        _console.print(f"{account.name}\t{account.role}")


@token_app.command("create")
def token_create(name: Annotated[str, typer.Argument(help="What the token is for, e.g. ci-deploy (named on "
                                                           "every audit event it causes).")],
                 role: RoleArg = "viewer", accounts: AccountsOption = None,
                 expires_days: Annotated[int | None, typer.Option("--expires-days", help="Refuse it after this many "
                                                                                         "days.")] = None) -> None:
    """Create an API token; it is printed once (on stdout, alone, for a CI secret store) and kept only hashed."""
    from govern.ui.accounts import create_token

    record, token = create_token(_path(accounts), name, _role(role), expires_days=expires_days)  # type: ignore[arg-type]  # checked by _role
    _err.print(f"API token {record.id} '{record.name}' ({record.role})"
               f"{' until ' + record.expires_at.strftime('%Y-%m-%d') if record.expires_at else ''}: "
               "store it now, it is not shown again")
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(accounts: AccountsOption = None) -> None:
    """API tokens: id, name, role, created, expiry (never the token)."""
    from govern.ui.accounts import load_accounts

    for t in load_accounts(_path(accounts)).tokens.values():
        expiry = t.expires_at.strftime("%Y-%m-%d") if t.expires_at else "never"
        _console.print(f"{t.id}\t{t.name}\t{t.role}\t{t.created_at:%Y-%m-%d}\t{expiry}")


@token_app.command("revoke")
def token_revoke(token: Annotated[str, typer.Argument(help="The token's id or name.")],
                 accounts: AccountsOption = None) -> None:
    """Revoke an API token: a running console refuses it from the next request on."""
    from govern.ui.accounts import revoke_token

    record = revoke_token(_path(accounts), token)
    _console.print(f"revoked API token {record.id} '{record.name}'")
