"""Signing a report file (the same sigstore bundles as models, via :mod:`govern.signing`).

A signed report lets an auditor prove later that the PDF/HTML they hold is the one govern generated:
``govern verify REPORT --signature REPORT.sigstore.json --key PUBLIC.pem``. The signature is recorded
in the lineage DB (kind ``report``) when the report belongs to a run.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from govern.lineage.store import LineageStore


class SignedReport(BaseModel):
    report: str
    bundle_path: str
    signer: str
    public_key: str | None
    verify_command: str


def public_key_beside(private_key: Path) -> Path | None:
    """The ``NAME.pub.pem`` that ``govern keys generate`` writes next to ``NAME.pem`` (public material)."""
    stem = private_key.name.removesuffix(".pem")
    for candidate in (private_key.with_name(stem + ".pub.pem"), private_key.with_name(stem + ".pub")):
        if candidate.is_file():
            return candidate
    return None


def sign_report(report: str | Path, private_key: str | Path, *, store: LineageStore | None = None,
                run_id: str | None = None) -> SignedReport:
    """Sign ``report`` into ``<report>.sigstore.json`` with an ECDSA key; record it for ``run_id``."""
    from govern.signing.signing import sign_artifact

    path = Path(report)
    key = Path(private_key)
    bundle = path.with_name(path.name + ".sigstore.json")
    result = sign_artifact(path, "key", private_key=key, out=bundle)
    public = public_key_beside(key)
    recorded = result.signature_record(kind="report")
    # The DB outlives the working directory of the command: record where the files are, absolutely.
    recorded.update(subject=str(path.resolve()), bundle_path=str(bundle.resolve()))
    command = (f"govern verify {shlex.quote(str(path))} --signature {shlex.quote(str(bundle))} --key "
               f"{shlex.quote(str(public)) if public else '<public-key.pem>'}")
    if store is not None and run_id is not None:
        store.add_signature(run_id, **recorded)
    return SignedReport(report=str(path), bundle_path=result.bundle_path, signer=result.signer,
                        public_key=str(public) if public else None, verify_command=command)
