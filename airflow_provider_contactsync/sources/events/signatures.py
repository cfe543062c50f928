"""Webhook signatures: how each platform signs a delivery, checked over the raw body in constant time.

- Shopify: ``X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, body))``.
- WooCommerce: ``X-WC-Webhook-Signature: base64(HMAC-SHA256(secret, body))``.
- custom (the seed's JSON): ``X-Contactsync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
  "<t>." + body)>``. The timestamp is signed with the body, and a delivery whose timestamp is more than
  the replay window (300 s by default) away from now is refused, so a captured request cannot be
  replayed later. Several ``v1=`` values may be given (a sender rotating its secret); one must match.

Pure functions, no Airflow: the intake (:mod:`.intake`) and the senders' tests share them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

PLATFORMS = ("custom", "shopify", "woocommerce")
SIGNATURE_HEADERS = {
    "custom": "X-Contactsync-Signature",
    "shopify": "X-Shopify-Hmac-Sha256",
    "woocommerce": "X-WC-Webhook-Signature",
}
DEFAULT_REPLAY_WINDOW_SECONDS = 300


class SignatureError(Exception):
    """The delivery's signature is missing, malformed, wrong or too old; the message says which."""


def _digest(secret: str | bytes, message: bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).digest()


def sign_base64(secret: str | bytes, body: bytes) -> str:
    """Shopify's and WooCommerce's header value for ``body``."""
    return base64.b64encode(_digest(secret, body)).decode()


def sign_custom(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Contactsync-Signature`` header value for ``body`` sent at ``timestamp`` (default: now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},v1={_digest(secret, f'{t}.'.encode() + body).hex()}"


def verify(
    platform: str,
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    replay_window_seconds: float = DEFAULT_REPLAY_WINDOW_SECONDS,
    now: float | None = None,
) -> None:
    """Raise :class:`SignatureError` unless ``body`` carries a valid signature of ``platform``.

    :param headers: the request's headers; looked up case-insensitively (pass Starlette's ``Headers``
        or any mapping).
    """
    if platform not in SIGNATURE_HEADERS:
        raise ValueError(f"platform {platform!r}: expected one of {', '.join(PLATFORMS)}")
    if not secret:
        raise SignatureError("no signing secret is configured")  # never accept unsigned deliveries
    name = SIGNATURE_HEADERS[platform]
    value = _get(headers, name)
    if not value:
        raise SignatureError(f"the {name} header is missing")
    if platform == "custom":
        _verify_custom(secret, value, body, replay_window_seconds, time.time() if now is None else now)
        return
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        raise SignatureError(f"the {name} header is not base64") from None
    if not hmac.compare_digest(given, _digest(secret, body)):
        raise SignatureError(f"the {name} header does not match the body")


def _verify_custom(secret: str | bytes, value: str, body: bytes, window: float, now: float) -> None:
    name = SIGNATURE_HEADERS["custom"]
    stamp = None
    candidates: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t":
            stamp = item
        elif key == "v1":
            candidates.append(item)
    if stamp is None or not stamp.isdigit() or not candidates:
        raise SignatureError(f"the {name} header is not 't=<unix seconds>,v1=<hex>'")
    expected = _digest(secret, f"{stamp}.".encode() + body).hex()
    # Every candidate is compared (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.lower().encode(), expected.encode())
    if not matched:
        raise SignatureError(f"the {name} header does not match the body")
    # Checked after the HMAC, so a forged timestamp cannot tell a sender anything about the window.
    if abs(now - int(stamp)) > window:
        raise SignatureError(f"the {name} timestamp is outside the {window:g} s replay window")


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value
