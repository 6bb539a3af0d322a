"""A model signed with govern verifies; any change to it, or the wrong signer, fails with a message that
says exactly what is wrong."""

from __future__ import annotations

import base64
import json
import shutil
import stat
from pathlib import Path

import pytest

from govern.errors import GovernError
from govern.signing import (
    SignerConfig,
    Trust,
    build_provenance,
    sign_model,
    sign_statement,
    verify,
)
from govern.signing.keys import KeyPair
from govern.stage import tree_sha256


def _key_signer(keys: KeyPair) -> SignerConfig:
    return SignerConfig(method="key", private_key=keys.private_key)


def test_signed_model_verifies_through_the_cli(model_dir: Path, keys: KeyPair, govern_cli) -> None:
    signed = govern_cli("sign", model_dir, "--key", keys.private_key)
    assert signed.code == 0, signed.err
    bundle = model_dir.parent / "model.sigstore.json"
    assert bundle.is_file() and not any(p.suffix == ".json" and "sigstore" in p.name for p in model_dir.rglob("*"))

    result = govern_cli("verify", model_dir, "--signature", bundle, "--key", keys.public_key)
    assert result.code == 0, result.out + result.err
    assert "VERIFIED" in result.out and "all 3 files match" in result.out
    assert keys.fingerprint in result.out


def test_signing_result_digests_match_the_lineage_tree_digest(model_dir: Path, keys: KeyPair, tmp_path: Path) -> None:
    result = sign_model(model_dir, _key_signer(keys), tmp_path / "b.json")
    assert result.model_digest == tree_sha256(model_dir)
    assert sorted(f.name for f in result.files) == ["config.json", "tokenizer/vocab.txt", "weights.bin"]
    assert result.signer == keys.fingerprint


def test_one_changed_byte_names_the_file(model_dir: Path, keys: KeyPair, govern_cli) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    weights = model_dir / "weights.bin"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0x01
    weights.write_bytes(bytes(data))

    out = govern_cli("verify", model_dir, "--signature", result.bundle_path, "--key", keys.public_key)
    assert out.code == 1
    assert "changed: weights.bin (signed sha256" in out.out
    assert "config.json" not in out.out.split("changed:")[1]  # only the changed file is blamed
    assert "VERIFICATION FAILED" in out.out


def test_added_file_is_named(model_dir: Path, keys: KeyPair) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    (model_dir / "tokenizer" / "merges.txt").write_text("a b\n")
    report = verify(model_dir, result.bundle_path, Trust(public_key=keys.public_key))
    assert not report.verified
    assert report.failures == ["added: tokenizer/merges.txt (not in the signature)"]


def test_removed_file_is_named(model_dir: Path, keys: KeyPair) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    (model_dir / "config.json").unlink()
    report = verify(model_dir, result.bundle_path, Trust(public_key=keys.public_key))
    assert report.failures == ["removed: config.json (signed, now missing)"]


def test_wrong_key_fails_and_names_both_keys(model_dir: Path, keys: KeyPair, other_keys: KeyPair, govern_cli) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    out = govern_cli("verify", model_dir, "--signature", result.bundle_path, "--key", other_keys.public_key)
    assert out.code == 1
    assert f"wrong key: the bundle was signed by key {keys.fingerprint}" in out.out
    assert other_keys.fingerprint in out.out


def test_tampered_bundle_payload_fails_the_signature_check(model_dir: Path, keys: KeyPair, tmp_path: Path) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    doc = json.loads(Path(result.bundle_path).read_text())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "00" * 32
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    report = verify(model_dir, forged, Trust(public_key=keys.public_key))
    assert not report.verified
    assert "the signature does not verify with" in report.failures[0]


def test_certificate_signing_verifies_against_the_org_ca_only(model_dir: Path, pki, tmp_path: Path, govern_cli) -> None:
    bundle = tmp_path / "cert.sigstore.json"
    signed = govern_cli("sign", model_dir, "--key", pki.leaf_key, "--signing-cert", pki.leaf_cert,
                        "--cert-chain", pki.ca_cert, "--out", bundle)
    assert signed.code == 0, signed.err
    assert "CN=ml-release-bot" in signed.out

    ok = govern_cli("verify", model_dir, "--signature", bundle, "--cert-chain", pki.ca_cert)
    assert ok.code == 0, ok.out + ok.err
    assert "CN=ml-release-bot" in ok.out

    untrusted = govern_cli("verify", model_dir, "--signature", bundle, "--cert-chain", pki.other_ca_cert)
    assert untrusted.code == 1
    assert "untrusted certificate" in untrusted.out and "does not chain to" in untrusted.out


