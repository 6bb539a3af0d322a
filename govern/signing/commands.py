"""The ``govern verify`` command a compliance officer runs for a signature: one builder, used by the signing
stage (which knows the trust material) and by reports (which know only what the DB recorded)."""

from __future__ import annotations

import shlex
from pathlib import Path


def _safe_db_url(url: str) -> str:
    """A DB URL fit for a printed command: never with its password."""
    if not url:
        return ""
    try:
        from sqlalchemy.engine import make_url

        if make_url(url).password:
            return '"$GOVERN_DB_URL"'
    except Exception:
        return '"$GOVERN_DB_URL"'
    return shlex.quote(url)


def verify_command(model_dir: Path | str, bundle: Path | str, trust_args: list[str],
                   provenance: list[str] | None = None, db_url: str | None = None, run_id: str | None = None) -> str:
    """The exact ``govern verify`` command for a signature; ``trust_args`` are already shell-quoted."""
    parts = ["govern", "verify", shlex.quote(str(model_dir)), "--signature", shlex.quote(str(bundle)),
             *trust_args]
    for p in provenance or []:
        parts += ["--provenance", shlex.quote(p)]
    if db_url and run_id:
        parts += ["--db", _safe_db_url(db_url), "--run", shlex.quote(run_id)]
    return " ".join(parts)


def with_lineage_check(command: str, db_url: str, run_id: str) -> str:
    """``command`` (a recorded ``govern verify``) also checking the lineage record of ``run_id`` in ``db_url``."""
    if " --db " in command:
        return command
    return f"{command} --db {_safe_db_url(db_url)} --run {shlex.quote(run_id)}"
