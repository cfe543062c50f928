"""Refuse credentials in definitions: they belong in Airflow connections, never in YAML.

Definitions live in the DAGs folder, usually in git; a password there leaks to every reader
of the repository and into task logs. Keys that name a credential and values that look like
one (API keys, URLs with a password, private keys) are refused wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from airflow_provider_contactsync.core.spec.yaml_source import KeyPath

CREDENTIAL_KEY = re.compile(
    r"^(password|passwd|pwd|pass|secret|.*_secret|secret_.*|token|.*_token|api_?key|apikey|private_?key|"
    r"access_?key|credentials?|auth|authorization|key_?file|keyfile_?dict|service_?account(_json)?)$",
    re.IGNORECASE,
)

CREDENTIAL_VALUE = re.compile(
    r"xkeysib-[A-Za-z0-9]{16,}"  # Brevo API key
    r"|xsmtpsib-[A-Za-z0-9]{16,}"  # Brevo SMTP key
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"
    # scheme://user:password@host; the scheme's length is bounded, else every word boundary of a long
    # 'a.a.a...' value would start a scan to its end (quadratic: 7 s for 80 kB)
    r"|\b[a-z][a-z0-9+.-]{0,31}://[^/\s:@]+:[^/\s@]+@"
    r"|\bAKIA[0-9A-Z]{16}\b"  # AWS access key id
    r"|\"private_key\"\s*:"  # a pasted service-account JSON
)

# Keys under these paths are user field names, not configuration keys: a field may be called "token".
USER_NAMED_KEYS = {("transform",), ("mapping",)}


def find_credentials(data: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    """Yield (key path, reason) for every credential-looking key or value in parsed YAML."""
    if isinstance(data, dict):
        for key, value in data.items():
            child = path + (str(key),)
            if path not in USER_NAMED_KEYS and CREDENTIAL_KEY.match(str(key)):
                yield (
                    child,
                    (
                        f"{key!r} looks like a credential; credentials are not allowed in definitions: "
                        "store them in the Airflow connection named by conn_id"
                    ),
                )
                continue
            yield from find_credentials(value, child)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            yield from find_credentials(item, path + (index,))
    elif isinstance(data, str) and CREDENTIAL_VALUE.search(data):
        yield (
            path,
            (
                "this value looks like a credential (API key, password in a URL or private key); "
                "store it in an Airflow connection instead"
            ),
        )