def test_certificate_that_does_not_match_the_key_is_refused(model_dir: Path, pki, keys: KeyPair, tmp_path: Path) -> None:
    with pytest.raises(GovernError, match="does not match the private key"):
        sign_model(model_dir, SignerConfig(method="certificate", private_key=keys.private_key,
                                           signing_certificate=pki.leaf_cert, certificate_chain=[pki.ca_cert]),
                   tmp_path / "x.json")


def test_key_bundle_checked_with_certificate_trust_fails_clearly(model_dir: Path, keys: KeyPair, pki) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    report = verify(model_dir, result.bundle_path, Trust(certificate_chain=[pki.ca_cert]))
    assert "signed with key material, but certificate trust was given" in report.failures[0]


def _provenance(model_dir: Path, keys: KeyPair, tmp_path: Path, files=None) -> tuple[Path, Path]:
    slsa, audit = build_provenance(
        model_dir, run={"id": "run-test-1", "started_at": "2026-01-01T00:00:00Z"}, config={"name": "t"},
        policy={"name": "default", "version": "1.0.0", "document": {"kind": "Policy"}},
        datasets=[{"name": "train", "path": "train.jsonl", "sha256": "ab" * 32, "fingerprint": "f1"}],
        base_model={"name": "tiny", "path": "/models/tiny", "digest": "cd" * 32}, versions={"torch": "2.13.0"},
        audit={"decision": "pass", "privacy": {"epsilon": {"rdp": 7.9}, "delta": 1e-5}}, files=files,
    )
    return (sign_statement(slsa, _key_signer(keys), tmp_path / "slsa.sigstore.json").bundle_path,  # type: ignore[return-value]
            sign_statement(audit, _key_signer(keys), tmp_path / "audit.sigstore.json").bundle_path)


def test_provenance_statements_verify_against_the_files(model_dir: Path, keys: KeyPair, tmp_path: Path,
                                                        govern_cli) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    slsa, audit = _provenance(model_dir, keys, tmp_path)
    out = govern_cli("verify", model_dir, "--signature", result.bundle_path, "--key", keys.public_key,
                     "--provenance", slsa, "--provenance", audit)
    assert out.code == 0, out.out
    assert "https://slsa.dev/provenance/v1 statement" in out.out
    assert "https://govern.dev/audit/v1 statement" in out.out
    payload = json.loads(base64.b64decode(json.loads(Path(slsa).read_text())["dsseEnvelope"]["payload"]))
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    assert payload["predicate"]["runDetails"]["metadata"]["invocationId"] == "run-test-1"
    assert {s["name"] for s in payload["subject"]} == {"weights.bin", "config.json", "tokenizer/vocab.txt"}
    deps = {d["name"]: d for d in payload["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["train"]["digest"] == {"sha256": "ab" * 32}
    assert deps["tiny"]["annotations"]["kind"] == "base-model"
    assert "pypi:torch" in deps


def test_provenance_whose_subject_digest_differs_fails(model_dir: Path, keys: KeyPair, tmp_path: Path) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    files = [f.model_copy(update={"sha256": "11" * 32}) if f.name == "config.json" else f for f in result.files]
    slsa, _ = _provenance(model_dir, keys, tmp_path, files=files)
    report = verify(model_dir, result.bundle_path, Trust(public_key=keys.public_key), provenance=[slsa])
    assert not report.verified
    assert report.failures == [
        "provenance slsa.sigstore.json: subject digest mismatch for 'config.json': statement says sha256 "
        f"111111111111…, the file is {next(f.sha256 for f in result.files if f.name == 'config.json')[:12]}…"
    ]


def test_provenance_signed_by_another_key_fails(model_dir: Path, keys: KeyPair, other_keys: KeyPair,
                                                tmp_path: Path) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    slsa, _ = _provenance(model_dir, other_keys, tmp_path)
    report = verify(model_dir, result.bundle_path, Trust(public_key=keys.public_key), provenance=[slsa])
    assert any(f.startswith("provenance slsa.sigstore.json: wrong key") for f in report.failures)


def test_single_file_model_signs_and_verifies(tmp_path: Path, keys: KeyPair) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)))
    result = sign_model(model, _key_signer(keys))
    assert result.bundle_path == str(tmp_path / "model.gguf.sigstore.json")
    assert [f.name for f in result.files] == ["model.gguf"]
    assert verify(model, result.bundle_path, Trust(public_key=keys.public_key)).verified
    model.write_bytes(b"GGUF" + bytes(range(255)))
    assert verify(model, result.bundle_path, Trust(public_key=keys.public_key)).failures[0].startswith("changed: .")


