"""OpenPGP encryption of an export file to one or more public keys, through GnuPG (ADR 0013).

Each call works in a throwaway GnuPG home (a temporary directory, removed after): the user's keyring is
never read or written. The keys are imported into it, checked (not revoked, not expired, able to encrypt,
matching their pinned fingerprints), given full trust there and only there (``--trust-model direct``,
ownertrust set for exactly those fingerprints: no prompt, no web of trust), and the file is streamed
through ``gpg`` (constant memory). No agent or dirmngr is started (``--no-autostart``): encrypting to
public keys needs neither, and nothing is fetched from the network.

Keys come from an Airflow connection (any type, e.g. ``generic``), whose ``extra`` holds::

    {
      "public_key": "-----BEGIN PGP PUBLIC KEY BLOCK-----\\n...\\n-----END PGP PUBLIC KEY BLOCK-----\\n",
      "fingerprint": "0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567"
    }

``public_key`` is one ASCII-armored block or several concatenated (one recipient per key; a block
exported from several keys gives several). ``fingerprint`` is optional: one fingerprint or a list, spaces
and case ignored; when given, every key must be one of them and each of them must be there. The export
definition can pin the fingerprint too (``recipients[].fingerprint``); given both, they must agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from airflow_provider_contactsync.core.errors import ConfigurationError, ContactsyncError

_CHUNK = 1 << 20
_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_BLOCK = re.compile(r"-----BEGIN PGP PUBLIC KEY BLOCK-----.*?-----END PGP PUBLIC KEY BLOCK-----", re.DOTALL)
_PRIVATE = re.compile(r"-----BEGIN PGP (PRIVATE|SECRET) KEY BLOCK-----")
_FINGERPRINT = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")  # v4 and v6 keys; a key id is too short to pin
# Compressed containers gpg cannot shrink further: gzip, zip (local header or empty archive), bzip2, xz, zstd.
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"PK\x03\x04", b"PK\x05\x06", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")
# gpg options for every call: batch, no agent or dirmngr (nothing secret is needed, nothing fetched).
_GPG_OPTIONS = ["--no-autostart", "--no-greeting", "--quiet"]


class PublicKeyError(ConfigurationError):
    """A public key that cannot be used: invalid text, revoked, expired, unable to encrypt, a pin that
    differs. The message names where the key came from (the Airflow connection) and never its text."""


class EncryptionError(ContactsyncError):
    """gpg is missing or failed for a reason that is not one key's (disk full, unreadable input)."""


@dataclass(frozen=True)
class PublicKey:
    """One ASCII-armored OpenPGP public key block and where it came from.

    :param armored: the block (it may hold more than one key: each is a recipient).
    :param source: where it came from, named in every error, e.g. ``connection 'partner_pgp'``.
    :param block: its place among the source's blocks (1-based) and ``of`` how many there are.
    :param pins: fingerprints the source pins (upper-case hex): each key must be one, each must be found.
    :param pinned_by: who pins them, for messages (``extra.fingerprint``, ``the definition``).
    """

    armored: str
    source: str
    block: int = 1
    of: int = 1
    pins: tuple[str, ...] = ()
    pinned_by: str = "extra.fingerprint"

    @property
    def where(self) -> str:
        return self.source if self.of == 1 else f"{self.source}, key block {self.block} of {self.of}"


@dataclass(frozen=True)
class Encrypted:
    """The encrypted file: where, its size and SHA-256, and the recipients' primary key fingerprints."""

    path: Path
    size: int
    sha256: str
    recipients: tuple[str, ...]


def normalise_fingerprint(text: str) -> str | None:
    """Upper-case hex without spaces or colons, or None when it is not a v4/v6 fingerprint."""
    value = re.sub(r"[\s:]", "", text).upper()
    return value if _FINGERPRINT.fullmatch(value) else None


def parse_public_keys(
    text: Any, source: str, *, fingerprint: Any = None, pinned_by: str = "extra.fingerprint"
) -> list[PublicKey]:
    """The key blocks of ``text`` (one or several concatenated), with the pins of ``fingerprint``.

    :param fingerprint: None, one fingerprint or a list of them.
    :param pinned_by: where ``fingerprint`` comes from, for messages.
    :raises PublicKeyError: no block, a private key block, a pin that is not a fingerprint.
    """
    if not isinstance(text, str) or not text.strip():
        raise PublicKeyError(f"{source}: extra.public_key is missing or empty (an ASCII-armored public key block)")
    if _PRIVATE.search(text):
        # Never echo it: it is a secret. Refused whole, so it is not imported either.
        raise PublicKeyError(
            f"{source}: extra.public_key holds a PRIVATE key block; put only the public key there "
            "(gpg --armor --export <fingerprint>) and remove the private key from the connection"
        )
    blocks = _BLOCK.findall(text)
    if not blocks:
        raise PublicKeyError(f"{source}: extra.public_key holds no complete '{_BEGIN}' ... END block")
    pins = _pins(fingerprint, source, pinned_by)
    return [
        PublicKey(block, source, block=n, of=len(blocks), pins=pins, pinned_by=pinned_by)
        for n, block in enumerate(blocks, 1)
    ]


