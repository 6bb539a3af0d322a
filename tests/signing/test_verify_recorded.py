"""`govern verify` is itself recorded in the lineage DB: who checked what, and the result."""

from __future__ import annotations

import json
from pathlib import Path

from govern.lineage import LineageStore


def test_verification_is_recorded_with_its_result(workdir: Path, govern_cli) -> None:  # type: ignore[no-untyped-def]  # tests/signing's fixture
    model = workdir / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 1024)
    assert govern_cli("keys", "generate", str(workdir / "keys")).code == 0
    assert govern_cli("sign", str(model), "--key", str(workdir / "keys" / "signing-key.pem")).code == 0
    bundle = workdir / "model.sigstore.json"
    pub = workdir / "keys" / "signing-key.pub.pem"
    r = govern_cli("verify", str(model), "--signature", str(bundle), "--key", str(pub), "--format", "json")
    code, out = r.code, r.out
    assert code == 0
    ok_id = json.loads(out)["verification_run_id"]
    (model / "weights.bin").write_bytes(b"\x01" * 1024)
    r = govern_cli("verify", str(model), "--signature", str(bundle), "--key", str(pub), "--format", "json")
    code, out = r.code, r.out
    assert code == 1
    failed_id = json.loads(out)["verification_run_id"]
    with LineageStore.open() as store:
        ok, failed = store.get_run(ok_id), store.get_run(failed_id)
        assert (ok.kind, ok.status, ok.decision) == ("verify", "completed", "pass")
        assert (failed.kind, failed.status, failed.decision) == ("verify", "blocked", "block")
        checks = store.evidence(failed_id)["verification"]["checks"]
        assert any("changed: weights.bin" in c["detail"] for c in checks if not c["ok"])
    r = govern_cli("verify", str(model), "--signature", str(bundle), "--key", str(pub), "--no-record",
                   "--format", "json")
    code, out = r.code, r.out
    assert code == 1 and json.loads(out)["verification_run_id"] is None
