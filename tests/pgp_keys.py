"""Test OpenPGP key pairs: generated per test run in their own GnuPG homes (ed25519/cv25519, no passphrase)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Keypair:
    home: Path
    fingerprint: str
    public: str

    def gpg(self, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--yes", "--quiet", *args],
            input=input,
            capture_output=True,
            check=True,
        )

    def decrypt(self, path: Path, out: Path) -> Path:
        self.gpg("--output", str(out), "--decrypt", str(path))
        return out


def generate_keypair(name: str, *, expire: str = "0", encrypt: bool = True, faked_time: str | None = None) -> Keypair:
    home = Path(tempfile.mkdtemp(prefix="cs-pgp-"))  # short: gpg-agent's socket path must fit in 108 bytes
    subkey = "Subkey-Type: ecdh\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n" if encrypt else ""
    params = (
        f"%no-protection\nKey-Type: eddsa\nKey-Curve: ed25519\nKey-Usage: sign\n{subkey}"
        f"Name-Real: {name}\nName-Email: {name}@example.com\nExpire-Date: {expire}\n%commit\n"
    )
    faked = ["--faked-system-time", faked_time] if faked_time else []
    pair = Keypair(home, "", "")
    pair.gpg(*faked, "--gen-key", input=params.encode())
    listing = pair.gpg("--with-colons", "--list-keys").stdout.decode()
    pair.fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    pair.public = pair.gpg("--armor", "--export", pair.fingerprint).stdout.decode()
    return pair


def dispose_keypair(pair: Keypair) -> None:
    subprocess.run(["gpgconf", "--homedir", str(pair.home), "--kill", "all"], capture_output=True, check=False)
    shutil.rmtree(pair.home, ignore_errors=True)