def _pins(fingerprint: Any, source: str, pinned_by: str) -> tuple[str, ...]:
    if fingerprint is None or fingerprint == "" or fingerprint == []:
        return ()
    given = [fingerprint] if isinstance(fingerprint, str) else fingerprint
    if not isinstance(given, (list, tuple)) or not all(isinstance(item, str) for item in given):
        raise PublicKeyError(f"{source}: {pinned_by} must be a fingerprint or a list of fingerprints")
    pins = []
    for item in given:
        value = normalise_fingerprint(item)
        if value is None:
            raise PublicKeyError(
                f"{source}: {pinned_by} {item!r} is not a fingerprint (40 hex digits, or 64 for a v6 key)"
            )
        pins.append(value)
    return tuple(dict.fromkeys(pins))


def public_keys_from_connection(conn_id: str, *, fingerprint: str | Sequence[str] | None = None) -> list[PublicKey]:
    """The public keys in the Airflow connection ``conn_id``'s extra (see the module docstring).

    :param fingerprint: the export definition's pin; when the connection pins too, both must name the same keys.
    :raises PublicKeyError: no such connection, an extra that is not JSON, keys that cannot be read, or pins
        that disagree.
    """
    from airflow.sdk import BaseHook

    source = f"connection {conn_id!r}"
    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:
        if type(exc).__name__ != "AirflowNotFoundException":
            raise
        raise PublicKeyError(f"{source} is not defined (it should hold extra.public_key)") from None
    try:
        extra = json.loads(conn.extra) if conn.extra else {}
    except ValueError:
        raise PublicKeyError(f"{source}: extra is not JSON (it should hold public_key)") from None
    if not isinstance(extra, dict):
        raise PublicKeyError(f"{source}: extra is not a JSON object (it should hold public_key)")
    keys = parse_public_keys(extra.get("public_key"), source, fingerprint=extra.get("fingerprint"))
    defined = _pins(fingerprint, source, "the definition's fingerprint")
    if not defined:
        return keys
    pinned = keys[0].pins
    if pinned and set(pinned) != set(defined):
        raise PublicKeyError(
            f"{source}: extra.fingerprint pins {' '.join(pinned)}, but the definition pins {' '.join(defined)}"
        )
    return [replace(key, pins=defined, pinned_by="the definition") for key in keys]


def is_compressed(path: Path) -> bool:
    """Whether the file starts like gzip, zip, bzip2, xz or zstd data (gpg's compression would be wasted)."""
    with open(path, "rb") as stream:
        head = stream.read(8)
    return head.startswith(_COMPRESSED_MAGIC)


