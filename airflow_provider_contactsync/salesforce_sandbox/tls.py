"""TLS for the sandbox: a local certificate authority and server certificates it signs.

simple-salesforce only speaks ``https://``, so the sandbox serves TLS. Clients trust it through
``bundle.pem``: the sandbox CA appended to the CAs trusted when the bundle was made (the file
``REQUESTS_CA_BUNDLE`` named, else certifi's), so pointing ``REQUESTS_CA_BUNDLE`` at it keeps every real
host verifiable too. Set the variable rather than ``Session.verify``: requests lets the variable win.

One authority per directory: sandboxes started in one test process share the default one (one bundle
path for all), and a CLI sandbox reuses its ``--tls-dir`` across restarts so a trusted bundle stays valid.
"""

from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import os
import shutil
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = dt.timedelta(days=1)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


class CertificateAuthority:
    """A CA kept in ``directory`` (``ca.pem``, ``ca-key.pem``, ``bundle.pem``), created when missing.

    :param directory: where the files live; created if needed.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.directory / "ca.pem"
        self.bundle_file = self.directory / "bundle.pem"
        key_file = self.directory / "ca-key.pem"
        self._lock = threading.Lock()
        if self.ca_file.exists() and key_file.exists():
            self._cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self._key = key
        else:
            self._key = ec.generate_private_key(ec.SECP256R1())
            now = dt.datetime.now(dt.timezone.utc)
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "contactsync Salesforce sandbox CA")])
            self._cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(self._key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - _DAY)
                .not_valid_after(now + 3650 * _DAY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=False,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=True,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
                .sign(self._key, hashes.SHA256())
            )
            _write_private(
                key_file,
                self._key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
            self.ca_file.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        if not self.bundle_file.exists():
            self.bundle_file.write_bytes(_public_cas() + self.ca_file.read_bytes())

    def issue(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[Path, Path]:
        """A new server certificate for ``hosts`` (IP addresses or names): (cert file, key file)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 365 * _DAY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        with self._lock:
            serial = f"{cert.serial_number:x}"[:16]
            cert_file = self.directory / f"server-{serial}.pem"
            key_file = self.directory / f"server-{serial}-key.pem"
            cert_file.write_bytes(
                cert.public_bytes(serialization.Encoding.PEM) + self._cert.public_bytes(serialization.Encoding.PEM)
            )
            _write_private(
                key_file,
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                ),
            )
        return cert_file, key_file


def _public_cas() -> bytes:
    """The CAs clients trust now: the bundle ``REQUESTS_CA_BUNDLE`` (or ``SSL_CERT_FILE``) names, which may
    hold a proxy's CA, else certifi's."""
    data = b""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        path = os.environ.get(name)
        if path and os.path.isfile(path):
            data = Path(path).read_bytes()
            break
    else:
        try:
            import certifi

            data = Path(certifi.where()).read_bytes()
        except ImportError:  # pragma: no cover - requests depends on certifi
            pass
    return data if not data or data.endswith(b"\n") else data + b"\n"


_default: CertificateAuthority | None = None
_default_lock = threading.Lock()


def default_authority() -> CertificateAuthority:
    """The process's shared authority, in a temporary directory removed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            directory = tempfile.mkdtemp(prefix="contactsync-salesforce-tls-")
            atexit.register(shutil.rmtree, directory, ignore_errors=True)
            _default = CertificateAuthority(directory)
        return _default