def test_bundle_inside_the_signed_directory_is_refused(model_dir: Path, keys: KeyPair) -> None:
    with pytest.raises(GovernError, match="outside the signed directory"):
        sign_model(model_dir, _key_signer(keys), model_dir / "model.sig")


def test_verify_errors_exit_2(model_dir: Path, keys: KeyPair, tmp_path: Path, govern_cli) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    no_trust = govern_cli("verify", model_dir, "--signature", result.bundle_path)
    assert no_trust.code == 2 and "exactly one of" in no_trust.err
    missing = govern_cli("verify", model_dir, "--signature", tmp_path / "nope.json", "--key", keys.public_key)
    assert missing.code == 2 and "signature bundle not found" in missing.err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    bad = govern_cli("verify", model_dir, "--signature", garbage, "--key", keys.public_key)
    assert bad.code == 2 and "not a sigstore bundle" in bad.err


def test_keys_generate_permissions_and_no_private_key_output(tmp_path: Path, govern_cli) -> None:
    out = govern_cli("keys", "generate", tmp_path / "k")
    assert out.code == 0, out.err
    private, public = tmp_path / "k" / "signing-key.pem", tmp_path / "k" / "signing-key.pub.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    body = "".join(private.read_text().splitlines()[1:-1])
    assert "PRIVATE KEY" not in out.out + out.err
    assert body[:40] not in out.out + out.err
    again = govern_cli("keys", "generate", tmp_path / "k")
    assert again.code == 2 and "refusing to overwrite" in again.err


def test_private_key_material_never_reaches_bundles_or_output(model_dir: Path, keys: KeyPair, tmp_path: Path,
                                                              govern_cli) -> None:
    body = "".join(keys.private_key.read_text().splitlines()[1:-1])
    from cryptography.hazmat.primitives import serialization

    scalar = serialization.load_pem_private_key(keys.private_key.read_bytes(), None).private_numbers().private_value  # type: ignore[union-attr]
    needles = [body[i:i + 24] for i in range(0, len(body) - 24, 24)] + [format(scalar, "x"), str(scalar)]
    signed = govern_cli("sign", model_dir, "--key", keys.private_key, "--format", "json")
    slsa, audit = _provenance(model_dir, keys, tmp_path)
    haystack = signed.out + signed.err + "".join(Path(p).read_text() for p in (json.loads(signed.out)["bundle_path"],
                                                                                 slsa, audit))
    for needle in needles:
        assert needle not in haystack


def test_unreadable_key_error_does_not_echo_the_file(tmp_path: Path, model_dir: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldC1zZWNyZXQ=\n-----END PRIVATE KEY-----\n")
    with pytest.raises(GovernError) as info:
        sign_model(model_dir, SignerConfig(method="key", private_key=bad), tmp_path / "x.json")
    assert "c2VjcmV0" not in str(info.value) and str(bad) in str(info.value)


def test_copy_of_signed_model_elsewhere_still_verifies(model_dir: Path, keys: KeyPair, tmp_path: Path) -> None:
    result = sign_model(model_dir, _key_signer(keys))
    moved = tmp_path / "released" / "model-v1"
    shutil.copytree(model_dir, moved)
    assert verify(moved, result.bundle_path, Trust(public_key=keys.public_key)).verified


def test_the_reports_verify_command_for_a_certificate_signature_runs(model_dir: Path, pki, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                    govern_cli) -> None:
    """The command a report prints is one `govern verify` accepts: only whom to trust is filled in."""
    import shlex

    from govern.lineage import LineageStore
    from govern.report import build_report_data

    bundle = tmp_path / "model.sigstore.json"
    signed = govern_cli("sign", model_dir, "--key", pki.leaf_key, "--signing-cert", pki.leaf_cert,
                        "--cert-chain", pki.ca_cert, "--out", bundle, "--format", "json")
    assert signed.code == 0, signed.err
    with LineageStore.open(None, read_only=True) as store:
        (run,) = [r for r in store.list_runs() if r.kind == "sign"]
        (signature,) = build_report_data(store, run.id).signatures
    command = shlex.split(signature.verify_command)
    assert command[:2] == ["govern", "verify"] and "--certificate" not in command
    command = [str(pki.ca_cert) if part == "<trusted-ca-chain.pem>" else part for part in command]
    result = govern_cli(*command[1:], "--no-record")
    assert result.code == 0 and "VERIFIED" in result.out, result.out + result.err