def encrypt_file(
    source: Path,
    target: Path,
    public_keys: Sequence[PublicKey],
    *,
    armor: bool = False,
    compress: bool | None = None,
) -> Encrypted:
    """Encrypt ``source`` into ``target`` so that each key's holder can decrypt it, streaming.

    :param armor: ASCII-armored output (``-----BEGIN PGP MESSAGE-----``) instead of binary.
    :param compress: gpg's own compression; None (the default) turns it off when the input is already
        gzip, zip, bzip2, xz or zstd (:func:`is_compressed`) and leaves it on otherwise.
    :raises PublicKeyError: a key that cannot be used, named by its source.
    :raises EncryptionError: gpg missing or failing otherwise.
    """
    source, target = Path(source), Path(target)
    if not public_keys:
        raise ValueError("encrypt_file needs at least one public key")
    if source.resolve() == target.resolve():
        raise ValueError(f"encrypt_file: the target {target} is the source")
    if compress is None:
        compress = not is_compressed(source)
    with tempfile.TemporaryDirectory(prefix="contactsync-gnupg-") as home:
        gpg = _gpg(home)
        recipients = _import(gpg, public_keys)
        args = ["--trust-model", "direct"] + ([] if compress else ["--compress-algo", "none"])
        try:
            with open(source, "rb") as stream:
                result = gpg.encrypt_file(stream, list(recipients), armor=armor, output=str(target), extra_args=args)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        if not result.ok:
            target.unlink(missing_ok=True)
            invalid = re.findall(r"^\[GNUPG:\] INV_RECP \d+ (\S+)", result.stderr or "", re.MULTILINE)
            for fingerprint in invalid:
                if fingerprint in recipients:
                    raise PublicKeyError(f"{recipients[fingerprint].where}: gpg refused key {fingerprint}")
            raise EncryptionError(f"gpg could not encrypt {source} into {target}: {_gpg_said(result.stderr)}")
    digest = hashlib.sha256()
    with open(target, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return Encrypted(target, os.path.getsize(target), digest.hexdigest(), tuple(recipients))


def check_public_keys(public_keys: Sequence[PublicKey]) -> tuple[str, ...]:
    """The recipients' fingerprints, after every check :func:`encrypt_file` makes, without encrypting."""
    with tempfile.TemporaryDirectory(prefix="contactsync-gnupg-") as home:
        return tuple(_import(_gpg(home), public_keys))


def _gpg(home: str) -> Any:
    import gnupg

    try:
        gpg = gnupg.GPG(gnupghome=home, options=list(_GPG_OPTIONS))
    except (OSError, ValueError) as exc:
        raise EncryptionError(f"cannot run gpg (GnuPG; on Debian: apt-get install gnupg): {exc}") from None
    if not gpg.version or gpg.version < (2, 1):
        raise EncryptionError(f"gpg {gpg.version} is too old: GnuPG 2.1 or later is needed")
    gpg.buffer_size = _CHUNK  # what python-gnupg's thread copies into gpg's stdin at a time
    return gpg


def _import(gpg: Any, public_keys: Sequence[PublicKey]) -> dict[str, PublicKey]:
    """Import and check every key; give full trust to exactly those. Fingerprint -> the key it came from."""
    recipients: dict[str, PublicKey] = {}
    found: dict[str, set[str]] = {}
    for key in public_keys:
        result = gpg.import_keys(key.armored)
        fingerprints = list(dict.fromkeys(fp.upper() for fp in result.fingerprints if fp))
        if not fingerprints:
            raise PublicKeyError(f"{key.where}: not a valid OpenPGP public key ({_gpg_said(result.stderr)})")
        for fingerprint in fingerprints:
            if key.pins and fingerprint not in key.pins:
                raise PublicKeyError(
                    f"{key.where}: the key's fingerprint is {fingerprint}, but {key.pinned_by} pins "
                    f"{' or '.join(key.pins)}"
                )
            _check_usable(gpg, fingerprint, key)
            recipients.setdefault(fingerprint, key)
            found.setdefault(key.source, set()).add(fingerprint)
    for key in public_keys:
        for pin in key.pins:
            if pin not in found.get(key.source, set()):
                raise PublicKeyError(
                    f"{key.source}: {key.pinned_by} pins {pin}, but its keys are {', '.join(sorted(found[key.source]))}"
                )
    try:
        gpg.trust_keys(list(recipients), "TRUST_FULLY")  # ownertrust "full" for these fingerprints only
    except ValueError as exc:
        raise EncryptionError(f"gpg could not set the keys' trust: {exc}") from None
    return recipients


def _check_usable(gpg: Any, fingerprint: str, key: PublicKey) -> None:
    """Raise PublicKeyError when the key is revoked, expired or has no usable encryption (sub)key."""
    listed = gpg.list_keys(keys=[fingerprint])
    if not listed:
        raise PublicKeyError(f"{key.where}: key {fingerprint} was imported but gpg does not list it")
    info = listed[0]
    validity, capabilities = info.get("trust", ""), info.get("cap", "")
    if validity == "r":
        raise PublicKeyError(f"{key.where}: key {fingerprint} is revoked")
    if validity == "e":
        raise PublicKeyError(f"{key.where}: key {fingerprint} expired on {_date(info.get('expires'))}")
    if "E" in capabilities:  # upper case: the key as a whole has a usable encryption (sub)key
        return
    subkeys = [sub for sub in info.get("subkey_info", {}).values() if "e" in sub.get("cap", "")]
    if not subkeys and "e" not in capabilities:
        raise PublicKeyError(f"{key.where}: key {fingerprint} cannot encrypt (it has no encryption subkey)")
    states = []
    for sub in subkeys:
        if sub.get("trust") == "r":
            states.append(f"{sub.get('keyid')} revoked")
        elif sub.get("trust") == "e":
            states.append(f"{sub.get('keyid')} expired on {_date(sub.get('expires'))}")
        else:
            states.append(f"{sub.get('keyid')} unusable")
    raise PublicKeyError(
        f"{key.where}: key {fingerprint} has no usable encryption subkey ({', '.join(states) or 'none'})"
    )


def _date(timestamp: Any) -> str:
    try:
        return datetime.fromtimestamp(int(timestamp), tz=timezone.utc).strftime("%Y-%m-%d")
    except (TypeError, ValueError):
        return "an unknown date"


def _gpg_said(stderr: str | None) -> str:
    """gpg's own error lines (not its status lines), short: what to show a user."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.startswith("gpg:")]
    lines = [line for line in lines if "no gpg-agent running" not in line]
    return "; ".join(lines[-3:])[:500] or "no message"
