"""Throughput and memory of OpenPGP export encryption (exports/encryption.py, ADR 0013).

Writes ``--contacts`` contact rows (default 1,000,000) as CSV and as gzip, generates recipients'
key pairs (ed25519/cv25519) in a temporary GnuPG home, then encrypts each file ``--runs`` times, each
run in a fresh Python process so the peak RSS (getrusage ru_maxrss) is that encryption's alone: the
Python side's and gpg's (the child it waits for). The gzip file is encrypted with gpg's compression off
(the default for compressed input), the CSV with it on. One result of each is decrypted and compared.

    .venv/bin/python benchmarks/bench_export_encryption.py --contacts 1000000 --recipients 2
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_contacts(csv_path: Path, gz_path: Path, contacts: int) -> None:
    rng = random.Random(16)
    with open(csv_path, "wb") as plain, gzip.open(gz_path, "wb", compresslevel=6) as packed:
        header = b"EMAIL,FIRSTNAME,LASTNAME,SMS,EXT_ID,CITY,OPT_IN_AT\n"
        plain.write(header)
        packed.write(header)
        for start in range(0, contacts, 10_000):
            rows = b"".join(
                b"contact.%d.%s@example%d.com,First%s,Last%s,+336%08d,%s,City%d,2026-%02d-%02dT%02d:%02d:00Z\n"
                % (
                    n,
                    rng.randbytes(4).hex().encode(),
                    n % 97,
                    rng.randbytes(3).hex().encode(),
                    rng.randbytes(5).hex().encode(),
                    rng.randrange(10**8),
                    rng.randbytes(8).hex().encode(),
                    n % 5000,
                    1 + n % 12,
                    1 + n % 28,
                    n % 24,
                    n % 60,
                )
                for n in range(start, min(start + 10_000, contacts))
            )
            plain.write(rows)
            packed.write(rows)


def generate_key(name: str) -> tuple[Path, str]:
    """A key pair in its own GnuPG home (its agent stopped by the caller); the armored public key."""
    home = Path(tempfile.mkdtemp(prefix="cs-bench-pgp-"))
    params = (
        "%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\nSubkey-Type: ecdh\n"
        f"Subkey-Curve: cv25519\nSubkey-Usage: encrypt\nName-Real: {name}\nExpire-Date: 0\n%commit\n"
    )
    gpg = ["gpg", "--homedir", str(home), "--batch", "--quiet"]
    subprocess.run([*gpg, "--gen-key"], input=params.encode(), check=True, capture_output=True)
    public = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True).stdout.decode()
    return home, public


def child(source: str, target: str, keys_file: str, compress: str) -> None:
    """In the fresh process: one encryption; report seconds and both peaks as JSON."""
    from airflow_provider_contactsync.exports.encryption import encrypt_file, parse_public_keys

    keys = parse_public_keys(Path(keys_file).read_text(), "benchmark keys")
    started = time.perf_counter()
    result = encrypt_file(Path(source), Path(target), keys, compress={"auto": None, "on": True, "off": False}[compress])
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "seconds": seconds,
                "size": result.size,
                "python_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "gpg_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=4, metavar=("SOURCE", "TARGET", "KEYS", "COMPRESS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(tempfile.mkdtemp(prefix="cs-bench-encrypt-"))
    homes: list[Path] = []
    try:
        csv_path, gz_path = work / "contacts.csv", work / "contacts.csv.gz"
        write_contacts(csv_path, gz_path, args.contacts)
        publics = []
        for n in range(args.recipients):
            home, public = generate_key(f"recipient{n}")
            homes.append(home)
            publics.append(public)
        keys_file = work / "keys.asc"
        keys_file.write_text("".join(publics))
        print(f"{args.contacts:,} contacts, {args.recipients} recipient(s), gpg {gpg_version()}")
        for label, source, compress in (
            ("gzip, gpg compression off", gz_path, "auto"),
            ("CSV, gpg compression on", csv_path, "auto"),
        ):
            size_mb = source.stat().st_size / 1e6
            target = work / (source.name + ".pgp")
            for run in range(1, args.runs + 1):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", str(source), str(target), str(keys_file), compress],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                m = json.loads(out.strip().splitlines()[-1])
                print(
                    f"{label}: {size_mb:.1f} MB in -> {m['size'] / 1e6:.1f} MB out, run {run}: {m['seconds']:.2f} s, "
                    f"{size_mb / m['seconds']:.0f} MB/s; peak RSS python {m['python_rss_mb']:.0f} MB, "
                    f"gpg {m['gpg_rss_mb']:.0f} MB"
                )
            decrypted = work / "decrypted"
            subprocess.run(
                [
                    "gpg",
                    "--homedir",
                    str(homes[-1]),
                    "--batch",
                    "--yes",
                    "--quiet",
                    "-o",
                    str(decrypted),
                    "-d",
                    str(target),
                ],
                check=True,
                capture_output=True,
            )
            assert sha256(decrypted) == sha256(source), "decrypted file differs"
            print(f"{label}: decrypted by the last recipient, SHA-256 equal")
    finally:
        for home in homes:
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)
            shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def gpg_version() -> str:
    return subprocess.run(["gpg", "--version"], capture_output=True, text=True, check=True).stdout.split()[2]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


if __name__ == "__main__":
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    main()
