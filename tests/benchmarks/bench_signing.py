"""Benchmark: sign + verify a 1 GB model directory with govern vs calling ``model_signing`` directly.

Both sides do the same cryptographic work (sha256 of every file, ECDSA P-256 over the manifest); govern
adds its own checks (bundle placement, per-file diff, signer naming). Goal: govern ≥ 0.9× the
throughput of model_signing. Runs are interleaved (ABBA) so both see the same page-cache state and machine load.

    .venv/bin/python tests/benchmarks/bench_signing.py [--size-mb 1024] [--files 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def make_model(root: Path, size_mb: int, files: int) -> Path:
    model = root / "model"
    model.mkdir()
    per_file = size_mb * 1024 * 1024 // files
    chunk = 16 * 1024 * 1024
    for i in range(files):
        with open(model / f"model-{i:05d}-of-{files:05d}.safetensors", "wb") as fh:
            left = per_file
            while left > 0:
                n = min(chunk, left)
                fh.write(os.urandom(n))
                left -= n
    (model / "config.json").write_text('{"architectures": ["BertModel"], "hidden_size": 384}\n')
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    import model_signing

    from govern.signing import SignerConfig, Trust, generate_key_pair, sign_model, verify

    tmp = Path(tempfile.mkdtemp(prefix="govern-bench-signing-"))
    try:
        t0 = time.perf_counter()
        model = make_model(tmp, args.size_mb, args.files)
        size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file())
        keys = generate_key_pair(tmp / "keys")
        print(f"model: {size / 1e9:.2f} GB in {args.files + 1} files (written in {time.perf_counter() - t0:.1f} s)")

        def upstream() -> tuple[float, float]:
            bundle = tmp / "upstream.sig"
            t = time.perf_counter()
            model_signing.signing.Config().use_elliptic_key_signer(private_key=keys.private_key).sign(model, bundle)
            t_sign = time.perf_counter() - t
            t = time.perf_counter()
            model_signing.verifying.Config().use_elliptic_key_verifier(public_key=keys.public_key).verify(model, bundle)
            return t_sign, time.perf_counter() - t

        def governed() -> tuple[float, float]:
            bundle = tmp / "govern.sigstore.json"
            t = time.perf_counter()
            sign_model(model, SignerConfig(method="key", private_key=keys.private_key), bundle)
            t_sign = time.perf_counter() - t
            t = time.perf_counter()
            report = verify(model, bundle, Trust(public_key=keys.public_key))
            t_verify = time.perf_counter() - t
            assert report.verified, report.failures
            return t_sign, t_verify

        upstream()  # warm-up: page cache and imports for both
        governed()
        results: dict[str, list[tuple[float, float]]] = {"model_signing": [], "govern": []}
        for i in range(args.rounds):
            # ABBA order: neither side always runs first on a shared, noisy machine.
            order = [("model_signing", upstream), ("govern", governed)]
            for name, fn in order if i % 2 == 0 else reversed(order):
                results[name].append(fn())

        mb = size / 1e6
        summary = {}
        for name, runs in results.items():
            sign = statistics.median(r[0] for r in runs)
            ver = statistics.median(r[1] for r in runs)
            total = statistics.median(r[0] + r[1] for r in runs)
            best = min(r[0] + r[1] for r in runs)
            summary[name] = mb / total
            print(f"{name:>14}: sign {sign:6.2f} s ({mb / sign:7.0f} MB/s)  verify {ver:6.2f} s "
                  f"({mb / ver:7.0f} MB/s)  sign+verify {mb / total:7.0f} MB/s median, {mb / best:7.0f} MB/s best "
                  f"(of {args.rounds})")
        ratio = summary["govern"] / summary["model_signing"]
        print(f"ratio govern / model_signing (sign+verify throughput): {ratio:.3f}x  (goal >= 0.9x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
