"""OpenPGP encryption of export files (issue 16): every file is decrypted here with the private key.

Key pairs are generated for the test run in their own GnuPG homes (ed25519/cv25519, no passphrase),
which also decrypt; encryption itself never sees them (it imports the public keys into a throwaway home).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgp_keys import Keypair, dispose_keypair, generate_keypair

from airflow_provider_contactsync.exports.encryption import (
    Encrypted,
    PublicKey,
    PublicKeyError,
    check_public_keys,
    encrypt_file,
    parse_public_keys,
    public_keys_from_connection,
)

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg (Debian package gnupg) is not installed")

CSV = b"EMAIL,FIRSTNAME\n" + b"".join(b"c%d@example.com,N%d\n" % (n, n) for n in range(20_000))


@pytest.fixture(scope="module")
def keys() -> Iterator[dict[str, Keypair]]:
    pairs = {
        "alice": generate_keypair("alice"),
        "bob": generate_keypair("bob"),
        "signonly": generate_keypair("signonly", encrypt=False),
        # Made in 2020 and valid for a day: expired since.
        "expired": generate_keypair("expired", expire="1d", faked_time="20200101T000000"),
        "revoked": generate_keypair("revoked"),
    }
    revoked = pairs["revoked"]
    certificate = (revoked.home / "openpgp-revocs.d" / f"{revoked.fingerprint}.rev").read_text()
    revoked.gpg("--import", input=certificate.replace(":-----BEGIN", "-----BEGIN").encode())
    revoked.public = revoked.gpg("--armor", "--export", revoked.fingerprint).stdout.decode()
    yield pairs
    for pair in pairs.values():
        dispose_keypair(pair)


def key(pair: Keypair, source: str = "connection 'test_pgp'") -> PublicKey:
    return parse_public_keys(pair.public, source)[0]


def set_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **extra: object) -> None:
    conn = {"conn_type": "generic", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_one_recipient_decrypts_to_the_same_bytes(tmp_path: Path, keys: dict[str, Keypair]) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    result = encrypt_file(source, tmp_path / "export.csv.pgp", [key(keys["alice"])])
    data = result.path.read_bytes()
    assert isinstance(result, Encrypted) and result.path == tmp_path / "export.csv.pgp"
    assert result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.recipients == (keys["alice"].fingerprint,)
    assert not data.startswith(b"-----BEGIN")  # binary by default
    assert keys["alice"].decrypt(result.path, tmp_path / "out.csv").read_bytes() == CSV
    with pytest.raises(subprocess.CalledProcessError):  # a key that is not a recipient cannot read it
        keys["bob"].decrypt(result.path, tmp_path / "bob.csv")


def test_two_recipients_each_decrypt_with_their_own_private_key(tmp_path: Path, keys: dict[str, Keypair]) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    result = encrypt_file(source, tmp_path / "export.pgp", [key(keys["alice"]), key(keys["bob"])])
    assert set(result.recipients) == {keys["alice"].fingerprint, keys["bob"].fingerprint}
    for name in ("alice", "bob"):
        assert keys[name].decrypt(result.path, tmp_path / f"{name}.csv").read_bytes() == CSV


def test_armored_output(tmp_path: Path, keys: dict[str, Keypair]) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    result = encrypt_file(source, tmp_path / "export.csv.asc", [key(keys["alice"])], armor=True)
    text = result.path.read_text("ascii")
    assert text.startswith("-----BEGIN PGP MESSAGE-----") and text.rstrip().endswith("-----END PGP MESSAGE-----")
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert keys["alice"].decrypt(result.path, tmp_path / "out.csv").read_bytes() == CSV


def test_a_gzip_input_round_trips_and_is_not_compressed_again(tmp_path: Path, keys: dict[str, Keypair]) -> None:
    source = tmp_path / "export.csv.gz"
    source.write_bytes(gzip.compress(CSV))
    result = encrypt_file(source, tmp_path / "export.csv.gz.pgp", [key(keys["alice"])])
    out = keys["alice"].decrypt(result.path, tmp_path / "out.csv.gz")
    assert out.read_bytes() == source.read_bytes() and gzip.decompress(out.read_bytes()) == CSV
    # gpg's compression off: the packets hold the gzip bytes as they are (one session key, a literal header).
    packets = keys["alice"].gpg("--list-packets", str(result.path)).stdout.decode()
    assert "compressed packet" not in packets and "literal data packet" in packets


def test_compression_is_a_parameter(tmp_path: Path, keys: dict[str, Keypair]) -> None:
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    compressed = encrypt_file(source, tmp_path / "auto.pgp", [key(keys["alice"])])  # plain text: gpg compresses
    plain = encrypt_file(source, tmp_path / "off.pgp", [key(keys["alice"])], compress=False)
    assert compressed.size < len(CSV) // 2 < len(CSV) < plain.size
    listing = keys["alice"].gpg("--list-packets", str(compressed.path)).stdout.decode()
    assert "compressed packet" in listing
    for result in (compressed, plain):
        assert keys["alice"].decrypt(result.path, tmp_path / "out.csv").read_bytes() == CSV


def test_a_20_mb_file_round_trips(tmp_path: Path, keys: dict[str, Keypair]) -> None:
    source = tmp_path / "big.csv.gz"
    with open(source, "wb") as stream:  # incompressible, like a gzip export
        for _ in range(20):
            stream.write(os.urandom(1 << 20))
    result = encrypt_file(source, tmp_path / "big.pgp", [key(keys["alice"]), key(keys["bob"])])
    assert result.size > 20 << 20
    out = keys["bob"].decrypt(result.path, tmp_path / "out.bin")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(source.read_bytes()).hexdigest()


def test_keys_from_an_airflow_connection(
    tmp_path: Path, keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    spaced = " ".join(alice.fingerprint[i : i + 4] for i in range(0, 40, 4)).lower()
    set_connection(monkeypatch, "partner_pgp", public_key=alice.public + "\n" + bob.public,
                   fingerprint=[spaced, bob.fingerprint])  # fmt: skip
    public_keys = public_keys_from_connection("partner_pgp")
    assert [(k.source, k.block, k.of) for k in public_keys] == [
        ("connection 'partner_pgp'", 1, 2),
        ("connection 'partner_pgp'", 2, 2),
    ]
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    result = encrypt_file(source, tmp_path / "export.pgp", public_keys)
    assert result.recipients == (alice.fingerprint, bob.fingerprint)
    assert check_public_keys(public_keys) == result.recipients
    for pair in (alice, bob):
        assert pair.decrypt(result.path, tmp_path / "out.csv").read_bytes() == CSV


def test_a_pinned_fingerprint_that_differs_names_both(
    tmp_path: Path, keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    set_connection(monkeypatch, "partner_pgp", public_key=alice.public, fingerprint=bob.fingerprint)
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    with pytest.raises(PublicKeyError) as caught:
        encrypt_file(source, tmp_path / "export.pgp", public_keys_from_connection("partner_pgp"))
    message = str(caught.value)
    assert "connection 'partner_pgp'" in message and alice.fingerprint in message and bob.fingerprint in message
    assert not (tmp_path / "export.pgp").exists()


def test_a_pinned_fingerprint_without_its_key_is_an_error(
    keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    set_connection(
        monkeypatch, "partner_pgp", public_key=alice.public, fingerprint=[alice.fingerprint, bob.fingerprint]
    )
    with pytest.raises(PublicKeyError, match=f"connection 'partner_pgp': extra.fingerprint pins {bob.fingerprint}"):
        check_public_keys(public_keys_from_connection("partner_pgp"))


def test_the_definition_can_pin_the_fingerprint(
    tmp_path: Path, keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = keys["alice"], keys["bob"]
    set_connection(monkeypatch, "partner_pgp", public_key=alice.public)
    pinned = public_keys_from_connection("partner_pgp", fingerprint=alice.fingerprint.lower())
    assert check_public_keys(pinned) == (alice.fingerprint,)
    with pytest.raises(PublicKeyError) as caught:
        check_public_keys(public_keys_from_connection("partner_pgp", fingerprint=bob.fingerprint))
    assert str(caught.value) == (
        f"connection 'partner_pgp': the key's fingerprint is {alice.fingerprint}, but the definition pins "
        f"{bob.fingerprint}"
    )
    # The connection and the definition both pin: they must agree.
    set_connection(monkeypatch, "partner_pgp", public_key=alice.public, fingerprint=alice.fingerprint)
    assert check_public_keys(public_keys_from_connection("partner_pgp", fingerprint=alice.fingerprint))
    with pytest.raises(PublicKeyError, match=r"extra.fingerprint pins \w+, but the definition pins \w+$"):
        public_keys_from_connection("partner_pgp", fingerprint=bob.fingerprint)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("expired", "expired on 2020-01-02"),
        ("revoked", "is revoked"),
        ("signonly", "cannot encrypt"),
    ],
)
def test_unusable_keys_are_refused_naming_the_connection(
    tmp_path: Path, keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch, name: str, expected: str
) -> None:
    set_connection(monkeypatch, "partner_pgp", public_key=keys[name].public)
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    with pytest.raises(PublicKeyError) as caught:
        encrypt_file(source, tmp_path / "export.pgp", public_keys_from_connection("partner_pgp"))
    assert str(caught.value).startswith("connection 'partner_pgp': key ") and expected in str(caught.value)
    assert keys[name].fingerprint in str(caught.value)
    assert not (tmp_path / "export.pgp").exists()


def test_one_bad_key_among_good_ones_names_its_block(
    tmp_path: Path, keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, "partner_pgp", public_key=keys["alice"].public + keys["expired"].public)
    with pytest.raises(PublicKeyError, match=r"^connection 'partner_pgp', key block 2 of 2: key \w+ expired"):
        check_public_keys(public_keys_from_connection("partner_pgp"))


def test_invalid_key_text(tmp_path: Path, keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch) -> None:
    lines = keys["alice"].public.splitlines()
    broken = "\n".join(lines[:3] + ["AAAAnotbase64!!!" * 4] + lines[-2:])
    set_connection(monkeypatch, "partner_pgp", public_key=broken)
    with pytest.raises(PublicKeyError, match=r"^connection 'partner_pgp': not a valid OpenPGP public key"):
        check_public_keys(public_keys_from_connection("partner_pgp"))
    set_connection(monkeypatch, "partner_pgp", public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA user@host")
    with pytest.raises(PublicKeyError, match=r"^connection 'partner_pgp': extra.public_key holds no complete"):
        public_keys_from_connection("partner_pgp")
    set_connection(monkeypatch, "partner_pgp", public_key=keys["alice"].public, fingerprint="ABCD1234")
    with pytest.raises(PublicKeyError, match=r"extra.fingerprint 'ABCD1234' is not a fingerprint"):
        public_keys_from_connection("partner_pgp")


def test_missing_connection_or_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PublicKeyError, match=r"^connection 'nowhere_pgp' is not defined"):
        public_keys_from_connection("nowhere_pgp")
    set_connection(monkeypatch, "partner_pgp", other="x")
    with pytest.raises(PublicKeyError, match=r"^connection 'partner_pgp': extra.public_key is missing"):
        public_keys_from_connection("partner_pgp")


def test_a_private_key_in_the_connection_is_refused_without_echoing_it(
    keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = keys["alice"].gpg("--armor", "--export-secret-keys", keys["alice"].fingerprint).stdout.decode()
    set_connection(monkeypatch, "partner_pgp", public_key=keys["alice"].public + secret)
    with pytest.raises(PublicKeyError, match="PRIVATE key block") as caught:
        public_keys_from_connection("partner_pgp")
    body = [line for line in secret.splitlines() if len(line) > 20]
    assert not any(line in str(caught.value) for line in body)


def test_the_users_keyring_is_never_touched_and_nothing_is_left_behind(
    tmp_path: Path, keys: dict[str, Keypair], monkeypatch: pytest.MonkeyPatch
) -> None:
    user_home, scratch = tmp_path / "user-gnupg", tmp_path / "tmp"
    user_home.mkdir(mode=0o700)
    scratch.mkdir()
    monkeypatch.setenv("GNUPGHOME", str(user_home))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    source = tmp_path / "export.csv"
    source.write_bytes(CSV)
    encrypt_file(source, tmp_path / "export.pgp", [key(keys["alice"])])
    with pytest.raises(PublicKeyError):
        encrypt_file(source, tmp_path / "expired.pgp", [key(keys["expired"])])
    assert list(user_home.iterdir()) == [] and list(scratch.iterdir()) == []
